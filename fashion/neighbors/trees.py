"""scikit-learn's KD-tree and ball tree (what the original study searched with; slow in high dimension)."""

from __future__ import annotations

from .base import NeighborIndex


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

