"""What every index shares: input validation, the ``fit`` / ``kneighbors`` / ``save`` contract, and
the distance recompute (:mod:`.distances`) that makes all backends report the same distance for a pair.

Backends subclass :class:`NeighborIndex` and implement ``_build(X)`` and ``_search(Q, k)``; one that
holds more than its fitted rows (a faiss index) also implements the saved form's two public methods,
:meth:`NeighborIndex.state_arrays` (what :meth:`~NeighborIndex.save` writes beside the rows) and
:meth:`NeighborIndex.restore` (what :func:`fashion.neighbors.load_index` calls to make the index again).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .distances import pair_distances, sq_norms
from ..errors import ConfigError, NotFittedError
from ..metrics import check_k

logger = logging.getLogger("fashion.neighbors")

METRICS = ("cosine", "euclidean")
FORMAT_VERSION = 1


def as_matrix(X, what: str) -> np.ndarray:
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
    with np.errstate(over="ignore"):  # too large for float32 becomes inf, reported just below
        X = np.ascontiguousarray(X, dtype=np.float32)
    if np.isfinite(X.sum(axis=1)).all():  # NaN and inf reach the row sums: one pass, no (n, d) mask
        return X
    finite = np.isfinite(X).all(axis=1)  # a sum can also overflow: look at the values themselves
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{what} row {bad[0]} contains NaN or inf ({len(bad)} such rows in all; values too large "
            "for float32 count as inf)"
        )
    return X


def unit_rows(X: np.ndarray, what: str = "rows", keep_zero: bool = False) -> np.ndarray:
    """L2-normalise float32 rows (new float32 array): the one normalisation of cosine rows (an index's,
    and :func:`fashion.catalog.lists.reachable`'s). A zero row has no cosine distance: an error naming
    ``what`` and the row, or with ``keep_zero`` a zero row of the result.

    Memory: one float32 copy of ``X`` divided in place; the norms come from
    :func:`.distances.sq_norms` (float64 result, float32 slice sums: no (n, d) temporary), so a
    normalised row's squared norm is 1 within 2.3e-6.

    >>> unit_rows(np.array([[3, 4], [0, 0]], np.float32), keep_zero=True).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    out = np.array(X, dtype=np.float32, order="C", copy=True)  # owned: the caller's array stays untouched
    norms = np.sqrt(sq_norms(out))
    zero = norms == 0
    if zero.any():
        if not keep_zero:
            raise ValueError(f"{what} row {int(np.flatnonzero(zero)[0])} is all zeros: cosine distance is "
                             "undefined for it")
        norms[zero] = 1.0
    huge = norms > np.finfo(np.float32).max  # rows near float32's limit: their norm only fits in float64
    if huge.any():
        out[huge] = (out[huge] / norms[huge, None]).astype(np.float32)
    out /= np.where(huge, 1.0, norms).astype(np.float32)[:, None]
    return out


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    return metric


def drop_self(dist: np.ndarray, idx: np.ndarray, own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row's own index (``own[i]``, default ``i``) from (q, k+1) distances and indices in
    ascending distance order; drop the last column where it is absent (exact duplicates tied with it).

    >>> drop_self(np.zeros((2, 3)), np.array([[1, 0, 2], [0, 1, 2]]))[1].tolist()
    [[1, 2], [0, 2]]
    """
    q, k1 = idx.shape
    mask = idx == (np.arange(q) if own is None else np.asarray(own))[:, None]
    mask[~mask.any(axis=1), -1] = True
    mask &= np.cumsum(mask, axis=1) == 1  # the own index appears at most once, but be safe
    return dist[~mask].reshape(q, k1 - 1), idx[~mask].reshape(q, k1 - 1)


def _sort_rows(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by distance, ties by index (a deterministic order for every backend)."""
    order = np.lexsort((idx, dist), axis=1)
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def knn(Q: np.ndarray, X: np.ndarray, k: int, metric: str, **kernel) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k candidates (scores, indices) of float32 queries Q in X by tiled matrix products
    (:func:`.kernel.topk_scores`: no copy of X, one score tile of working memory); scores rank only,
    the reported distances are recomputed from the rows."""
    from .kernel import topk_scores

    return topk_scores(np.ascontiguousarray(Q, dtype=np.float32), X, k, metric, **kernel)


class NeighborIndex:
    """Common ``fit`` / ``kneighbors`` / ``save`` logic; backends implement ``_build`` and ``_search``.

    ``_search(Q, k)`` gets preprocessed float32 queries (unit rows for cosine) and returns
    ``(dist, idx)`` of shape (q, k') with k' >= k, whose indices include the k nearest (distances need
    not be exact): the k' candidates are ranked by their recomputed distances, ties by index, and the
    first k kept.
    """

    name = "base"
    exact = True

    def __init__(self, metric: str = "cosine", **params):
        self.metric = check_metric(metric)
        unknown = set(params) - set(self.defaults())
        if unknown:
            raise ConfigError(
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

    @property
    def fitted_rows(self) -> np.ndarray:
        """The rows as the index holds them (unit rows for cosine), (n, d) float32, a read-only view."""
        self._check_fitted()
        view = self._X.view()
        view.flags.writeable = False
        return view

    def fit(self, X) -> "NeighborIndex":
        """Index ``X`` (n, d); returns self. Cosine indexes store L2-normalised rows."""
        X = self._prepare(as_matrix(X, "X"), "X")
        self._build(X)
        self._X = X
        logger.debug("%r fitted on %d x %d", self, *X.shape)
        return self

    def kneighbors(self, X=None, n_neighbors: int = 10, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest fitted points of each query row.

        X: (q, d) queries, or None for all-pairs over the fitted set, each point leaving itself out.
        allowed: None, or the fitted rows a query may return (a boolean mask of ``n_samples_fit_`` or
        row numbers): a filter applied *during* the search (:meth:`_search_allowed`), so every query gets
        min(k, allowed rows) neighbours, the exact nearest among the allowed rows whenever they number at
        most :attr:`SELECT_EXACT_MAX` or the backend is exact.
        Returns (distances float32 (q, k), indices int64 (q, k)), ascending by distance.
        """
        self._check_fitted()
        n = self._X.shape[0]
        if allowed is not None:
            if X is None:
                raise ValueError("allowed rows need query vectors X (all-pairs has no filter)")
            return self._kneighbors_allowed(X, n_neighbors, self._allowed_rows(allowed))
        self_excluded = X is None
        k = check_k(n_neighbors, n - 1 if self_excluded else n, "n_neighbors",
                    f"with X=None each of the {n} fitted points leaves itself out"
                    if self_excluded else "the fitted points")
        if self_excluded:
            Q, kk = self._X, k + 1
        else:
            Q = as_matrix(X, "query X")
            if Q.shape[1] != self._X.shape[1]:
                raise ValueError(
                    f"query X has {Q.shape[1]} features but the index was fitted with {self._X.shape[1]}"
                )
            Q, kk = self._prepare(Q, "query X"), k
        idx = self._search(Q, kk)[1]  # may hold more than kk candidates: the first kk by distance count
        idx = self._repair_missing(Q, np.asarray(idx, dtype=np.int64), kk)
        return self._rank(Q, idx, kk, self_excluded)

    RANK_ROWS = 1024  # queries ranked at a time: the recompute's (rows, k) temporaries stay small

    def _rank(self, Q: np.ndarray, idx: np.ndarray, kk: int, self_excluded: bool) -> tuple[np.ndarray, np.ndarray]:
        """The first ``kk`` of each row's candidates ``idx`` by recomputed distance, ties by index, less
        the query itself where ``self_excluded``: (float32 (q, k), int64 (q, k)), a block of
        :attr:`RANK_ROWS` queries at a time, so that its temporaries stay a few MB whatever q."""
        k = kk - 1 if self_excluded else kk
        out_d, out_i = np.empty((len(Q), k), dtype=np.float32), np.empty((len(Q), k), dtype=np.int64)
        for a in range(0, len(Q), self.RANK_ROWS):
            rows = slice(a, a + self.RANK_ROWS)
            dist, ids = _sort_rows(pair_distances(Q[rows], self._X, idx[rows], self.metric), idx[rows])
            dist, ids = dist[:, :kk], ids[:, :kk]
            if self_excluded:
                dist, ids = drop_self(dist, ids, own=np.arange(a, a + len(ids)))
            out_d[rows], out_i[rows] = dist, ids
        return out_d, out_i

    SELECT_EXACT_MAX = 65_536  # allowed rows searched exactly, whatever the backend (one subset GEMM)

    def _allowed_rows(self, allowed) -> np.ndarray:
        """Sorted unique fitted rows from a boolean mask or row numbers; ValueError when out of range."""
        n = self._X.shape[0]
        allowed = np.asarray(allowed)
        if allowed.dtype == bool:
            if allowed.shape != (n,):
                raise ValueError(f"allowed mask has shape {allowed.shape}, the index holds {n} rows")
            return np.flatnonzero(allowed)
        if allowed.ndim != 1 or not np.issubdtype(allowed.dtype, np.integer):
            raise ValueError("allowed must be a boolean mask or a 1-D array of row numbers")
        rows = np.unique(allowed.astype(np.int64))
        if len(rows) and (rows[0] < 0 or rows[-1] >= n):
            raise ValueError(f"allowed rows must be in 0..{n - 1}")
        return rows

    def _kneighbors_allowed(self, X, n_neighbors: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_k(n_neighbors, max(self._X.shape[0], 1), "n_neighbors", "the fitted points")
        Q = as_matrix(X, "query X")
        if Q.shape[1] != self._X.shape[1]:
            raise ValueError(f"query X has {Q.shape[1]} features but the index was fitted with {self._X.shape[1]}")
        Q, k = self._prepare(Q, "query X"), min(int(n_neighbors), len(rows))
        if k == 0:
            return np.zeros((len(Q), 0), np.float32), np.zeros((len(Q), 0), np.int64)
        if self.exact or len(rows) <= self.SELECT_EXACT_MAX:
            idx = rows[knn(Q, self._X[rows], k, self.metric)[1]]
        else:
            idx = np.asarray(self._search_allowed(Q, k, rows)[1], dtype=np.int64)
            bad = np.flatnonzero((idx[:, :k] < 0).any(axis=1))
            if len(bad):  # too few allowed candidates in the visited part: those queries exactly
                idx = idx[:, :k].copy()
                idx[bad] = rows[knn(Q[bad], self._X[rows], k, self.metric)[1]]
        dist, idx = _sort_rows(pair_distances(Q, self._X, idx, self.metric), idx)
        return dist[:, :k].astype(np.float32), np.ascontiguousarray(idx[:, :k])

    def save(self, path, **extra: np.ndarray) -> Path:
        """Write the index atomically as ``.npz`` (arrays + JSON parameters, no pickle); ``extra`` arrays
        (a run's ``ids``: index row → item id) are stored beside them and ignored by :func:`load_index`."""
        self._check_fitted()
        meta = {"format_version": FORMAT_VERSION, "name": self.name, "metric": self.metric, "params": self.params}
        arrays = {**extra, "__meta__": np.array(json.dumps(meta)), "data": self._X, **self.state_arrays()}
        path = Path(path)
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    # -- backend hooks ----------------------------------------------------------------------------
    def _build(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _search_allowed(self, Q: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates among ``rows`` only (an approximate backend over more than SELECT_EXACT_MAX
        allowed rows; -1 where too few were found): by default an exact search of those rows."""
        scores, local = knn(Q, self._X[rows], k, self.metric)
        return scores, rows[local]

    # -- the saved form: what save writes and fashion.neighbors.load_index reads back ---------------
    def state_arrays(self) -> dict:
        """The arrays :meth:`save` writes beside the fitted rows (``data``) and :meth:`restore` reads back:
        none by default (the index is built again from its rows); faiss backends: the serialised index."""
        return {}

    def restore(self, X: np.ndarray, arrays) -> "NeighborIndex":
        """Make this new, unfitted index the one that was saved, and return it: ``X`` the saved fitted rows
        (float32, as :meth:`fit` left them: unit rows for cosine, not normalised again), ``arrays`` the
        file's arrays (:meth:`state_arrays`' among them, read by name). By default the index is built again
        from ``X``. A backend raises ValueError (or KeyError for a missing array) where the arrays do not
        fit ``X``; :func:`fashion.neighbors.load_index` reports either as a file that is not an index."""
        self._build(X)
        self._X = X
        return self

    # -- helpers ----------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self._X is None:
            raise NotFittedError(f"{self!r} is not fitted yet: call fit(X) first")

    def _prepare(self, X: np.ndarray, what: str) -> np.ndarray:
        return unit_rows(X, what) if self.metric == "cosine" else X

    def _repair_missing(self, Q: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
        """Approximate indexes may return -1 (too few candidates): search those rows exactly."""
        bad = np.flatnonzero((idx < 0).any(axis=1))
        if len(bad):
            logger.info("%s returned fewer than %d neighbours for %d queries; searched exactly", self.name, k, len(bad))
            idx[bad] = knn(Q[bad], self._X, k, self.metric)[1]
        return idx

