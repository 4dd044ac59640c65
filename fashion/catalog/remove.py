"""``fashion remove RUN PATH… | --id N… | --filter EXPR``: items leave a finished run without a rebuild.

The items are chosen by path (the item's file, or its relpath in the run), by id, or by filter clauses
(:mod:`fashion.filters`, ANDed); unknown paths or ids are refused with one line. A removed item keeps its
row as a tombstone (role ``removed``, ``ok`` False, a zero vector) so ids stay stable; it leaves the
index, every neighbour list (the lists that lose a member are searched again) and the metrics.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from . import state, versions

log = logging.getLogger(__name__)


@dataclass
class RemoveResult:
    run_dir: Path
    ids: list[int] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.run_dir}: removed {len(self.ids)} items; {self.stats.get('lists_searched', 0)} "
                "neighbour lists searched again")


def select(cat: state.Catalog, paths=(), ids=(), filters=()) -> np.ndarray:
    """The live ids named by ``paths``, ``ids`` and ``filters`` (their union); ConfigError naming the first
    path or id that is not a live item."""
    from .. import filters as F

    live = cat.live
    chosen = set()
    for i in ids:
        if not 0 <= int(i) < len(live) or not live[int(i)]:
            raise ConfigError(f"{cat.path}: no item with id {i}" + (" (already removed)" if 0 <= int(i) < len(live) else ""))
        chosen.add(int(i))
    if paths:
        by_path = {}
        for i, (path, rel) in enumerate(zip(cat.items["path"].astype(str), cat.items["relpath"].astype(str))):
            if live[i]:
                by_path.setdefault(os.path.realpath(path), []).append(i)
                by_path.setdefault(rel, []).append(i)
        for path in paths:
            found = by_path.get(str(path)) or by_path.get(os.path.realpath(path))
            if not found:
                raise ConfigError(f"{path}: not an item of {cat.path}")
            chosen.update(found)
    if filters:
        chosen.update(np.flatnonzero(F.mask(cat.items, filters) & live).tolist())
    return np.array(sorted(chosen), dtype=np.int64)


def remove(run_dir, paths=(), ids=(), filters=(), wait: float = versions.DEFAULT_WAIT,
           keep: int = versions.DEFAULT_KEEP) -> RemoveResult:
    """Remove the chosen items from the run at ``run_dir``; the new version replaces it in one step
    (under the writer lock, waiting up to ``wait`` seconds for it; ``keep`` old versions kept)."""
    with versions.writer(run_dir, wait=wait):
        cat = state.load(run_dir)
        chosen = select(cat, paths, ids, filters)
        if not len(chosen):
            raise ConfigError(f"{cat.path}: nothing to remove (no item matches)")
        state.tombstone(cat, chosen)
        state.commit(cat, {"op": "remove", "count": len(chosen)}, removed=chosen,
                     embedded={"n_removed": len(chosen)})
    versions.prune(run_dir, keep)
    result = RemoveResult(cat.path, chosen.tolist(), dict(cat.stats))
    log.info("%s", result.summary())
    return result
