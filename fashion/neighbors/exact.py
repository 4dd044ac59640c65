"""``exact``: brute force by tiled float32 matrix products fused with a streaming top-k (:mod:`.kernel`),
or, for cosine from :data:`.kernel.BF16_FROM_DATA` rows on a CPU with native bf16, a certified bf16 first
pass re-scored in float32 (:mod:`.bf16`): the same answer."""

from __future__ import annotations

from .base import NeighborIndex, knn
from .distances import sq_norms

# Candidates searched beyond the k asked for, then ranked by their recomputed distances, ties by index:
# the k returned are the k nearest by the reported distance (not by the GEMM's rounding of it), and
# among up to TIE_MARGIN + 1 points tied at the k-th distance, those of lowest index.
TIE_MARGIN = 8


class ExactIndex(NeighborIndex):
    """Exact search by tiled float32 matrix products (torch's MKL GEMM) and a streaming top-k.

    Peak memory: the data matrix (n x d float32, not copied for float32 cosine-normalised input) plus
    one tile of scores (at most ``working_memory`` bytes, default 128 MiB, and the memory rule of
    :func:`.kernel.tile_budget`)
    and O(q x k). Euclidean indexes keep the data centred on its mean as well (a second n x d copy):
    the expansion ||q||^2 + ||x||^2 - 2 q.x loses all precision in float32 for tight clusters far from
    the origin. All-pairs search (``X=None``) searches that copy as it is, leaving each point out by
    index. The returned distances are recomputed from the rows (:mod:`.distances`).
    """

    name = "exact"

    @classmethod
    def defaults(cls) -> dict:
        return {"working_memory": None}

    def _build(self, X):
        self._mu = self._sq = None
        self._data = self._fitted = X
        if self.metric == "euclidean":
            # any centre will do (the reported distances are recomputed from the rows themselves), so
            # the float32 mean: one cheap pass
            self._mu = X.mean(axis=0)
            self._data = X - self._mu
            self._sq = sq_norms(self._data)

    def _search(self, Q, k):
        all_pairs = Q is self._fitted
        if all_pairs:  # the queries are the data, centred once at fit
            Q = self._data
        elif self._mu is not None:
            Q = Q - self._mu
        self.stats_ = {}  # the kernel's counts of its last search (the bf16 pass's, when it ran)
        return knn(Q, self._data, min(k + TIE_MARGIN, len(self._data)), self.metric, x_sq_norms=self._sq,
                   exclude_self=all_pairs, working_memory=self.params["working_memory"], stats=self.stats_)
