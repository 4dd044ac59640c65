"""A run's saved index behind one interface whatever the backend: ``search(vectors, k) -> (distances, ids)``
with item ids (−1 where fewer than ``k`` exist), plus ``name``, ``metric``, ``count``, ``dim``, ``ids``.

- :class:`NpzIndex`: ``index.npz`` of a fashion.neighbors backend, whose ``ids`` member maps index rows
  to item ids;
- :class:`IvfpqIndex`: the on-disk IVF-PQ directory of fashion.scale (it was built with the item ids),
  plus the live catalogue's delta (added codes, removed ids) of a changed run.

:func:`load` opens the one run.json names and checks it against the run's items and embeddings: beyond
the shapes, a sample of gallery items is searched and each must find itself at distance ~0 (an
embeddings.npy reversed or taken from another run would serve wrong neighbours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..rundir import RunDirError
from . import layout

SAMPLE_ROWS = 64  # gallery items re-searched at open: each must find itself at distance ~0
SELECT_EXACT_MAX = 4_096  # allowed ids of a filtered on-disk IVF-PQ search scored exactly from their rows; more: the
# scan with a bitmap selector. The crossover measured at 100,000 items (benchmarks/live.py --filter-crossover,
# benchmarks/README.md): the exact pass grows with the allowed ids read (12 ms at 2,000, 28 ms at 5,000, 36 ms at
# 10,000 on loaded cores), the scan stays 12-16 ms (nprobe / √share lists) at a recall above the unfiltered one


class NpzIndex:
    """A fitted :class:`fashion.neighbors.NeighborIndex` and its ids (index row → item id)."""

    def __init__(self, index, ids: np.ndarray):
        self.index, self.ids = index, np.asarray(ids, dtype=np.int64)
        self.name, self.metric = index.name, index.metric
        self.count, self.dim = index.n_samples_fit_, index.n_features_in_

    def search(self, vectors: np.ndarray, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """(distances float32 (q, k'), item ids (q, k')), k' = min(k, count), ascending by distance;
        ``allowed``: None, or the item ids a query may return (selected during the search, exact over them
        up to the backend's ``SELECT_EXACT_MAX``: k' = min(k, allowed ids held))."""
        if allowed is not None:
            order = np.argsort(self.ids, kind="stable")
            pos = np.searchsorted(self.ids, np.asarray(allowed, dtype=np.int64), sorter=order)
            pos = np.minimum(pos, len(order) - 1)
            rows = order[pos][self.ids[order[pos]] == np.asarray(allowed, dtype=np.int64)]
            dist, found = self.index.kneighbors(vectors, n_neighbors=min(int(k), self.count), allowed=rows)
            return dist, self.ids[found]
        dist, rows = self.index.kneighbors(vectors, n_neighbors=min(int(k), self.count))
        return dist, self.ids[rows]


class IvfpqIndex:
    """fashion.scale's on-disk IVF-PQ index (float16 exact re-rank), with the live catalogue's delta
    where the run has one (:class:`fashion.scale.delta.LiveIndex`): cosine distances and item ids."""

    name, metric = "faiss-ivfpq", "cosine"

    def __init__(self, directory, ids: np.ndarray, delta: bool = False, rows=None):
        """``delta``: the run has ``delta.npz`` beside the base; ``rows``: ids → the run's float32 embedding
        rows (the added items' re-rank vectors)."""
        from ..scale.delta import LiveIndex, read_delta

        self.live = LiveIndex(directory, read_delta(Path(directory) / layout.IVFPQ_DELTA) if delta else None,
                              rows=rows and (lambda ids: unit_rows(rows(ids))))
        self.ids = np.asarray(ids, dtype=np.int64)
        self.count, self.dim = self.live.count, int(self.live.params.d)

    def search(self, vectors: np.ndarray, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """(cosine distances (q, k), item ids (q, k); −1 where fewer exist); queries are normalised.
        ``allowed``: None, or the item ids a query may return, chosen by how selective the filter is: up to
        :data:`SELECT_EXACT_MAX` of them scored exactly over their (float16) vectors (few: fast), more through
        a faiss bitmap selector during the scan (nprobe / √(their share) lists visited, then re-ranked
        exactly; a query the scan leaves short is searched exactly)."""
        q = unit_rows(vectors)
        if allowed is None:
            return self.live.search(q, int(k))
        allowed = np.unique(np.asarray(allowed, dtype=np.int64))
        allowed = allowed[np.isin(allowed, self.ids)]
        k = min(int(k), len(allowed))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if len(allowed) <= SELECT_EXACT_MAX:
            return self._exact_among(q, k, allowed)
        dist, ids = self.live.search(q, k, allowed=allowed)
        short = np.flatnonzero((ids < 0).any(axis=1))
        if len(short):
            dist[short], ids[short] = self._exact_among(q[short], k, allowed)
        return dist, ids

    def _exact_among(self, q: np.ndarray, k: int, allowed: np.ndarray, block: int = 16_384):
        """Exact top-k of each query among the ``allowed`` ids (sorted), from the re-rank vectors."""
        best_d = np.full((len(q), 0), np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for s in range(0, len(allowed), block):
            ids = allowed[s:s + block]
            d = (1.0 - q @ self.live.vectors_of(ids, mapped=True).T).astype(np.float32)
            best_d = np.concatenate([best_d, d], axis=1)
            best_i = np.concatenate([best_i, np.broadcast_to(ids, d.shape)], axis=1)
            order = np.argsort(best_d, axis=1, kind="stable")[:, :k]
            best_d, best_i = np.take_along_axis(best_d, order, 1), np.take_along_axis(best_i, order, 1)
        return best_d, best_i


def unit_rows(rows) -> np.ndarray:
    """float32 ``rows`` at unit length, a zero row kept zero (the on-disk index searches unit vectors):
    :func:`fashion.neighbors.base.unit_rows`, the one normalisation of cosine rows."""
    from ..neighbors.base import unit_rows as normalised

    return normalised(rows, keep_zero=True)


def load(run) -> "NpzIndex | IvfpqIndex":
    """The index of ``run`` (a :class:`fashion.run.reader.Run`), checked; RunDirError naming the file."""
    ref = run.index_ref
    path = run.path / ref.path
    try:
        if ref.kind == "ivfpq":
            index = IvfpqIndex(path, run.gallery_ids, delta=ref.delta, rows=run.vectors)
        elif ref.kind == "rows":
            index = _load_rows(run, path)
        else:
            index = _load_npz(path)
    except (ValueError, OSError, RuntimeError) as exc:  # FormatError, IndexBuildError, faiss' RuntimeError
        raise RunDirError(f"{path}: not a readable index ({str(exc).splitlines()[0] if str(exc) else exc})"
                          ) from None
    gallery = run.gallery_ids
    if index.count != len(gallery) or index.dim != run.embeddings.shape[1]:
        raise RunDirError(f"{path}: {index.count} x {index.dim} vectors, but the item table lists {len(gallery)} "
                          f"indexed items of dimension {run.embeddings.shape[1]}")
    if not np.array_equal(np.sort(index.ids), gallery):
        raise RunDirError(f"{path}: its ids are not the gallery items of {layout.ITEMS_DIR}/ (rerun to rebuild the run)")
    _check_items_find_themselves(run, index, path)
    return index


def _load_npz(path: Path) -> NpzIndex:
    from ..neighbors import load_index
    from ..runfiles import check_npz

    index = load_index(path)
    if "ids" not in check_npz(path):
        raise ValueError("no 'ids' member (index row → item id)")
    with np.load(path, allow_pickle=False) as arrays:
        ids = arrays["ids"]
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"member 'ids' must be a vector of integers, got {ids.dtype} {ids.shape}")
    return NpzIndex(index, ids)


def _load_rows(run, path: Path) -> NpzIndex:
    """An ``exact`` index kept as its rows (``index-rows.npy``: ids, index row → item id), fitted on
    those rows of the run's embeddings: what the live catalogue writes instead of a second copy of the
    vectors (the fit is a normalisation, the same arithmetic as the saved index's)."""
    from ..neighbors import build_index
    from ..runfiles import check_npy

    ref = run.index_ref
    if ref.name not in layout.ROW_INDEXES:
        raise ValueError(f"an index kept as rows must be one of {', '.join(layout.ROW_INDEXES)}, not {ref.name!r}")
    check_npy(path)
    ids = np.load(path, allow_pickle=False)
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or (len(ids) and (ids.min() < 0 or ids.max() >= len(run.items))):
        raise ValueError(f"expected a vector of item ids, got {ids.dtype} {ids.shape}")
    ids = ids.astype(np.int64)
    return NpzIndex(build_index(ref.name, metric=ref.metric).fit(run.embeddings[ids]), ids)


def _check_items_find_themselves(run, index, path: Path) -> None:
    from ..neighbors import APPROXIMATE_INDEXES

    ids = run.gallery_ids
    pick = ids[np.unique(np.linspace(0, len(ids) - 1, min(SAMPLE_ROWS, len(ids))).astype(int))]
    vectors = run.vectors(pick).astype(np.float32)  # pread: the check maps nothing of a large file
    # exact copies tie at distance 0: the item need not come first
    dist, found = index.search(vectors, min(len(ids), 8))
    tolerance = 1e-3 * max(1.0, float(np.abs(vectors).max(initial=0.0)) ** 2)
    misses = [i for n, i in enumerate(pick)
              if not (found[n] == i).any() or float(np.abs(dist[n][found[n] == i]).min()) > tolerance]
    # an approximate search (HNSW, IVF-PQ) may miss an item now and then; a wrong file misses nearly all
    allowed = len(pick) // 10 if index.name in APPROXIMATE_INDEXES else 0
    if len(misses) > allowed:
        raise RunDirError(f"{run.path / layout.EMBEDDINGS}: item {misses[0]} "
                          f"({run.items['relpath'].iat[misses[0]]!r}) does not find itself at distance 0 in "
                          f"{path.name}: the embeddings are not the ones the index was built from (rerun to "
                          "rebuild the run)")
