"""The on-disk IVF-PQ index of a live run: the base directory, never changed, plus a small delta.

A change of a run with the on-disk index (:mod:`.ivfpq`; ``fashion add`` / ``fashion remove``) never
rewrites the base (``index.faiss``, ``index.ivfdata``, ``vectors.f16.npy``: hard-linked into the next
version unchanged) and never retrains it. Each version writes a delta beside it (``delta.npz``, :data:`fashion.run.layout.IVFPQ_DELTA`):

- ``ids``, ``lists``, ``codes``: the added items' ids, inverted list and PQ codes, encoded with the
  base's *trained* coarse quantiser and codebooks (an empty copy of the base index, read without its
  inverted lists: :func:`empty_trained`); a later change keeps these codes and encodes only its own;
- (no vectors: the exact re-rank reads the added items' float32 rows from the run's own embeddings, whose
  segments the versions already share, through the ``rows`` callable; the base's float16 rows stay in
  ``vectors.f16.npy``, so the delta stays small: 16 bytes and the code per added item);
- ``removed``: the base ids that left the gallery (tombstones: skipped during the scan by a faiss id
  selector, so a query still gets k live results; an added item that leaves is dropped from the delta).

:class:`LiveIndex` searches base and delta with the same ``nprobe`` and re-ranks the union of their
candidates exactly. Past :data:`FOLD_SHARE` of the base (delta plus tombstones), :func:`fold` writes a new
base (the codes copied list by list, nothing encoded again) and the delta starts empty, as the embedding
segments are compacted (:mod:`fashion.run.segments`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..neighbors.faiss import bitmap_selector, search_params
from ..neighbors.ivfpq import IndexParams, coarse_lists, list_sizes, probed_lists, tune_quantizer
from . import ivfpq

log = logging.getLogger(__name__)

FOLD_SHARE = 0.25  # delta items + tombstones above this share of the base: fold them into a new base


@dataclass
class Delta:
    """The added items (ids sorted; their list, codes (m, code_size) uint8) and the removed base ids (sorted)."""

    ids: np.ndarray
    lists: np.ndarray
    codes: np.ndarray
    removed: np.ndarray

    @classmethod
    def empty(cls, code_size: int) -> "Delta":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, code_size), np.uint8),
                   np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> "Delta":
        return Delta(self.ids[rows], self.lists[rows], self.codes[rows], self.removed)


def read_delta(path) -> Delta:
    """``delta.npz``; ValueError naming what is wrong (the run reader turns it into one line)."""
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("ids", "lists", "codes", "removed") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: no member {missing[0]!r}")
        delta = Delta(*(data[k] for k in ("ids", "lists", "codes", "removed")))
    m = len(delta.ids)
    if (delta.ids.ndim != 1 or delta.lists.shape != (m,) or delta.codes.ndim != 2 or len(delta.codes) != m
            or delta.removed.ndim != 1 or delta.codes.dtype != np.uint8):
        raise ValueError(f"{path}: members of mismatched shapes or types")
    return delta


def write_delta(path, delta: Delta) -> Path:
    from ..atomic import atomic_write

    with atomic_write(Path(path)) as f:
        np.savez(f, **asdict(delta))
    return Path(path)


def empty_trained(directory):
    """An empty in-memory copy of the base index of ``directory``: its OPQ rotation, coarse quantiser and
    PQ codebooks, read without the inverted lists (the base's files are only read)."""
    import faiss

    index = faiss.read_index(str(Path(directory) / ivfpq.INDEX_FILE), faiss.IO_FLAG_SKIP_IVF_DATA)
    ivf = faiss.extract_index_ivf(index)
    invlists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(invlists, True)
    invlists.this.disown()  # the index owns it now
    ivf.ntotal = index.ntotal = 0
    return index


def _entries(index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, lists, codes) of every entry of an IVF index's inverted lists, ids ascending."""
    import faiss
    from faiss.contrib.inspect_tools import get_invlist

    ivf = faiss.extract_index_ivf(index)
    parts = [(l, *get_invlist(ivf.invlists, l)) for l in range(ivf.nlist) if ivf.invlists.list_size(l)]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, ivf.code_size), np.uint8)
    ids = np.concatenate([p[1] for p in parts])
    lists = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts])
    codes = np.concatenate([p[2] for p in parts])
    order = np.argsort(ids, kind="stable")
    return ids[order], lists[order], codes[order]


