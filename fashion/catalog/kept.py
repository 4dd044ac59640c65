"""The trained indexes a change keeps: its coarse quantiser and codebooks are never retrained.

- ``faiss-ivfpq`` in memory (``index.npz``): :meth:`fashion.neighbors.ivfpq.FaissIVFPQIndex.changed` keeps
  the codes of the items that stay (renumbered), removes the leavers by id and encodes only the new ones;
- the on-disk IVF-PQ (``ivfpq/``): :class:`OnDisk` wraps :class:`fashion.scale.delta.LiveIndex`, whose
  base is linked into the next version unchanged beside a delta of the new codes and the removed ids
  (:func:`write`).

Either way the new vectors' coarse drift is measured (:mod:`.drift`: when to retrain, by a rebuild).
The kept lists follow what a search with the kept index gives (:mod:`.lists`): a list takes only the new
items its search reaches (:func:`reach`), and the lists whose search in memory goes exact where its probed
lists hold too few, or stops being exact, are searched again (:func:`thin_probes`, :func:`grown_probes`).
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
        touched = _cell_mask(lost, len(sizes))

    def thin(cells):
        flags = probed_total(cells, sizes) < need
        return flags & touched[cells].any(axis=1) if lost is not None else flags
    return _flagged(probed, vectors, query_ids, thin, block)


def _cell_mask(cells: np.ndarray, n_cells: int) -> np.ndarray:
    """A bool mask over ``n_cells`` cells + one last slot for cell −1 (none found), set at ``cells``."""
    mask = np.zeros(n_cells + 1, bool)
    mask[cells] = True
    return mask


def _flagged(probed, vectors, query_ids: np.ndarray, rule, block: int) -> np.ndarray:
    """The ``query_ids`` whose probed cells (``probed`` of their rows of ``vectors``, (q, nprobe)) ``rule``
    flags ((q, nprobe) → (q,) bool), read ``block`` rows at a time."""
    flags = [rule(probed(np.asarray(vectors[query_ids[start:start + block]])))
             for start in range(0, len(query_ids), block)]
    return query_ids[np.concatenate(flags)] if flags else query_ids[:0]


def widened_probes(before, vectors, query_ids: np.ndarray, need_before: int, need: int,
                   block: int = 8192) -> np.ndarray:
    """The ``query_ids`` (rows of ``vectors``) whose search in the in-memory IVF ``before`` (the index the
    kept lists were searched in) was bound to its probed lists at the lists' own width (``need_before``
    neighbours asked) but goes exact at the width the catalogue keeps with its reserve (``need``): the
    first change of a run whose lists were made without a reserve. Their kept list is not what a fresh
    search gives, so they are searched again (beside :func:`thin_probes` and :func:`grown_probes`, which
    follow the lists' sizes at one width)."""
    from ..neighbors.ivfpq import probed_total

    query_ids = np.asarray(query_ids, np.int64)
    probed = getattr(before, "probed_cells", None)
    if probed is None or not len(query_ids):
        return query_ids[:0]
    n = before.n_samples_fit_
    need_before, need = min(int(need_before), n), min(int(need), n)
    if need_before >= need:
        return query_ids[:0]
    sizes = np.asarray(before.list_sizes(), np.int64)

    def widened(cells):
        total = probed_total(cells, sizes)
        return (total >= need_before) & (total < need)
    return _flagged(probed, vectors, query_ids, widened, block)


def reach(index, vectors, new_rows: np.ndarray, need: int):
    """Which new items a fresh search of a query can return, for :func:`.lists.merge_added`: None where
    any can (an exact index), else a function of query ids (rows of ``vectors``) → (q, m) bool over the
    new items (``new_rows``: their rows in the IVF ``index``, after the change). A search visits its
    probed lists and returns none of the others' items; in memory, where those lists hold fewer than
    ``need`` (the neighbours it asks for), ``kneighbors`` searches the row exactly (every item), while
    the on-disk index (:class:`OnDisk`) pads such a search instead. So a kept list takes only what a
    rebuild with the same index would have found."""
    from ..neighbors.ivfpq import probed_total

    new_rows = np.asarray(new_rows, np.int64)
    if isinstance(index, OnDisk):
        cells = index.live.added_lists(index.gallery_ids[new_rows])  # new items are encoded into the delta
        if cells is None:
            return None

        def probed(X):
            return index.live.probed_cells(unit_rows(X))
        sizes, need, n_lists = None, 0, int(index.live.params.nlist)  # never searched exactly
    else:
        probed = getattr(index, "probed_cells", None)
        if probed is None:
            return None
        cells = index.cells_of(new_rows)
        sizes, need = np.asarray(index.list_sizes(), np.int64), min(int(need), index.n_samples_fit_)
        n_lists = len(sizes)

    def allowed(query_ids: np.ndarray) -> np.ndarray:
        probes = probed(np.asarray(vectors[np.asarray(query_ids, np.int64)]))
        table = np.zeros((len(probes), n_lists + 1), bool)  # the last column: list −1 (none found)
        table[np.arange(len(probes))[:, None], probes] = True
        mask = table[:, cells]
        if sizes is not None:
            mask[probed_total(probes, sizes) < need] = True  # searched exactly: every new item
        return mask
    return allowed


def grown_probes(before, index, vectors, query_ids: np.ndarray, need: int, block: int = 8192) -> np.ndarray:
    """The ``query_ids`` (rows of ``vectors``) whose search in ``before`` (the in-memory IVF index before the
    change) was exact, its probed lists holding fewer than ``need`` vectors, and in ``index`` (after it:
    the same quantiser) is bound to its lists again, since new items filled them: their list, exact over
    the old gallery, is not what a fresh search gives, so they are searched again (the counterpart of
    :func:`thin_probes` for adds). Only lists that were thin on their own and grew can turn a search, so
    with none there is no quantiser pass."""
    from ..neighbors.ivfpq import probed_total

    query_ids = np.asarray(query_ids, np.int64)
    probed = getattr(index, "probed_cells", None)
    if probed is None or before is None or getattr(before, "probed_cells", None) is None or not len(query_ids):
        return query_ids[:0]
    old, new = np.asarray(before.list_sizes(), np.int64), np.asarray(index.list_sizes(), np.int64)
    need_old, need_new = min(int(need), before.n_samples_fit_), min(int(need), index.n_samples_fit_)
    grown = np.flatnonzero((new > old) & (old < need_old))  # every list a thin search probed held < need_old
    if not len(grown) and need_new >= need_old:
        return query_ids[:0]
    touched = _cell_mask(grown, len(new))

    def turned(cells):
        flags = (probed_total(cells, old) < need_old) & (probed_total(cells, new) >= need_new)
        if need_new >= need_old:  # else a smaller gallery alone may have turned a search
            flags &= touched[cells].any(axis=1)
        return flags
    return _flagged(probed, vectors, query_ids, turned, block)


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
