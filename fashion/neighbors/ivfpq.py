"""``faiss-ivfpq``: a faiss IVF-PQ index sized to the data and a memory budget, re-ranked exactly.

The parameters (:func:`choose_params`, after autofaiss' heuristics but at the low end for small
machines): ``nlist ≈ √n`` inverted lists (autofaiss: 4-16·√n; k-means cost grows with nlist and was
the build's bottleneck on 2 cores) with ≥ 39 training points each, an HNSW coarse quantiser from 1,024
lists on, an OPQ rotation to ``4·m`` dimensions and ``m``-byte PQ codes, the largest ``m`` whose codes
fit the budget; below :data:`FLAT_BELOW` vectors the codes are the vectors themselves (IVF-Flat).
Training uses a seeded uniform sample (:func:`sample_positions`).

:class:`FaissIVFPQIndex` is the in-memory backend of :mod:`fashion.neighbors` (``--index
faiss-ivfpq``, any run size): each query's ``max(k, rerank)`` PQ candidates are re-ranked exactly
against the fitted float32 rows, so recall is not capped by the codes. :mod:`fashion.scale.ivfpq`
builds the same index shard by shard on disk for collections that do not fit in memory.
Vectors are searched with L2 (unit rows for cosine, as every backend here).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from .base import NeighborIndex, as_matrix
from .distances import pair_distances

PQ_CHOICES = (64, 48, 32, 24, 16, 8)
MIN_POINTS_PER_LIST = 39  # faiss warns below this many training points per centroid
FLAT_BELOW = 20_000  # fewer vectors: IVF-Flat (PQ codebooks need ≥ 256·39 points to train well)


def parse_bytes(text) -> int:
    """``"4G"`` → 4·2³⁰; ``"512M"``, ``"100k"``, plain integers.

    >>> parse_bytes("4G"), parse_bytes("512M"), parse_bytes(1000)
    (4294967296, 536870912, 1000)
    """
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)[iI]?[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"expected a size like 4G or 512M, got {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


@dataclass
class IndexParams:
    """What :func:`choose_params` picked (and ``index.json`` records)."""

    factory: str
    n: int
    d: int
    nlist: int
    m: int  # PQ bytes per vector (0: flat codes)
    train_size: int
    nprobe: int
    rerank: int
    seed: int = 0
    memory: int = 4 << 30
    bytes_per_vector: float = 0.0  # codes + ids + coarse quantiser, per vector (re-rank vectors not counted)
    timings: dict = field(default_factory=dict)
    count: int = 0  # vectors in the index
    id_space: int = 0  # rows of the re-rank matrix (the manifest's count)
    sources: list = field(default_factory=list)  # file names of the embedding shards indexed


def choose_params(n: int, d: int, memory="4G", factory: str = "auto", seed: int = 0) -> IndexParams:
    """Pick the index for ``n`` vectors of dimension ``d`` within ``memory`` bytes (see module doc)."""
    if n < 1 or d < 1:
        raise ValueError(f"need at least one vector of positive dimension, got n={n}, d={d}")
    budget = parse_bytes(memory)
    nlist = 2 ** max(0, round(math.log2(max(1.0, math.sqrt(n)))))
    while nlist > 1 and n < MIN_POINTS_PER_LIST * nlist:
        nlist //= 2
    coarse = f"IVF{nlist}_HNSW32" if nlist >= 1024 else f"IVF{nlist}"
    if factory != "auto":
        m_match = re.search(r"PQ(\d+)", factory)
        m = int(m_match.group(1)) if m_match else 0
        nl = re.search(r"IVF(\d+)", factory)
        nlist = int(nl.group(1)) if nl else nlist
        dout = d
    elif n < FLAT_BELOW:
        m, dout, factory = 0, d, f"{coarse},Flat"
    else:
        choices = [c for c in PQ_CHOICES if 2 * c <= d] or [max(1, d // 2)]  # ≥ 2 dims per sub-quantiser
        for m in choices:
            dout = min(d, 4 * m) // m * m
            if n * (m + 8) + nlist * dout * 4 * 2 <= budget // 2:
                break
        factory = f"OPQ{m}_{dout},{coarse},PQ{m}x8" if dout < d else f"{coarse},PQ{m}x8"
    # training points: ≥ 39 per list (and ≥ 256·39 for the PQ codebooks), capped so the sample is ≤ budget/4
    want = max(MIN_POINTS_PER_LIST * nlist, 256 * MIN_POINTS_PER_LIST if m else 0)
    train_size = int(min(n, want, max(1, budget // 4 // (4 * d))))
    code = (m if m else 4 * d) + 8
    coarse_bytes = nlist * dout * 4 * (1.25 if nlist >= 1024 else 1.0) + (d * dout * 4 if dout < d else 0)
    return IndexParams(factory=factory, n=n, d=d, nlist=nlist, m=m, train_size=train_size,
                       nprobe=min(nlist, max(1, nlist // 64, 16)), rerank=100 if m else 0, seed=seed,
                       memory=budget, bytes_per_vector=round(code + coarse_bytes / n, 2))


def sample_positions(total: int, size: int, seed: int) -> np.ndarray:
    """``min(size, total)`` distinct positions in ``range(total)``, uniform, seeded, sorted.

    >>> sample_positions(10, 3, seed=0).tolist() == sample_positions(10, 3, seed=0).tolist()
    True
    >>> sample_positions(4, 10, seed=0).tolist()
    [0, 1, 2, 3]
    """
    if size < 1:
        raise ValueError(f"sample size must be positive, got {size}")
    if size >= total:
        return np.arange(total, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False)).astype(np.int64)


def train_index(params: IndexParams, sample: np.ndarray):
    """An empty trained faiss index of ``params.factory`` (L2 on unit vectors)."""
    import faiss

    index = faiss.index_factory(params.d, params.factory, faiss.METRIC_L2)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.seed = params.seed
    if hasattr(ivf, "pq"):  # 64 training points per code word, not faiss' default 256: a quarter of the PQ's training work
        ivf.pq.cp.max_points_per_centroid, ivf.pq.cp.seed = 64, params.seed
    if hasattr(ivf, "do_polysemous_training"):
        # index_factory turns on polysemous training (re-orders each codebook for Hamming filtering,
        # which search never uses here): it costs far more than the k-means itself (IVF64,PQ16x8 on
        # 1,200 vectors: 0.27 CPU-s without it, minutes with it) and leaves the ADC distances unchanged
        ivf.do_polysemous_training = False
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def tune_quantizer(index, factory: str, nprobe: int) -> None:
    """Set the efSearch of an HNSW coarse quantiser (``factory`` names one: ``IVF…_HNSW32``) on ``index`` for a
    search probing ``nprobe`` lists: twice that, at least 64 (the graph must return ``nprobe`` lists, and
    better ones the wider it looks); nothing for a flat quantiser. The one rule of every IVF-PQ search here
    (:class:`FaissIVFPQIndex`, :class:`fashion.scale.ivfpq.ScaleIndex`, :class:`fashion.scale.delta.LiveIndex`)."""
    import faiss

    if "HNSW" in factory:
        faiss.ParameterSpace().set_index_parameter(index, "quantizer_efSearch", max(2 * int(nprobe), 64))


def coarse_lists(index, Q: np.ndarray) -> np.ndarray:
    """The inverted list (coarse centroid) of a faiss IVF ``index`` each prepared row of ``Q`` falls in
    (through the index's OPQ pre-transform where it has one)."""
    return probed_lists(index, Q, 1)[:, 0]


def probed_lists(index, Q: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``nprobe`` inverted lists of a faiss IVF ``index`` nearest each prepared row of ``Q`` (the
    lists its search visits; through the index's OPQ pre-transform where it has one), (q, nprobe) int64."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            Q = index.chain.at(i).apply(np.ascontiguousarray(Q, np.float32))
    _, lists = faiss.extract_index_ivf(index).quantizer.search(np.ascontiguousarray(Q, np.float32), int(nprobe))
    return lists.astype(np.int64)


def list_sizes(index) -> np.ndarray:
    """How many vectors each inverted list of a faiss IVF ``index`` holds."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    return np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)], dtype=np.int64)


def probed_total(cells: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Vectors held by each row's probed lists: ``cells`` (q, nprobe) list numbers (−1: none found, counts
    0), ``sizes`` the lists' sizes (:func:`list_sizes`).

    >>> probed_total(np.array([[0, 2], [1, -1]]), np.array([5, 3, 1])).tolist()
    [6, 3]
    """
    return np.where(cells >= 0, sizes[np.maximum(cells, 0)], 0).sum(axis=1)


def nearest_of(dist: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest ``dist`` of each row with their ``cand`` ids, ties in candidate order (a stable
    sort): the last step of every re-ranked IVF-PQ search (:class:`FaissIVFPQIndex`,
    :func:`fashion.scale.ivfpq.reranked`)."""
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)


def list_of_ids(index) -> np.ndarray:
    """The inverted list each stored id of an in-memory IVF ``index`` is in (position = stored id; −1 for an
    id no list holds), read from the lists' own id arrays."""
    import faiss

    invlists = faiss.extract_index_ivf(index).invlists
    owner = np.full(int(index.ntotal), -1, np.int64)
    for l in range(invlists.nlist):
        size = invlists.list_size(l)
        if size:
            ids = faiss.rev_swig_ptr(invlists.get_ids(l), size)
            inside = (ids >= 0) & (ids < len(owner))
            owner[ids[inside]] = l
    return owner


def _renumber(index, to_new: np.ndarray) -> None:
    """Rewrite the ids stored in an in-memory IVF ``index``'s inverted lists through ``to_new`` (old id →
    new id), in place (a numpy pass over each list's ids; the codes stay where they are)."""
    import faiss

    invlists = faiss.extract_index_ivf(index).invlists
    for l in range(invlists.nlist):
        size = invlists.list_size(l)
        if size:
            ids = faiss.rev_swig_ptr(invlists.get_ids(l), size)  # the list's own id array (ArrayInvertedLists)
            ids[:] = to_new[ids]


class FaissIVFPQIndex(NeighborIndex):
    """faiss IVF-PQ (approximate): factory from :func:`choose_params` (``factory="auto"``) for the
    fitted ``n``, ``d`` and ``memory``; ``nprobe`` lists visited and ``rerank`` candidates re-ranked
    exactly (None: the chosen parameters'; ``rerank`` 0 keeps the PQ order)."""

    name = "faiss-ivfpq"
    exact = False

    @classmethod
    def defaults(cls) -> dict:
        return {"memory": "4G", "factory": "auto", "nprobe": None, "rerank": None, "seed": 0}

    def _build(self, X):
        n, d = X.shape
        choice = choose_params(n, d, memory=self.params["memory"], factory=self.params["factory"],
                               seed=int(self.params["seed"]))
        index = train_index(choice, X[sample_positions(n, choice.train_size, choice.seed)])
        index.add(X)
        choice.count = int(index.ntotal)
        self._index, self._choice = index, choice

    def _search(self, Q, k, rows=None):
        from .faiss import selected_params

        nprobe = self._probe()
        rerank = self._choice.rerank if self.params["rerank"] is None else int(self.params["rerank"])
        kc = min(max(k, rerank), self._index.ntotal)
        if rows is None:
            dist, cand = self._index.search(Q, kc)
        else:  # the allowed rows only, probing more lists in proportion to how few they are
            share = len(rows) / self._index.ntotal
            params, _alive = selected_params(self._index, rows, self._index.ntotal,
                                             nprobe=int(np.ceil(min(nprobe, self._choice.nlist) / share)))
            dist, cand = self._index.search(Q, kc, params=params)
        if rerank:  # exact distances of the candidates from the fitted rows (-1: fewer candidates)
            found = cand >= 0
            dist = np.where(found, pair_distances(Q, self._X, np.where(found, cand, 0), self.metric), np.inf)
        return nearest_of(dist, cand, k)

    def _probe(self) -> int:
        """Set the search's ``nprobe`` (and an HNSW quantiser's efSearch) on the index; returns nprobe as given."""
        import faiss

        nprobe = int(self.params["nprobe"] or self._choice.nprobe)
        faiss.ParameterSpace().set_index_parameter(self._index, "nprobe", min(nprobe, self._choice.nlist))
        tune_quantizer(self._index, self._choice.factory, nprobe)
        return nprobe

    def _search_allowed(self, Q, k, rows):
        return self._search(Q, k, rows)

    def changed(self, X, kept) -> "FaissIVFPQIndex":
        """A new index with this one's trained coarse quantiser and codebooks (no training) over the rows
        of ``X`` (raw, as for :meth:`fit`); ``kept[j]``: the row of this index that row j of ``X`` was
        (its code is kept, renumbered), or −1 for a new row (encoded). This index's rows that no entry of
        ``kept`` names are removed by id; nothing else is encoded again."""
        import faiss

        self._check_fitted()
        X = self._prepare(as_matrix(X, "X"), "X")
        kept = np.asarray(kept, np.int64)
        if kept.shape != (len(X),) or kept.max(initial=-1) >= self._index.ntotal:
            raise ValueError(f"kept must give each of the {len(X)} rows an old row < {self._index.ntotal} or -1")
        to_new = np.full(self._index.ntotal, -1, np.int64)
        to_new[kept[kept >= 0]] = np.flatnonzero(kept >= 0)
        index = faiss.clone_index(self._index)  # the codes copied, not encoded
        gone = np.flatnonzero(to_new < 0)
        if len(gone):
            index.remove_ids(faiss.IDSelectorBatch(gone))
        stays = np.flatnonzero(to_new >= 0)
        if (to_new[stays] != stays).any():  # a kept row moved (one before it left): its stored id follows
            _renumber(index, to_new)
        fresh = np.flatnonzero(kept < 0)
        if len(fresh):
            index.add_with_ids(np.ascontiguousarray(X[fresh]), fresh)
        out = type(self)(self.metric, **self.params)
        out._index = index
        out._choice = IndexParams(**{**asdict(self._choice), "count": int(index.ntotal), "n": len(X)})
        out._X = X
        return out

    def coarse_lists(self, X) -> np.ndarray:
        """The inverted list (coarse centroid) each row of ``X`` (raw) is assigned to."""
        return coarse_lists(self._index, self._prepare(as_matrix(X, "X"), "X"))

    def list_sizes(self) -> np.ndarray:
        """How many indexed vectors each inverted list holds."""
        return list_sizes(self._index)

    def cells_of(self, rows) -> np.ndarray:
        """The inverted list (cell) each of this index's ``rows`` is stored in (its row = its stored id)."""
        self._check_fitted()
        return list_of_ids(self._index)[np.asarray(rows, np.int64)]

    def probed_sizes(self, X) -> np.ndarray:
        """How many indexed vectors the ``nprobe`` inverted lists a search of each row of ``X`` (raw)
        visits hold: a search for more neighbours than that finds too few, and :meth:`kneighbors` then
        searches the row exactly (over every fitted row), so its result is no longer bound to those lists."""
        return probed_total(self.probed_cells(X), list_sizes(self._index))

    def probed_cells(self, X) -> np.ndarray:
        """The ``nprobe`` inverted lists a search of each row of ``X`` (raw) visits, (q, nprobe) int64 (−1
        where the quantiser found fewer)."""
        self._check_fitted()
        nprobe = min(self._probe(), self._choice.nlist)
        return probed_lists(self._index, self._prepare(as_matrix(X, "X"), "X"), nprobe)

    def state_arrays(self):
        import faiss

        return {"faiss_index": faiss.serialize_index(self._index),
                "ivfpq_params": np.array(json.dumps(asdict(self._choice)))}

    def restore(self, X, arrays):
        from .faiss import saved_index

        self._index = saved_index(arrays, X, "IVF-PQ")
        self._choice = IndexParams(**json.loads(str(arrays["ivfpq_params"])))
        self._X = X
        return self
