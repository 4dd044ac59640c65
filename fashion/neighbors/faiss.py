"""faiss indexes: ``faiss-flat`` (exact, its own copy of the data), ``faiss-hnsw`` and ``faiss-ivf`` (approximate).

``import faiss`` below is the faiss package (absolute imports), imported only when an index is used.
"""

from __future__ import annotations

import math

import numpy as np

from .base import NeighborIndex


def bitmap_selector(rows: np.ndarray, n: int, invert: bool = False):
    """(a faiss selector of the ids in ``rows`` among 0..n-1, or with ``invert`` of every id but them; the
    bitmap it reads, which must outlive the searches that use it)."""
    import faiss

    member = np.full(n, bool(invert))  # a scatter, O(n + rows): np.isin(np.arange(n), rows) sorts both
    member[np.asarray(rows, dtype=np.int64)] = not invert
    bits = np.packbits(member, bitorder="little")
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits)), bits


def search_params(index, selector=None, nprobe: int | None = None, ef: int | None = None):
    """faiss search parameters for ``index`` with ``selector`` (None: none) checked during the scan (not a
    filter of a finished top-k): IVF parameters with ``nprobe`` (capped at nlist) for an IVF index (also
    under an OPQ pre-transform), HNSW parameters with ``ef`` for an HNSW one, plain ones otherwise."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        params = faiss.SearchParametersIVF(nprobe=int(min(nprobe or ivf.nprobe, ivf.nlist)))
    elif isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=int(ef or index.hnsw.efSearch))
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector  # on the IVF parameters themselves, not on an OPQ wrapper's
    if ivf is not None and isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):
        params = faiss.SearchParametersPreTransform(index_params=params)
    return params


def selected_params(index, rows: np.ndarray, n: int, nprobe: int | None = None, ef: int | None = None):
    """faiss search parameters that let ``index`` return only the ids in ``rows`` (of 0..n-1)
    (:func:`bitmap_selector` in :func:`search_params`). Returns (params, keep-alive): the selector reads the
    bitmap array, which must outlive the search."""
    selector, bits = bitmap_selector(rows, n)
    return search_params(index, selector, nprobe, ef), (bits, selector)


def saved_index(arrays, X: np.ndarray, what: str = "faiss"):
    """The faiss index serialised in a saved index's ``faiss_index`` array, checked to hold the saved rows
    ``X`` (ValueError where it does not: :func:`fashion.neighbors.load_index` reports a file that is not an index)."""
    import faiss

    index = faiss.deserialize_index(np.ascontiguousarray(arrays["faiss_index"], dtype=np.uint8))
    if index.ntotal != len(X) or index.d != X.shape[1]:
        raise ValueError(f"the {what} index holds {index.ntotal} x {index.d} vectors, "
                         f"the saved data {X.shape[0]} x {X.shape[1]}")
    return index


class _FaissIndex(NeighborIndex):
    """faiss index on inner product of unit rows (cosine) or L2; subclasses make the index."""

    def _make(self, d: int):
        raise NotImplementedError

    def _faiss_metric(self):
        import faiss

        return faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2

    def _train(self, index, X):
        pass

    def _build(self, X):
        index = self._make(X.shape[1])
        self._train(index, X)
        index.add(X)
        self._index = index
        self._configure()

    def _configure(self):
        """Apply search-time parameters (after build or load)."""

    def _search(self, Q, k):
        dist, idx = self._index.search(Q, k)
        return dist, idx

    def _search_allowed(self, Q, k, rows):
        """faiss' own search with a selector of ``rows``, scanning more of the index in proportion to
        how few rows are allowed (nprobe, efSearch / the allowed share), so as many allowed candidates
        are seen as an unfiltered search sees."""
        share = len(rows) / self._index.ntotal
        nprobe = getattr(self._index, "nprobe", None)
        params, _alive = selected_params(self._index, rows, self._index.ntotal,
                                         nprobe=nprobe and int(np.ceil(nprobe / share)),
                                         ef=int(np.ceil(max(int(self.params.get("efSearch", 64)), k) / share)))
        return self._index.search(Q, k, params=params)

    def state_arrays(self):
        import faiss

        return {"faiss_index": faiss.serialize_index(self._index)}

    def restore(self, X, arrays):
        self._index = saved_index(arrays, X)
        self._X = X
        self._configure()
        return self


class FaissFlatIndex(_FaissIndex):
    """faiss ``IndexFlatIP`` / ``IndexFlatL2`` (exact brute force; holds its own copy of the data)."""

    name = "faiss-flat"

    def _make(self, d):
        import faiss

        return faiss.IndexFlatIP(d) if self.metric == "cosine" else faiss.IndexFlatL2(d)


class FaissHNSWIndex(_FaissIndex):
    """faiss ``IndexHNSWFlat`` (approximate): graph with ``M`` links, ``efConstruction``, ``efSearch``."""

    name = "faiss-hnsw"
    exact = False

    @classmethod
    def defaults(cls) -> dict:
        return {"M": 32, "efConstruction": 40, "efSearch": 64}

    def _make(self, d):
        import faiss

        index = faiss.IndexHNSWFlat(d, int(self.params["M"]), self._faiss_metric())
        index.hnsw.efConstruction = int(self.params["efConstruction"])
        return index

    def _configure(self):
        self._index.hnsw.efSearch = int(self.params["efSearch"])

    def _search(self, Q, k):
        self._index.hnsw.efSearch = max(int(self.params["efSearch"]), k)
        return self._index.search(Q, k)


class FaissIVFIndex(_FaissIndex):
    """faiss ``IndexIVFFlat`` (approximate): ``nlist`` k-means cells (default ~4 sqrt(n)), ``nprobe`` visited.

    Default ``nprobe``: enough cells to scan at least ``min_candidates`` points per query, and at least
    16, so that small collections, whose cells hold few points, still see enough candidates.
    k-means is trained on at most ``train_size`` points (default 32 per cell) for ``niter`` iterations.
    Large query batches (all-pairs; at least ``BIG_BATCH_PER_LIST`` queries per cell) are searched cell
    by cell with faiss' ``big_batch_search``: each cell's vectors are scored against all the queries
    that probe it in one matrix product, instead of each query scanning its cells from memory. Small
    batches (a few photos) use the index's own search. Recall and speed of these defaults:
    ``benchmarks/README.md``.
    """

    BIG_BATCH_PER_LIST = 4

    name = "faiss-ivf"
    exact = False

    @classmethod
    def defaults(cls) -> dict:
        return {"nlist": None, "nprobe": None, "min_candidates": 750, "niter": 10, "train_size": None, "seed": 1234}

    def _search(self, Q, k):
        if len(Q) < self.BIG_BATCH_PER_LIST * self._index.nlist:
            return self._index.search(Q, k)
        import contextlib
        import io

        from faiss.contrib.big_batch_search import big_batch_search

        with contextlib.redirect_stdout(io.StringIO()):  # it reports progress on stdout at every verbosity
            return big_batch_search(self._index, np.ascontiguousarray(Q, dtype=np.float32), k, verbose=1)

    def _nlist(self, n: int) -> int:
        nlist = self.params["nlist"] or int(round(4 * math.sqrt(n)))
        return int(max(1, min(nlist, n)))

    def _make(self, d):
        raise AssertionError("built in _build (needs n)")

    def _build(self, X):
        import faiss

        n, d = X.shape
        nlist = self._nlist(n)
        quantizer = faiss.IndexFlatIP(d) if self.metric == "cosine" else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, self._faiss_metric())
        index.cp.niter = int(self.params["niter"])
        index.cp.seed = int(self.params["seed"])
        index.cp.min_points_per_centroid = 1  # tiny collections: no warning spam, still valid
        index.cp.max_points_per_centroid = 10**9  # we subsample ourselves (deterministically)
        train_size = int(self.params["train_size"] or 32 * nlist)
        if train_size < n:
            rng = np.random.default_rng(int(self.params["seed"]))
            sample = X[np.sort(rng.choice(n, train_size, replace=False))]
        else:
            sample = X
        index.train(sample)
        index.add(X)
        index.quantizer_trains_alone = 0
        self._quantizer = quantizer  # keep the python object alive while the index refers to it
        self._index = index
        self._configure()

    def _configure(self):
        nlist, n = self._index.nlist, max(1, self._index.ntotal)
        nprobe = self.params["nprobe"] or max(16, math.ceil(self.params["min_candidates"] * nlist / n))
        self._index.nprobe = int(min(int(nprobe), nlist))

