"""Upgrade a run of the older layout (items.csv, neighbors.csv, index.npz keyed by ``index_row``; run.json
without ``format_version``) to format 2 in place, without embedding anything again.

The vectors, the neighbours and the fitted index are kept bit for bit; only their tables change shape
(items/ and neighbors/ parquet keyed on ids, the index's ``ids`` member from ``index_row``). It is a
transaction (:func:`fashion.rundir.transaction`): the old run answers until the new one is complete.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from ..rundir import RunDirError
from . import layout, writer

log = logging.getLogger(__name__)

OLD_FILES = ("items.csv", "neighbors.csv", layout.INDEX_NPZ, layout.RUN_JSON)
OLD_ITEM_COLUMNS = ("index", "path", "relpath", "label", "split", "ok", "index_row")


def _old_tables(run_dir: Path):
    import pandas as pd

    from .checks import check_columns

    items = pd.read_csv(run_dir / "items.csv", keep_default_na=False,
                        dtype={c: str for c in ("path", "relpath", "label", "split", "reason", "role", "item_id")})
    check_columns(items, {"index": "int", "index_row": "int", **{c: "str" for c in OLD_ITEM_COLUMNS[1:6]}},
                  run_dir / "items.csv")
    if not np.array_equal(items["index"].to_numpy(), np.arange(len(items))):
        raise RunDirError(f"{run_dir / 'items.csv'}: the index column is not 0..{len(items) - 1} in order")
    neighbors = pd.read_csv(run_dir / "neighbors.csv")
    check_columns(neighbors, {"query": "int", "rank": "int", "neighbor": "int", "distance": "float"},
                  run_dir / "neighbors.csv")
    return items, neighbors


def upgrade(run_dir) -> Path:
    """Rewrite the old-layout run at ``run_dir`` as a run of format 2; returns its path.

    Raises :class:`RunDirError` when the directory is not a complete run of the older layout (its
    manifest is checked first: a changed file is refused, never converted).
    """
    import pyarrow as pa

    from .. import rundir
    from ..neighbors import load_index
    from ..scale.shards import write_table

    run_dir = Path(run_dir)
    rundir.verify(run_dir, require=OLD_FILES)
    info = rundir.read_json_object(run_dir / layout.RUN_JSON)
    if "format_version" in info:
        raise RunDirError(f"{run_dir}: run.json says format_version {info['format_version']!r}: not the older layout")
    items, neighbors = _old_tables(run_dir)
    index = load_index(run_dir / layout.INDEX_NPZ)
    rows = items["index_row"].to_numpy()
    ids = np.full(int((rows >= 0).sum()), -1, dtype=np.int64)
    ids[rows[rows >= 0]] = np.flatnonzero(rows >= 0)
    if (ids < 0).any() or len(ids) != index.n_samples_fit_:
        raise RunDirError(f"{run_dir / 'items.csv'}: index_row does not number the {index.n_samples_fit_} vectors "
                          f"of {layout.INDEX_NPZ}")
    table = items.drop(columns=["index", "index_row"])
    table.insert(0, "id", np.arange(len(table), dtype=np.int64))
    table["ok"] = table["ok"].astype(str).str.lower().isin(("true", "1"))
    table["reason"] = table["reason"] if "reason" in table else ""
    if "role" not in table:
        table["role"] = np.where(rows >= 0, "both", np.where(table["ok"], "", "skipped"))
    from ..pipeline.items import add_item_columns, missing_stages

    # the item-table stages' columns (colour …) the older layout predates, computed now from the photos
    table = add_item_columns(table, table["ok"].to_numpy(), missing_stages(table.columns),
                             cache_dir=run_dir / "cache")
    with rundir.transaction(run_dir, kind=layout.RUN_KIND, run_id=info.get("run_id")) as txn:
        out = txn.path
        for entry in run_dir.iterdir():  # everything else (embeddings, insight, grids, gallery) as it was
            if entry.name in OLD_FILES + (rundir.MANIFEST,) + layout.WORK_DIRS or entry.name.startswith("."):
                continue
            if entry.is_dir():
                shutil.copytree(entry, out / entry.name)
            else:  # a hard link where it can (embeddings.npy: GBs), as the sharded runs' seal does
                writer.link_or_copy(entry, out / entry.name)
        writer.write_items(out, table)
        write_table(out / layout.NEIGHBORS_DIR / layout.part_name(0), pa.table({
            "query_id": pa.array(neighbors["query"].to_numpy(np.int64)),
            "rank": pa.array(neighbors["rank"].to_numpy(np.int32)),
            "neighbor_id": pa.array(neighbors["neighbor"].to_numpy(np.int64)),
            "distance": pa.array(neighbors["distance"].to_numpy(np.float32))}))
        _, ref = writer.write_index_npz(out, index, ids)
        body = {key: value for key, value in info.items() if key != "run_id"}
        writer.write_run_json(out, txn.run_id, ref, len(table), body)
    log.info("%s: upgraded to run format %d", run_dir, layout.FORMAT_VERSION)
    return run_dir
