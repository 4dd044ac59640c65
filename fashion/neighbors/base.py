"""What every index shares: input validation, the ``fit`` / ``kneighbors`` / ``save`` contract, and
the exact float64 distance recompute that makes all backends report the same distance for a pair.

Backends subclass :class:`NeighborIndex` and implement ``_build(X)`` and ``_search(Q, k)``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

logger = logging.getLogger("fashion.neighbors")

METRICS = ("cosine", "euclidean")
FORMAT_VERSION = 1
# Rows per chunk of the float64 distance recompute (chunk x k x d elements).
_GATHER_ELEMENTS = 2**22


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



def knn(Q: np.ndarray, X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k with faiss' blocked brute force (``faiss.knn``) straight on the caller's arrays: no
    index, no copy of X; faiss scores 4,096 queries x 1,024 points at a time (16 MiB)."""
    import faiss

    kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    dist, idx = faiss.knn(np.ascontiguousarray(Q, dtype=np.float32), X, k, metric=kind)
    return dist, idx.astype(np.int64, copy=False)



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
            idx[bad] = knn(Q[bad], self._X, k, self.metric)[1]
        return idx

