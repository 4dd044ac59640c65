"""``fashion upgrade RUN``: bring a finished run up to what this version of ``fashion`` writes, without
embedding anything again.

- a run of the older layout (items.csv, neighbors.csv; no ``format_version``) is converted in place to
  the current format (:func:`fashion.run.upgrade.upgrade`: vectors, neighbours and index bit for bit);
- a current-format run made before an item-table stage existed (:data:`fashion.pipeline.items.ITEM_TABLE_STAGES`:
  the colour columns) gets that stage's columns, computed from its photos, in a new sealed version
  (:func:`.metadata.rewrite_items`: under the writer lock, every other file carried over);
- a run that is already current is left alone and said so.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def upgrade_run(run_dir, wait: float | None = None, keep: int | None = None) -> str:
    """Upgrade the run at ``run_dir`` as the module says; returns one line saying what was done.
    Raises :class:`fashion.rundir.RunDirError` (one line) for a directory that is no finished run."""
    from .. import rundir
    from ..pipeline.items import add_item_columns, missing_stages, stage_name
    from ..run import layout
    from ..run.upgrade import upgrade
    from .metadata import rewrite_items
    from .versions import stamp

    run_dir = Path(run_dir)
    info = rundir.read_json_object(run_dir / layout.RUN_JSON)
    if "format_version" not in info:
        upgrade(run_dir)
        return f"{run_dir}: converted from the older layout to run format {layout.FORMAT_VERSION}"
    names = []

    def change(run):
        items = run.items.reset_index(drop=True)
        stages = missing_stages(items.columns)
        names.extend(stage_name(s) for s in stages)
        added = add_item_columns(items, items["ok"].to_numpy(bool), stages, cache_dir=run_dir / "cache")
        return added, stamp(dict(run.info), {"op": "upgrade", "stages": list(names)})

    from ..run.reader import read_items

    if not missing_stages(read_items(run_dir).columns):  # only the columns: rewrite_items opens the run
        return f"{run_dir}: already current (run format {info['format_version']}, every item-table stage's columns)"
    _, done = rewrite_items(run_dir, change, wait=wait, keep=keep)
    log.info("%s: upgraded (%s)", run_dir, ", ".join(names))
    return f"{run_dir}: added the columns of the {', '.join(names)} stage; version {done['version']}"
