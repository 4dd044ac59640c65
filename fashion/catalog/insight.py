"""The insight tables of a changed run (duplicates.csv, map.csv, suspects.csv: measure_sim's insight stage).

A change carries them into the new version without the removed items: a duplicate pair, map point or
suspect that names a removed id is dropped, the rest kept as it was (hard-linked when nothing in the
table changed). Added photos are not analysed (no map position, no duplicate check against the
insight stage's thresholds): ``metrics.json``'s ``insight`` says so (``carried``), and a rerun of
``measure_sim.py`` computes the tables again over every photo. ``map.png`` is not carried (its points
cannot be taken out of the picture).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..run import layout

log = logging.getLogger(__name__)

ID_COLUMNS = {"duplicates.csv": ("a", "b"), "map.csv": ("id",), "suspects.csv": ("id",)}


def carry(run_dir, out, live: np.ndarray) -> list[Path]:
    """Write the insight tables of the run at ``run_dir`` into the run staged in ``out``, without the rows
    naming an item that is not ``live`` (a mask over every id); returns the paths written."""
    from ..atomic import save_csv
    from ..rundir import read_manifest
    from ..run.checks import read_table
    from ..run.writer import link_or_copy

    run_dir, out = Path(run_dir), Path(out)
    listed = read_manifest(run_dir)["files"]
    paths = []
    for name, columns in ID_COLUMNS.items():
        if name not in listed:
            continue
        table = read_table(run_dir / name, layout.INSIGHT_FILES[name])
        keep = np.ones(len(table), bool)
        for column in columns:
            ids = table[column].to_numpy(np.int64)
            keep &= (ids >= 0) & (ids < len(live))
            keep[keep] &= live[ids[keep]]
        if keep.all():
            paths.append(link_or_copy(run_dir / name, out / name))
        else:
            paths.append(save_csv(out / name, table[keep]))
            log.info("%s: %d rows naming removed items dropped", name, int((~keep).sum()))
    return paths


def summary(previous: dict | None, version: int) -> dict | None:
    """metrics.json's ``insight`` of the new version: the previous one's, marked ``carried`` (from which
    version the tables come, and that added photos are not in them); None when the run had none."""
    if not isinstance(previous, dict):
        return previous
    carried = previous.get("carried") or {"from_version": int(version),
                                          "note": "removed items dropped; photos added since are not analysed "
                                                  "(rerun measure_sim.py to analyse every photo)"}
    return {**previous, "carried": carried}
