"""Nearest-neighbour indexes in scikit-learn's ``NearestNeighbors`` shape.

``build_index(name, metric).fit(X).kneighbors(Q, n_neighbors=k)`` returns ``(distances, indices)``:
float32 and int64 arrays of shape (n_queries, k), sorted by ascending distance (ties by index; which
of several points tied at the k-th distance is returned is up to the backend).
``kneighbors(None, k)`` queries the fitted set itself and leaves each point out by *index*, so exact
duplicates still find each other at distance 0.

Metrics: ``"cosine"`` (1 - cos, vectors are L2-normalised at ``fit``) and ``"euclidean"`` (L2).
Backends (``INDEXES``):

- ``exact``: blocked float32 matrix products (torch GEMM) + per-row top-k; memory is bounded.
- ``exact-bf16``: a bfloat16 matrix product picks ``k + margin`` candidates, which are re-ranked in
  float32; a rigorous rounding-error bound certifies each query (else the margin is widened, and as a
  last resort the query is searched in float32), so the answer equals the ``exact`` one.
- ``kdtree`` / ``balltree``: scikit-learn trees (what the original study used; slow in high dimension).
- ``faiss-flat``: faiss brute force; ``faiss-hnsw`` / ``faiss-ivf``: approximate faiss indexes.
- ``auto``: the fastest exact backend on this machine (see ``benchmarks/README.md``).

Whatever the backend, the distances of the returned neighbours are recomputed in float64, so all
backends report the same distance for the same pair. Indexes are saved with :meth:`save` as ``.npz``
(arrays + JSON parameters, no pickle) and loaded with :func:`load_index`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write

logger = logging.getLogger(__name__)

INDEXES = ("auto", "exact", "exact-bf16", "kdtree", "balltree", "faiss-flat", "faiss-hnsw", "faiss-ivf")
EXACT_INDEXES = ("exact", "exact-bf16", "kdtree", "balltree", "faiss-flat")
APPROXIMATE_INDEXES = ("faiss-hnsw", "faiss-ivf")
METRICS = ("cosine", "euclidean")
FORMAT_VERSION = 1
# Memory for one block of scores (rows x columns float32) when block_size is not given.
DEFAULT_BLOCK_BYTES = 128 * 2**20
# Database columns per score tile of the torch engine: 2048-row tiles at the default budget whatever n.
# Full-width blocks shrink with n (335 rows at n = 100k, 33 at 1M); at 100k both shapes ran the GEMM
# at the same speed here (94 vs 100 GFLOP/s, measured side by side), the tiles keep it so beyond.
DEFAULT_TILE_COLUMNS = 16384
# Rows per chunk of the float64 distance recompute / float32 re-rank (chunk x k x d elements).
_GATHER_ELEMENTS = 2**22


# ---------------------------------------------------------------------------------------------------
# Validation and preprocessing
# ---------------------------------------------------------------------------------------------------


def _as_matrix(X, what: str) -> np.ndarray:
    """Return ``X`` as a C-contiguous float32 (n, d) array; ValueError for bad shape or values."""
    if X is None:
        raise ValueError(f"{what} is None; expected a 2-D array (n_samples, n_features)")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {X.shape})")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool) or np.iscomplexobj(X):
        raise ValueError(f"{what} must be real numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{what} row {bad[0]} contains NaN or inf ({len(bad)} such rows in all; values too large "
            "for float32 count as inf)"
        )
    return X


def _normalize(X: np.ndarray, what: str) -> np.ndarray:
    """L2-normalise float32 rows (new float32 array); a zero row has no cosine distance, so it is an error.

    Memory: one float32 copy of ``X`` divided in place; the norms are summed in float64 (accuracy) but
    only the (n, 1) vector is float64, never an (n, d) temporary.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    if (norms == 0).any():
        row = int(np.flatnonzero(norms == 0)[0])
        raise ValueError(f"{what} row {row} is all zeros: cosine distance is undefined for it")
    out = np.array(X, dtype=np.float32, order="C", copy=True)  # owned: the caller's array stays untouched
    huge = norms > np.finfo(np.float32).max  # rows near float32's limit: their norm only fits in float64
    if huge.any():
        out[huge] = (X[huge] / norms[huge, None]).astype(np.float32)
    out /= np.where(huge, 1.0, norms).astype(np.float32)[:, None]
    return out


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    return metric


