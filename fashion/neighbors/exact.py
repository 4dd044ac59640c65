"""``exact``: brute-force search with faiss' blocked BLAS kernel (``faiss.knn``) on the data in place."""

from __future__ import annotations

import numpy as np

from .base import NeighborIndex, knn


class ExactIndex(NeighborIndex):
    """Exact search by blocked float32 matrix products (``faiss.knn``), no index structure.

    Peak memory: the data matrix (n x d float32, not copied for float32 cosine-normalised input) plus
    one block of scores (faiss scores 4,096 queries x 1,024 points at a time: 16 MiB) and O(q x k).
    Euclidean indexes keep the data centred on its mean instead (a second n x d copy): the expansion
    ||q||^2 + ||x||^2 - 2 q.x loses all precision in float32 for tight clusters far from the origin.
    The returned distances are recomputed exactly in float64 (:class:`NeighborIndex`).
    """

    name = "exact"

    def _build(self, X):
        self._mu = None
        self._data = X
        if self.metric == "euclidean":
            self._mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            self._data = X - self._mu

    def _search(self, Q, k):
        if self._mu is not None:
            Q = Q - self._mu
        return knn(Q, self._data, k, self.metric)
