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
from .lists import MARGIN

REACH_K = 256  # gallery items first looked up per new item (OnDisk.reached), then 4× for those that may reach further
REACH_MAX = 4096  # at most this many per new item
REACH_PROBES = 2  # × the index's nprobe lists visited per new item (m new items: cheap; fewer misses than a rebuild's search)
PQ_SIGMAS = 4.0  # the PQ estimate's spread allowed beyond a list's reach (see OnDisk.reached)

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

    def reached(self, query_ids: np.ndarray, worst: np.ndarray, query_rows, new_ids: np.ndarray,
                new_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs (position in ``query_ids``, new item id, cosine distance) where a new item may enter an
        existing list: its distance within the list's last known entry ``worst`` (+ :data:`MARGIN`). Not one
        n × m product over every existing list: the new items are the queries, each item's nearest of the
        gallery found by their PQ codes (:meth:`~fashion.scale.delta.LiveIndex.coded`, :data:`REACH_PROBES`
        × nprobe lists: the lists a rebuild's search would visit from the other side), those whose estimate
        is within reach confirmed by the exact distance of the float32 rows (``query_rows[positions]``: the
        queries' rows), as the merge needs it. A code's estimate of |x − q|² is |x − q|² + |ε|² − 2⟨x − q, ε⟩
        (ε: q's coding error, in the codes' space of dimension D), so "within reach" is the list's reach w
        plus e²/2 + :data:`PQ_SIGMAS` × e·√(2w / D), e the largest coding error of the new items (flat codes:
        e = 0, the reach itself). An item whose
        ``k``-th estimate is still within the farthest reach is searched again with 4 × k, up to :data:`REACH_MAX`."""
        query_ids, worst = np.asarray(query_ids, np.int64), np.asarray(worst, np.float64)
        new = unit_rows(np.asarray(new_vectors, np.float32))
        live = self.live
        nprobe = int(live.params.nprobe) * REACH_PROBES
        error, dim = live.code_error(new)
        e = float(error.max(initial=0.0))  # an item's code is this far from it (the new items' worst)
        reach = worst + e * e / 2 + PQ_SIGMAS * e * np.sqrt(2 * np.maximum(worst, 0.0) / dim)
        farthest = float(reach.max(initial=0.0))
        pos_all, new_all = [], []
        todo, k = np.arange(len(new)), REACH_K
        while len(todo):
            est, ids, unseen = live.coded(new[todo], k, nprobe)
            pos = np.minimum(np.searchsorted(query_ids, ids), max(len(query_ids) - 1, 0))
            hit = (ids >= 0) & (query_ids[pos] == ids) if len(query_ids) else np.zeros(ids.shape, bool)
            hit &= est <= reach[pos]
            more = (unseen <= farthest) & (k < REACH_MAX)  # it may reach lists beyond the k it found: again, 4 × k
            row, col = np.nonzero(hit & ~more[:, None])
            pos_all.append(pos[row, col])
            new_all.append(todo[row])
            todo, k = todo[more], min(4 * k, REACH_MAX)
        pos, which = np.concatenate(pos_all), np.concatenate(new_all)
        rows = unit_rows(np.asarray(query_rows[pos], np.float32))
        dist = (1.0 - np.einsum("pd,pd->p", rows, new[which])).astype(np.float32)
        close = dist <= worst[pos] + MARGIN
        return pos[close], np.asarray(new_ids, np.int64)[which[close]], dist[close]

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