def _check_k(k, n: int, self_excluded: bool) -> int:
    """Validate n_neighbors against the fitted size (n - 1 when each point leaves itself out)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"n_neighbors must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"n_neighbors must be >= 1, got {k}")
    if self_excluded and k > n - 1:
        raise ValueError(
            f"n_neighbors={k} is too large: with X=None each of the {n} fitted points leaves itself "
            f"out, so n_neighbors must be <= {n - 1}"
        )
    if k > n:
        raise ValueError(f"n_neighbors={k} is larger than the {n} fitted points")
    return k


def _drop_self(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row's own index from (q, k+1) results; drop the last column where it is absent.

    >>> d = np.array([[0., 0., 1.], [0., 0., 2.]]); i = np.array([[1, 0, 2], [0, 1, 2]])
    >>> _drop_self(d, i)[1].tolist()
    [[1, 2], [0, 2]]
    """
    q, k1 = idx.shape
    mask = idx == np.arange(q)[:, None]
    mask[~mask.any(axis=1), -1] = True
    mask &= np.cumsum(mask, axis=1) == 1  # the own index appears at most once, but be safe
    keep = ~mask
    return dist[keep].reshape(q, k1 - 1), idx[keep].reshape(q, k1 - 1)


def _sort_rows(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by distance, ties by index (a deterministic order for every backend)."""
    order = np.lexsort((idx, dist), axis=1)
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def _exact_distances(Q: np.ndarray, X: np.ndarray, idx: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances between Q[i] and X[idx[i, j]] for (q, k) ``idx``; returned as float64."""
    q, k = idx.shape
    out = np.empty((q, k), dtype=np.float64)
    rows = max(1, _GATHER_ELEMENTS // (k * X.shape[1]))
    for s in range(0, q, rows):
        G = X[idx[s : s + rows]].astype(np.float64)  # (r, k, d)
        Qb = Q[s : s + rows].astype(np.float64)[:, None, :]
        if metric == "cosine":  # both sides are unit vectors
            out[s : s + rows] = 1.0 - np.einsum("rkd,rkd->rk", G, np.broadcast_to(Qb, G.shape))
        else:
            diff = G - Qb
            out[s : s + rows] = np.sqrt(np.einsum("rkd,rkd->rk", diff, diff))
    return np.clip(out, 0.0, None) if metric == "euclidean" else np.clip(out, 0.0, 2.0)


def _block_rows(n: int, block_size: int | None, bytes_per_score: int = 4) -> int:
    if block_size is not None:
        if int(block_size) < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        return int(block_size)
    return int(min(8192, max(64, DEFAULT_BLOCK_BYTES // (bytes_per_score * max(n, 1)))))


def _block_shape(n: int, block_size: int | None) -> tuple[int, int]:
    """(query rows, database columns) of one float32 score tile of ``exact``.

    ``block_size`` given: that many rows against all n columns (one GEMM per block). Default: tiles of
    at most ``DEFAULT_TILE_COLUMNS`` columns and as many rows as fit in ``DEFAULT_BLOCK_BYTES``.

    >>> _block_shape(100_000, None), _block_shape(1_000, None), _block_shape(100_000, 7)
    ((2048, 16384), (8192, 1000), (7, 100000))
    """
    if block_size is not None:
        return _block_rows(n, block_size), max(n, 1)
    cols = max(1, min(n, DEFAULT_TILE_COLUMNS))
    return _block_rows(cols, None), cols


# ---------------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------------


class NeighborIndex:
    """Common ``fit`` / ``kneighbors`` / ``save`` logic; backends implement ``_build`` and ``_search``.

    ``_search(Q, k)`` gets preprocessed float32 queries (unit rows for cosine) and returns
    ``(dist, idx)`` of shape (q, k) whose indices are the k nearest (distances need not be exact).
    """

    name = "base"
    exact = True

    def __init__(self, metric: str = "cosine", **params):
        self.metric = _check_metric(metric)
        unknown = set(params) - set(self.defaults())
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for index {self.name!r}; "
                f"valid: {sorted(self.defaults()) or 'none'}"
            )
        self.params = {**self.defaults(), **params}
        self._X: np.ndarray | None = None

    @classmethod
    def defaults(cls) -> dict:
        return {}

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}(metric={self.metric!r}{extra})"

    # -- public API -------------------------------------------------------------------------------
    @property
    def n_samples_fit_(self) -> int:
        self._check_fitted()
        return self._X.shape[0]

    @property
    def n_features_in_(self) -> int:
        self._check_fitted()
        return self._X.shape[1]

    def fit(self, X) -> "NeighborIndex":
        """Index ``X`` (n, d); returns self. Cosine indexes store L2-normalised rows."""
        X = self._prepare(_as_matrix(X, "X"), "X")
        self._build(X)
        self._X = X
        logger.debug("%r fitted on %d x %d", self, *X.shape)
        return self

    def kneighbors(self, X=None, n_neighbors: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """k nearest fitted points of each query row.

        X: (q, d) queries, or None for all-pairs over the fitted set, each point leaving itself out.
        Returns (distances float32 (q, k), indices int64 (q, k)), ascending by distance.
        """
        self._check_fitted()
        n = self._X.shape[0]
        self_excluded = X is None
        k = _check_k(n_neighbors, n, self_excluded)
        if self_excluded:
            Q, kk = self._X, k + 1
        else:
            Q = _as_matrix(X, "query X")
            if Q.shape[1] != self._X.shape[1]:
                raise ValueError(
                    f"query X has {Q.shape[1]} features but the index was fitted with {self._X.shape[1]}"
                )
            Q, kk = self._prepare(Q, "query X"), k
        dist, idx = self._search(Q, kk)
        idx = self._repair_missing(Q, np.asarray(idx, dtype=np.int64), kk)
        dist = _exact_distances(Q, self._X, idx, self.metric)
        dist, idx = _sort_rows(dist, idx)
        if self_excluded:
            dist, idx = _drop_self(dist, idx)
        return dist.astype(np.float32), idx

    def save(self, path) -> Path:
        """Write the index atomically as ``.npz`` (arrays + JSON parameters, no pickle)."""
        self._check_fitted()
        meta = {"format_version": FORMAT_VERSION, "name": self.name, "metric": self.metric, "params": self.params}
        arrays = {"__meta__": np.array(json.dumps(meta)), "data": self._X, **self._state_arrays()}
        path = Path(path)
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    # -- backend hooks ----------------------------------------------------------------------------
    def _build(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _state_arrays(self) -> dict:
        """Extra arrays to save beside the data (faiss: the serialised index)."""
        return {}

    def _restore(self, X: np.ndarray, arrays) -> None:
        """Rebuild from saved arrays; by default rebuild from the data."""
        self._build(X)
        self._X = X

    # -- helpers ----------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self._X is None:
            raise ValueError(f"{self!r} is not fitted yet: call fit(X) first")

    def _prepare(self, X: np.ndarray, what: str) -> np.ndarray:
        return _normalize(X, what) if self.metric == "cosine" else X

    def _repair_missing(self, Q: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
        """Approximate indexes may return -1 (too few candidates): search those rows exactly."""
        bad = np.flatnonzero((idx < 0).any(axis=1))
        if len(bad):
            logger.info("%s returned fewer than %d neighbours for %d queries; searched exactly", self.name, k, len(bad))
            idx[bad] = _torch_topk(Q[bad], self._X, k, self.metric, None)[1]
        return idx


# ---------------------------------------------------------------------------------------------------
# Exact blocked matrix products
# ---------------------------------------------------------------------------------------------------


def _torch_topk(Q, X, k, metric, block_size, sqnorms=None):
    """Exact top-k by tiled float32 GEMM: (q, k) scores and int64 indices, best first.

    Each block of query rows is scored against the data one tile of columns at a time; every tile's
    top k is merged into the block's running top k. Memory beyond X and Q: one (rows, columns) float32
    score tile (:func:`_block_shape`, default at most 128 MiB) plus O(rows x k).
    """
    import torch

    n = X.shape[0]
    rows, cols = _block_shape(n, block_size)
    largest = metric == "cosine"  # cosine: largest inner product; euclidean: smallest key
    Xt = torch.from_numpy(X)
    if metric == "euclidean" and sqnorms is None:
        sqnorms = torch.from_numpy(np.einsum("ij,ij->i", X, X).astype(np.float32))
    out_v = np.empty((Q.shape[0], k), dtype=np.float32)
    out_i = np.empty((Q.shape[0], k), dtype=np.int64)
    with torch.inference_mode():
        for s in range(0, Q.shape[0], rows):
            qb = torch.from_numpy(Q[s : s + rows])
            best_v = best_i = None
            for c in range(0, n, cols):
                xt = Xt[c : c + cols].T
                if largest:
                    scores = torch.mm(qb, xt)
                else:  # ||x||^2 - 2 q.x ranks like ||q - x||^2 (||q||^2 is constant per row)
                    scores = torch.addmm(sqnorms[c : c + cols], qb, xt, alpha=-2.0)
                vals, ids = torch.topk(scores, min(k, scores.shape[1]), dim=1, largest=largest, sorted=False)
                ids += c
                if best_v is not None:  # merge with the running top k of the previous tiles
                    vals, ids = torch.cat((best_v, vals), 1), torch.cat((best_i, ids), 1)
                    vals, pick = torch.topk(vals, min(k, vals.shape[1]), dim=1, largest=largest, sorted=False)
                    ids = torch.gather(ids, 1, pick)
                best_v, best_i = vals, ids
            best_v, order = torch.sort(best_v, dim=1, descending=largest)
            out_v[s : s + rows] = best_v.numpy()
            out_i[s : s + rows] = torch.gather(best_i, 1, order).numpy()
    return out_v, out_i


def _faiss_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def _faiss_knn(Q: np.ndarray, X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k with faiss' blocked brute force (``faiss.knn``) straight on the caller's arrays: no
    index, no copy of X; faiss scores 4,096 queries x 1,024 points at a time (16 MiB)."""
    import faiss

    kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    dist, idx = faiss.knn(np.ascontiguousarray(Q, dtype=np.float32), X, k, metric=kind)
    return dist, idx.astype(np.int64, copy=False)


ENGINES = ("auto", "faiss", "torch")


class ExactIndex(NeighborIndex):
    """Exact search by blocked float32 matrix products.

    ``engine``: "faiss" (``faiss.knn``: blocked BLAS brute force on the data in place, 1.14x faster
    than the torch engine at n = 50k, d = 2048 here, benchmarks/README.md), "torch" (tiled
    ``torch.mm`` + ``torch.topk``), "auto" = faiss when installed (and no ``block_size`` is given),
    else torch. Either way the returned distances are recomputed exactly.

    Peak memory: the data matrix (n x d float32, not copied for float32 cosine-normalised input) plus
    one block of scores: faiss 4,096 x 1,024 float32 (16 MiB); torch one tile of rows x columns float32
    (default: at most 128 MiB; ``block_size`` = rows against all n columns); plus O(rows x k).
    Euclidean indexes also keep a copy of the data centred on its mean (2 x the data): the expansion
    ||q||^2 + ||x||^2 - 2 q.x loses all precision in float32 for tight clusters far from the origin.
    """

    name = "exact"

    @classmethod
    def defaults(cls) -> dict:
        return {"block_size": None, "engine": "auto"}

    def _build(self, X):
        if self.params["engine"] not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.params['engine']!r}")
        self._sq = self._mu = None
        self._data = X
        if self.metric == "euclidean":
            import torch

            self._mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            self._data = X - self._mu
            self._sq = torch.from_numpy(np.einsum("ij,ij->i", self._data, self._data).astype(np.float32))

    def _search(self, Q, k):
        if self._mu is not None:
            Q = Q - self._mu
        engine = self.params["engine"]
        if engine == "faiss" or (engine == "auto" and self.params["block_size"] is None and _faiss_available()):
            return _faiss_knn(Q, self._data, k, self.metric)
        return _torch_topk(Q, self._data, k, self.metric, self.params["block_size"], self._sq)


class Bf16ExactIndex(NeighborIndex):
    """Exact search that scores in bfloat16, then re-ranks ``k + margin`` candidates in float32.

    Both sides are centred on the data mean (euclidean and cosine-on-unit-vectors distances are
    translation invariant), which shrinks the vectors and so the bf16 rounding error. For query i the
    bf16 ranking key of every point is within ``eps_i`` of its true key (a rigorous bound from the
    actual rounding residual norms, Cauchy-Schwarz, bf16 output rounding and fp32 accumulation); a
    query is *certified* when its k-th re-ranked distance is below the worst candidate's bf16 key minus
    ``eps_i``, i.e. no point outside the candidates can reach the top k. Uncertified queries are
    retried with ``wide_margin`` candidates, then searched in float32.

    Memory: data (n x d float32) + its bf16 copy (n x d x 2 bytes) + one block of bf16 keys
    (``block_size x n`` x 2 bytes, default <= 128 MiB) + re-rank chunks (<= 16 MiB); queries that
    need the float32 fallback with the euclidean metric briefly add a centred copy of the data.
    """

    name = "exact-bf16"
    _U = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)

    @classmethod
    def defaults(cls) -> dict:
        return {"block_size": None, "margin": 32, "wide_margin": 512}

    def _build(self, X):
        import torch

        self._mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        n, d = X.shape
        self._xb = torch.empty((n, d), dtype=torch.bfloat16)
        self._key_sq = torch.empty(n, dtype=torch.float32)  # ||x - mu||^2
        bnorm, rnorm = np.empty(n), np.empty(n)
        step = max(1, _GATHER_ELEMENTS // d)
        for s in range(0, n, step):
            xc, xb, bn, rn = self._centre(X[s : s + step])
            self._xb[s : s + step] = xb
            self._key_sq[s : s + step] = torch.from_numpy((xc.astype(np.float64) ** 2).sum(1).astype(np.float32))
            bnorm[s : s + step], rnorm[s : s + step] = bn, rn
        self._bmax, self._rmax = float(bnorm.max()), float(rnorm.max())
        self._smax = float(self._key_sq.max())
        self._sq = torch.from_numpy(np.einsum("ij,ij->i", X, X).astype(np.float32))
        self._xmax = math.sqrt(float(self._sq.max()))
        self.stats_ = {"queries": 0, "widened": 0, "float32": 0}

    def _centre(self, X):
        """Centre rows, round to bf16; return (centred fp32, bf16 tensor, ||bf16 row||, ||residual||)."""
        import torch

        xc = X - self._mu
        xb = torch.from_numpy(xc).to(torch.bfloat16)
        xr = xb.to(torch.float32).numpy().astype(np.float64)
        return xc, xb, np.sqrt((xr**2).sum(1)), np.sqrt(((xc - xr) ** 2).sum(1))

    def _eps(self, qbn: np.ndarray, qrn: np.ndarray, d: int) -> np.ndarray:
        """Bound on |bf16 key - exact key| per query (key = ||x-mu||^2 - 2 (q-mu).(x-mu))."""
        u = self._U
        inputs = 2.0 * (qbn * self._rmax + qrn * self._bmax + qrn * self._rmax)
        rounding = (2.0 * d * 2.0**-24 + 6.0 * u) * (qbn * self._bmax + self._smax)
        return 1.01 * (inputs + rounding)

    def _slack(self, Q, d):
        """Worst-case float32 error of the re-ranked squared distances and of the centring."""
        qn = np.sqrt(np.einsum("ij,ij->i", Q, Q, dtype=np.float64))
        return (d * 2.0**-24 + 2.0**-20) * 4.0 * (qn + self._xmax) ** 2

    def _search(self, Q, k):
        import torch

        n, d = self._X.shape
        rows = _block_rows(n, self.params["block_size"], bytes_per_score=2)
        out_i = np.empty((Q.shape[0], k), dtype=np.int64)
        with torch.inference_mode():
            for s in range(0, Q.shape[0], rows):
                out_i[s : s + rows] = self._search_block(Q[s : s + rows], k, d)
        self.stats_["queries"] += Q.shape[0]
        return None, out_i

    def _search_block(self, Qb, k, d):
        import torch

        qc, qb, qbn, qrn = self._centre(Qb)
        keys = torch.addmm(self._key_sq.to(torch.bfloat16), qb, self._xb.T, alpha=-2.0)  # (b, n) bf16
        eps = self._eps(qbn, qrn, d)
        qc_sq = (qc.astype(np.float64) ** 2).sum(1)
        idx = np.empty((len(Qb), k), dtype=np.int64)
        todo = np.arange(len(Qb))
        for margin in (self.params["margin"], self.params["wide_margin"]):
            if not len(todo):
                break
            m = min(self._X.shape[0], k + int(margin))
            vals, cand = torch.topk(keys[torch.from_numpy(todo)], m, dim=1, largest=False, sorted=True)
            best, d2 = self._rerank(Qb[todo], cand.numpy(), k)
            idx[todo] = best
            if m == self._X.shape[0]:
                return idx
            worst = vals[:, -1].to(torch.float64).numpy()
            ok = d2[:, -1] - qc_sq[todo] + self._slack(Qb[todo], d) < worst - eps[todo]
            todo = todo[~ok]
            if margin == self.params["margin"]:
                self.stats_["widened"] += len(todo)
        if len(todo):
            self.stats_["float32"] += len(todo)
            if self.metric == "cosine":
                idx[todo] = _torch_topk(Qb[todo], self._X, k, "cosine", None)[1]
            else:  # centred, as in ExactIndex (a transient copy of the data, only on this rare path)
                idx[todo] = _torch_topk(Qb[todo] - self._mu, self._X - self._mu, k, "euclidean", None)[1]
        return idx

    def _rerank(self, Qb, cand, k):
        """float32 distances of (r, m) candidates; returns the k best indices and their squared distances."""
        import torch

        r, m = cand.shape
        best = np.empty((r, k), dtype=np.int64)
        best_d2 = np.empty((r, k), dtype=np.float64)
        Xt = torch.from_numpy(self._X)
        step = max(1, _GATHER_ELEMENTS // (m * self._X.shape[1]))
        for s in range(0, r, step):
            c = torch.from_numpy(cand[s : s + step])
            q = torch.from_numpy(Qb[s : s + step])
            diff = Xt[c] - q[:, None, :]  # direct differences: no cancellation in tight clusters
            d2 = torch.einsum("rmd,rmd->rm", diff, diff)
            v, j = torch.topk(d2, k, dim=1, largest=False, sorted=True)
            best[s : s + step] = torch.gather(c, 1, j).numpy()
            best_d2[s : s + step] = v.numpy()
        return best, best_d2


# ---------------------------------------------------------------------------------------------------
# scikit-learn trees
# ---------------------------------------------------------------------------------------------------


class _TreeIndex(NeighborIndex):
    """scikit-learn KDTree / BallTree on euclidean distance (cosine: on unit rows, d_cos = d^2 / 2)."""

    @classmethod
    def defaults(cls) -> dict:
        return {"leaf_size": 40}

    def _tree_class(self):
        raise NotImplementedError

    def _build(self, X):
        self._tree = self._tree_class()(X, leaf_size=int(self.params["leaf_size"]), metric="euclidean")

    def _search(self, Q, k):
        dist, idx = self._tree.query(Q, k=k)
        return (dist**2 / 2 if self.metric == "cosine" else dist), idx


class KDTreeIndex(_TreeIndex):
    """scikit-learn ``KDTree`` (exact; degrades to worse than brute force in high dimension)."""

    name = "kdtree"

    def _tree_class(self):
        from sklearn.neighbors import KDTree

        return KDTree


class BallTreeIndex(_TreeIndex):
    """scikit-learn ``BallTree`` (exact)."""

    name = "balltree"

    def _tree_class(self):
        from sklearn.neighbors import BallTree

        return BallTree


# ---------------------------------------------------------------------------------------------------
# faiss
# ---------------------------------------------------------------------------------------------------


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

    def _state_arrays(self):
        import faiss

        return {"faiss_index": faiss.serialize_index(self._index)}

    def _restore(self, X, arrays):
        import faiss

        self._index = faiss.deserialize_index(np.ascontiguousarray(arrays["faiss_index"], dtype=np.uint8))
        self._X = X
        self._configure()


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
    16: 16 cells at n = 100k (recall@10 0.9995 on the knn benchmark's clustered data, 7.7x faster than
    exact), 49 of 246 on the 3,781 real embeddings of clothing-dataset-small, whose cells hold only ~15
    points (recall@10 0.986-0.9996 for pooled-body and head features, where a fixed 16 gave 0.92-0.98).

    k-means is trained on at most ``train_size`` points (default 32 per cell) for ``niter`` iterations.
    Large query batches (all-pairs; at least ``BIG_BATCH_PER_LIST`` queries per cell) are searched cell
    by cell with faiss' ``big_batch_search``: each cell's vectors are scored against all the queries
    that probe it in one matrix product, instead of each query scanning its cells from memory (with
    k-means on 32 instead of 64 points per cell, all-pairs at n = 100k, d = 2048 went from 72 s to 29 s
    in benchmarks/knn.py, same recall; benchmarks/README.md). Small batches (a few
    photos) use the index's own search.
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


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------

_BACKENDS = {
    cls.name: cls
    for cls in (ExactIndex, Bf16ExactIndex, KDTreeIndex, BallTreeIndex, FaissFlatIndex, FaissHNSWIndex, FaissIVFIndex)
}


def fast_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), which ``exact-bf16`` needs
    to beat float32 (elsewhere bf16 is emulated and slower)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_index_name() -> str:
    """The default exact backend, chosen from ``benchmarks/knn.py`` runs (see benchmarks/README.md).

    ``exact``: faiss' blocked brute force on the data in place (torch GEMM tiles without faiss), memory =
    data + one score block. At n = 50k, d = 2048 it is as fast as a bare faiss flat index (57.0 vs
    56.4 s; 0.93x the torch GEMM floor, 132x the KD-tree) with 318 MB less memory, and faster than
    numpy, scikit-learn brute force and its own torch engine (64.7 s). ``faiss-flat`` searches the same
    way but keeps a second copy of the data. ``exact-bf16`` is not chosen: its bf16 product is ~2.5x
    faster, but on clustered high-dimensional data the k-th and (k + margin)-th distances are closer
    than the rigorous bf16 error bound, so most queries need the wide re-rank and it ends up slower.
    ``FASHION_AUTO_INDEX`` overrides the choice.
    """
    override = os.environ.get("FASHION_AUTO_INDEX")
    if override:
        if override not in _BACKENDS:
            raise ValueError(f"FASHION_AUTO_INDEX={override!r} is not an index; valid: {', '.join(_BACKENDS)}")
        return override
    return "exact"


def build_index(name: str = "auto", metric: str = "cosine", **params) -> NeighborIndex:
    """A new, unfitted index ``name`` (one of ``INDEXES``) for ``metric`` ("cosine" or "euclidean").

    >>> X = np.array([[0., 0.], [1., 0.], [0., 2.], [3., 3.]])
    >>> d, i = build_index("exact", metric="euclidean").fit(X).kneighbors(n_neighbors=1)
    >>> i.ravel().tolist(), [round(float(v), 3) for v in d.ravel()]
    ([1, 0, 0, 2], [1.0, 1.0, 2.0, 3.162])
    """
    if name not in INDEXES:
        raise ValueError(f"unknown index {name!r}; valid indexes: {', '.join(INDEXES)}")
    _check_metric(metric)
    if name == "auto":
        name = auto_index_name()
    return _BACKENDS[name](metric=metric, **params)


def load_index(path) -> NeighborIndex:
    """Load an index written by :meth:`NeighborIndex.save` (no pickle involved).

    FileNotFoundError when there is no file; any other failure to read it (a pickle, an object array,
    not an .npz, missing or malformed arrays, another format version) is one ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no index file at {path}")
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # .npz is a zip; a pickle or .npy is refused unread
                raise ValueError("not an .npz archive (pickled data is never loaded)")
        from .runfiles import check_npz

        check_npz(path)  # array headers against the file's size: nothing huge is allocated for a lie
        with np.load(path, allow_pickle=False) as arrays:  # an object (pickled) array raises, never runs
            meta = json.loads(str(arrays["__meta__"]))
            if not isinstance(meta, dict):
                raise ValueError("__meta__ is not a JSON object")
            version, name = meta.get("format_version"), meta.get("name")
            if version != FORMAT_VERSION or name not in _BACKENDS:
                raise ValueError(f"unsupported index format {version!r} / {name!r}")
            index = _BACKENDS[name](metric=meta["metric"], **meta["params"])
            index._restore(_as_matrix(arrays["data"], "data"), arrays)
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, RuntimeError,
            zipfile.BadZipFile) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        reason = (str(reason).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path} is not a saved fashion index (an .npz written by fashion.neighbors): "
                         f"{reason}") from None
    return index
