"""The trained indexes a change keeps: its coarse quantiser and codebooks are never retrained.

- ``faiss-ivfpq`` in memory (``index.npz``): :meth:`fashion.neighbors.ivfpq.FaissIVFPQIndex.changed` keeps
  the codes of the items that stay (renumbered), removes the leavers by id and encodes only the new ones;
- the on-disk IVF-PQ (``ivfpq/``): :class:`OnDisk` wraps :class:`fashion.scale.delta.LiveIndex`, whose
  base is linked into the next version unchanged beside a delta of the new codes and the removed ids
  (:func:`write`).

Either way the new vectors' coarse drift is measured (:mod:`.drift`: when to retrain, by a rebuild).
"""

from __future__ import annotations

import numpy as np

from ..run.index import unit_rows

KEPT_INDEXES = ("faiss-ivfpq",)  # in-memory backends whose training is kept across changes; the others are refitted


class OnDisk:
    """A :class:`~fashion.scale.delta.LiveIndex` searched as a fitted index over the gallery rows
    (``kneighbors`` → (cosine distances, rows of ``gallery_ids``; −1 where fewer exist)), as
    :func:`fashion.catalog.lists.search` searches one."""

    metric = "cosine"

    def __init__(self, live, gallery_ids: np.ndarray):
        self.live, self.gallery_ids = live, np.asarray(gallery_ids, np.int64)

    @property
    def n_samples_fit_(self) -> int:
        return self.live.count

    def kneighbors(self, X, n_neighbors: int):
        dist, ids = self.live.search(unit_rows(X), int(n_neighbors))
        rows = np.searchsorted(self.gallery_ids, ids)
        return dist, np.where(ids >= 0, np.minimum(rows, len(self.gallery_ids) - 1), -1)

    def list_sizes(self) -> np.ndarray:
        return self.live.list_sizes()

    def coarse_lists(self, X) -> np.ndarray:
        return self.live.coarse_lists(unit_rows(X))


def load(run):
    """(the kept index of ``run``, the item ids it holds in row order), or (None, None) for an index that
    is refitted at a change."""
    ref = run.index_ref
    path = run.path / ref.path
    if ref.kind == "ivfpq":
        from ..run import layout
        from ..scale.delta import LiveIndex, read_delta

        live = LiveIndex(path, read_delta(path / layout.IVFPQ_DELTA) if ref.delta else None,
                         rows=lambda ids: unit_rows(run.vectors(ids)))
        ids = np.array(run.gallery_ids)
        return OnDisk(live, ids), ids
    if ref.name in KEPT_INDEXES and ref.kind == "npz":
        from ..neighbors import load_index

        with np.load(path, allow_pickle=False) as arrays:
            ids = arrays["ids"].astype(np.int64)
        return load_index(path), ids
    return None, None


def changed(index, old_ids: np.ndarray, gallery_ids: np.ndarray, vectors, stats: dict):
    """``index`` (held ``old_ids``, row order) refitted on the gallery ``gallery_ids`` (sorted) of
    ``vectors`` without training: the codes of the items that stay are kept, the new items encoded;
    their coarse drift is put in ``stats["drift"]``."""
    from .drift import measure

    old_ids = np.asarray(old_ids, np.int64)
    order = np.argsort(old_ids, kind="stable")
    pos = np.minimum(np.searchsorted(old_ids, gallery_ids, sorter=order), max(len(old_ids) - 1, 0))
    kept = np.where(old_ids[order[pos]] == gallery_ids, order[pos], -1) if len(old_ids) else np.full(len(gallery_ids), -1)
    fresh = gallery_ids[kept < 0]
    drift = measure(index, vectors[fresh]) if len(fresh) else None
    stats["drift"] = drift.to_json() if drift else None
    if isinstance(index, OnDisk):
        live = index.live.changed(np.sort(old_ids), gallery_ids, lambda ids: unit_rows(vectors[ids]))
        return OnDisk(live, gallery_ids)
    return index.changed(vectors[gallery_ids], kept)