def encode(empty, vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, lists, codes) of unit ``vectors`` encoded by the trained ``empty`` index (left empty)."""
    import faiss

    index = faiss.clone_index(empty)
    index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))
    return _entries(index)


def fill(empty, ids: np.ndarray, lists: np.ndarray, codes: np.ndarray):
    """A copy of the trained ``empty`` index holding these encoded entries (nothing encoded again)."""
    import faiss

    index = faiss.clone_index(empty)
    ivf = faiss.extract_index_ivf(index)
    order = np.argsort(lists, kind="stable")
    ids, lists = np.ascontiguousarray(ids[order], np.int64), lists[order]
    codes = np.ascontiguousarray(codes[order], np.uint8)
    bounds = np.flatnonzero(np.r_[True, lists[1:] != lists[:-1], True]) if len(lists) else []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ivf.invlists.add_entries(int(lists[lo]), int(hi - lo), faiss.swig_ptr(ids[lo:hi]), faiss.swig_ptr(codes[lo:hi]))
    ivf.ntotal = index.ntotal = len(ids)
    return index


class LiveIndex:
    """The base on-disk index of ``directory`` with ``delta`` (None: none; the run's ``index.delta`` says
    whether its ``ivfpq/delta.npz`` is one, :mod:`fashion.run.index`) and ``rows`` (ids → the added items'
    float32 unit rows, for the re-rank: the run's embeddings; needed once the delta holds items):
    ``search(Q, k, allowed=None)`` → (cosine distances, item ids; −1 where fewer exist) of unit queries."""

    def __init__(self, directory, delta: Delta | None = None, base: "ivfpq.ScaleIndex | None" = None, rows=None):
        self.directory = Path(directory)
        self.base = base if base is not None else ivfpq.ScaleIndex(self.directory)
        self.params: IndexParams = self.base.params
        self.delta = delta if delta is not None else Delta.empty(_ivf(self.base.index).code_size)
        self.rows = rows
        self._empty = self._added = self._live = None  # made when first needed

    @property
    def count(self) -> int:
        return int(self.params.count) - len(self.delta.removed) + len(self.delta)

    @property
    def id_bound(self) -> int:
        """One more than the largest id base or delta may return (the bitmap selectors' size)."""
        return int(max(int(self.params.id_space), int(self.delta.ids.max(initial=-1)) + 1,
                       int(self.delta.removed.max(initial=-1)) + 1))

    @property
    def empty(self):
        if self._empty is None:
            self._empty = empty_trained(self.directory)
        return self._empty

    def vectors_of(self, ids, mapped: bool = False) -> np.ndarray:
        """float32 re-rank rows of ``ids`` (the base's float16 file, or the added items' :attr:`rows`): the base's read
        with pread (a server answering random ids maps nothing), or ``mapped`` through the file's map (many
        sorted ids at once: a filtered search's exact pass, as :mod:`fashion.run.index` always read them)."""
        ids = np.asarray(ids, np.int64)
        if len(ids) > 1:  # a block of searches' candidates repeat (the delta's few items above all): each read once
            uniq, inverse = np.unique(ids, return_inverse=True)
            if len(uniq) < len(ids):
                return self.vectors_of(uniq, mapped)[inverse]
        pos = np.minimum(np.searchsorted(self.delta.ids, ids), max(len(self.delta) - 1, 0))
        mine = (self.delta.ids[pos] == ids) if len(self.delta) else np.zeros(len(ids), bool)
        out = np.empty((len(ids), self.params.d), np.float32)
        if (~mine).any():
            base = ids[~mine]
            out[~mine] = self.base.vectors[base] if mapped else self.base.read_rows(base)
        if mine.any():
            out[mine] = self.rows(ids[mine])
        return out

    def search(self, Q: np.ndarray, k: int, allowed: np.ndarray | None = None,
               block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of unit queries ``Q``: the PQ candidates of base (tombstones skipped) and delta,
        ``max(k, rerank)`` of each, re-ranked exactly; ``allowed``: None, or the sorted item ids a query
        may return (a bitmap selector during both scans, visiting ``nprobe`` / √(their share of the items)
        lists, at most all: fewer allowed candidates scanned than an unfiltered search scans items, but
        fewer rivals for the ``rerank`` PQ places too; at 10 % of the 100k benchmark gallery, 50 and 160
        lists gave the same recall@10, above the unfiltered search's, at half the scan's time)."""
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        if allowed is None and not len(self.delta) and not len(self.delta.removed):
            return self.base.search(Q, int(k))  # a run never changed: the base alone, as before
        nprobe, rerank = int(self.params.nprobe), int(self.params.rerank or 0)
        kc = max(int(k), rerank)
        if allowed is not None:  # the allowed ids (live gallery items only)
            selector, bits = bitmap_selector(allowed, self.id_bound)
        elif len(self.delta.removed):  # every id but the tombstones (made once)
            if self._live is None:
                self._live = bitmap_selector(self.delta.removed, self.id_bound, invert=True)
            selector, bits = self._live
        else:
            selector = bits = None
        if allowed is not None and len(allowed):
            nprobe = int(np.ceil(nprobe * np.sqrt(max(self.count, 1) / len(allowed))))
        nprobe = min(nprobe, int(self.params.nlist))
        if len(self.delta) and self._added is None:
            self._added = fill(self.empty, self.delta.ids, self.delta.lists, self.delta.codes)
        for index in (self.base.index, self._added):  # for the lists this search probes (a filter widens them)
            if index is not None:
                tune_quantizer(index, self.params.factory, nprobe)
        dist = np.full((len(Q), int(k)), np.inf, np.float32)
        ids = np.full((len(Q), int(k)), -1, np.int64)
        for s in range(0, len(Q), block):  # candidates × d re-rank rows in memory per block, not per run
            d, i = self._block(Q[s:s + block], int(k), kc, nprobe, selector)
            dist[s:s + block, :d.shape[1]], ids[s:s + block, :i.shape[1]] = d, i
        del bits  # the selector read it during the scans
        return dist, np.where(np.isfinite(dist), ids, -1)

    def _block(self, q: np.ndarray, k: int, kc: int, nprobe: int, selector):
        cands = [self.base.index.search(q, kc, params=search_params(self.base.index, selector, nprobe))[1]]
        if len(self.delta):
            cands.append(self._added.search(q, min(kc, len(self.delta)), params=search_params(self._added, selector, nprobe))[1])
        cand = np.concatenate(cands, axis=1)
        return ivfpq.reranked(q, cand, self.vectors_of, k)

    def list_sizes(self) -> np.ndarray:
        """Vectors per inverted list: the base's (tombstones still counted) and the delta's."""
        sizes = list_sizes(self.base.index)
        return sizes + np.bincount(self.delta.lists, minlength=len(sizes)).astype(np.int64)

    def coarse_lists(self, X: np.ndarray) -> np.ndarray:
        """The inverted list each unit row of ``X`` falls in."""
        return coarse_lists(self.base.index, np.asarray(X, np.float32))

    def probed_cells(self, X: np.ndarray) -> np.ndarray:
        """The inverted lists an unfiltered :meth:`search` of each unit row of ``X`` visits, in base and
        delta alike (one quantiser), (q, nprobe) int64 (−1 where the quantiser found fewer)."""
        nprobe = min(int(self.params.nprobe), int(self.params.nlist))
        tune_quantizer(self.base.index, self.params.factory, nprobe)  # as search sets it: the same lists
        return probed_lists(self.base.index, np.asarray(X, np.float32), nprobe)

    def added_lists(self, ids: np.ndarray) -> np.ndarray | None:
        """The inverted list of each of the items ``ids`` held in the delta (as encoded), or None where one
        of them is not in it."""
        ids = np.asarray(ids, np.int64)
        pos = np.minimum(np.searchsorted(self.delta.ids, ids), max(len(self.delta) - 1, 0))
        if not len(self.delta) or not np.array_equal(self.delta.ids[pos], ids):
            return None
        return self.delta.lists[pos].astype(np.int64)

    def changed(self, old_ids: np.ndarray, new_ids: np.ndarray, vectors_of) -> "LiveIndex":
        """This index after the gallery went from ``old_ids`` to ``new_ids`` (sorted item ids):
        leavers tombstoned (base) or dropped (delta), a base item coming back un-tombstoned, the others
        encoded with the trained quantiser (``vectors_of(ids)``: their unit float32 rows, the new index's
        :attr:`rows`)."""
        gone, come = np.setdiff1d(old_ids, new_ids), np.setdiff1d(new_ids, old_ids)
        delta = self.delta.take(np.flatnonzero(~np.isin(self.delta.ids, gone)))
        back = np.intersect1d(come, delta.removed)
        removed = np.union1d(np.setdiff1d(delta.removed, back), np.setdiff1d(gone, self.delta.ids))
        fresh = np.setdiff1d(come, back)
        if len(fresh):
            vectors = np.asarray(vectors_of(fresh), np.float32)
            ids, lists, codes = encode(self.empty, vectors, fresh)
            merged = Delta(np.concatenate([delta.ids, ids]), np.concatenate([delta.lists, lists]),
                           np.concatenate([delta.codes, codes]), removed)
            delta = merged.take(np.argsort(merged.ids, kind="stable"))
        delta.removed = removed.astype(np.int64)
        out = LiveIndex(self.directory, delta, base=self.base, rows=vectors_of)
        out._empty = self._empty
        return out

    def due(self) -> bool:
        """Whether the delta and tombstones are past :data:`FOLD_SHARE` of the base (fold them)."""
        return len(self.delta) + len(self.delta.removed) > FOLD_SHARE * max(int(self.params.count), 1)


def _ivf(index):
    import faiss

    return faiss.extract_index_ivf(index)


def fold(live: LiveIndex, out_dir) -> IndexParams:
    """Write ``live`` (base less its tombstones, plus the delta) as a new base in ``out_dir``: the codes
    copied list by list from the base's inverted lists and the delta (nothing encoded or trained again),
    ``index.ivfdata`` and ``vectors.f16.npy`` written anew, ``index.json`` last."""
    import faiss

    from ..atomic import atomic_path, ensure_dir, write_json

    out_dir = ensure_dir(out_dir)
    ids, lists, codes = _entries(live.base.index)
    keep = ~np.isin(ids, live.delta.removed)
    delta = live.delta
    ids = np.concatenate([ids[keep], delta.ids])
    lists = np.concatenate([lists[keep], delta.lists])
    codes = np.concatenate([codes[keep], delta.codes])
    filled = fill(live.empty, ids, lists, codes)
    index = faiss.clone_index(live.empty)
    ivf = _ivf(index)
    data = out_dir / ivfpq.IVFDATA_FILE
    data.unlink(missing_ok=True)
    invlists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(data))
    lists_of = faiss.InvertedListsPtrVector()
    lists_of.push_back(_ivf(filled).invlists)
    ivf.ntotal = index.ntotal = invlists.merge_from_multiple(lists_of.data(), lists_of.size(), False)
    ivf.replace_invlists(invlists, True)
    invlists.this.disown()
    with atomic_path(out_dir / ivfpq.INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    id_space = int(max(live.params.id_space, int(ids.max(initial=-1)) + 1))
    d = int(live.params.d)
    with atomic_path(out_dir / ivfpq.RERANK_FILE) as tmp:
        mat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(id_space, d))
        base_ids = ids[:int(keep.sum())]  # _entries gives them ascending; keep's order holds
        for s in range(0, len(base_ids), 65_536):
            chunk = base_ids[s:s + 65_536]
            mat[chunk] = live.base.rows.read(chunk)
        for s in range(0, len(delta), 65_536):
            chunk = delta.ids[s:s + 65_536]
            mat[chunk] = live.rows(chunk)
        mat.flush()
        del mat
    params = IndexParams(**{**asdict(live.params), "count": len(ids), "id_space": id_space,
                            "timings": {**live.params.timings, "folded": True}})
    write_json(out_dir / ivfpq.INDEX_JSON, asdict(params))
    log.info("%s: delta of %d items and %d tombstones folded into a new base of %d", out_dir, len(delta),
             len(delta.removed), len(ids))
    return params