def lost_cells(index, index_ids, removed: np.ndarray) -> np.ndarray | None:
    """The inverted lists (cells) of the trained in-memory ``index`` (holding the items ``index_ids``, in row
    order) that held one of the ``removed`` items, read from its lists (no quantiser pass); None for an
    index that cannot say (every cell then counts as having lost one)."""
    from .lists import member

    cells_of = getattr(index, "cells_of", None)
    if cells_of is None or index_ids is None:
        return None
    return np.unique(cells_of(np.flatnonzero(member(index_ids, removed))))


def thin_probes(index, vectors, query_ids: np.ndarray, need: int, lost: np.ndarray | None = None,
                block: int = 8192) -> np.ndarray:
    """The ``query_ids`` (rows of ``vectors``) whose search in the approximate ``index`` visits inverted
    lists holding fewer than ``need`` vectors (``probed_cells``: the in-memory faiss-ivfpq; the on-disk
    index pads such a search with −1 instead). ``kneighbors`` searches those rows exactly, so after a
    removal emptied their lists a kept or reserve-refilled list no longer equals their fresh search: they
    are searched again. ``lost``: the cells this removal took a member from (:func:`lost_cells`); only
    searches visiting one of them are flagged (the others' cells are as they were, and so is their list's
    standing), and none at all, with no quantiser pass over the queries, when every lost cell still holds
    ``need`` vectors on its own. None: every cell counts. Read ``block`` rows at a time."""
    from ..neighbors.ivfpq import probed_total

    query_ids = np.asarray(query_ids, np.int64)
    probed = getattr(index, "probed_cells", None)
    if probed is None or not len(query_ids):
        return query_ids[:0]
    need = min(int(need), index.n_samples_fit_)
    sizes = np.asarray(index.list_sizes(), np.int64)
    if lost is not None:
        lost = np.unique(np.asarray(lost, np.int64))
        lost = lost[sizes[lost] < need]  # a cell of `need` vectors alone keeps every search visiting it whole
        if not len(lost):
            return query_ids[:0]
        touched = np.zeros(len(sizes) + 1, bool)  # the last slot: cell −1 (none found)
        touched[lost] = True
    thin = []
    for start in range(0, len(query_ids), block):
        cells = probed(np.asarray(vectors[query_ids[start:start + block]]))
        flags = probed_total(cells, sizes) < need
        if lost is not None:
            flags &= touched[cells].any(axis=1)
        thin.append(flags)
    return query_ids[np.concatenate(thin)]


def write(out, index: OnDisk):
    """``ivfpq/`` of the run staged in ``out``: the base of ``index`` (the previous version's ``ivfpq/``)
    linked in unchanged plus ``delta.npz``, or, once the delta is due
    (:meth:`~fashion.scale.delta.LiveIndex.due`), one new base folded from both. Returns (paths, IndexRef)."""
    from pathlib import Path

    from ..run import layout
    from ..run.writer import link_or_copy
    from ..scale import delta as live_delta

    live = index.live
    dest = Path(out) / layout.IVFPQ_DIR
    files = [dest / name for name in layout.IVFPQ_FILES]
    if live.due():
        live_delta.fold(live, dest)
        return files, layout.IndexRef("ivfpq", layout.IVFPQ_DIR, "faiss-ivfpq", "cosine", int(live.count))
    for name in layout.IVFPQ_FILES:
        link_or_copy(live.directory / name, dest / name)
    changed = bool(len(live.delta) or len(live.delta.removed))
    if changed:
        files.append(live_delta.write_delta(dest / layout.IVFPQ_DELTA, live.delta))
    return files, layout.IndexRef("ivfpq", layout.IVFPQ_DIR, "faiss-ivfpq", "cosine", int(live.count), delta=changed)
