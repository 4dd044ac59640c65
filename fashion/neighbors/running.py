"""The running k best (score, column) of a block of queries, merged tile by tile in numpy, and the
k best of each row of a score matrix: shared by the float32 kernel (:mod:`.kernel`) and the bf16 first
pass (:mod:`.bf16`, its float32 re-score)."""

from __future__ import annotations

import numpy as np


class RunningBest:
    """The running k best (score, column) of a block of m queries: one (m, 2k) buffer, each tile's top-k
    written beside the best so far and the k best of both kept."""

    def __init__(self, m: int, k: int, dtype=np.float32):
        self.k, self.filled = k, 0
        self.s = np.empty((m, 2 * k), dtype=dtype)
        self.i = np.empty((m, 2 * k), dtype=np.int64)

    def add(self, s: np.ndarray, i: np.ndarray, offset: int) -> None:
        f, w = self.filled, s.shape[1]
        self.s[:, f : f + w] = s
        np.add(i, offset, out=self.i[:, f : f + w])
        self.filled = f = f + w
        if f > self.k:  # keep the k best of the 2k in the first k columns
            pick = np.argpartition(-self.s[:, :f], self.k - 1, axis=1)[:, : self.k]
            self.s[:, : self.k] = np.take_along_axis(self.s[:, :f], pick, 1)
            self.i[:, : self.k] = np.take_along_axis(self.i[:, :f], pick, 1)
            self.filled = self.k

    def kth(self) -> np.ndarray:
        """(m,) the k-th best score so far; -inf while fewer than k have been seen."""
        if self.filled < self.k:
            return np.full(len(self.s), -np.inf, dtype=self.s.dtype)
        return self.s[:, : self.k].min(axis=1)

    def write(self, out_s: np.ndarray, out_i: np.ndarray) -> None:
        """The best, highest score first, into ``out_s`` and ``out_i`` (m, k)."""
        write_sorted(self.s[:, : self.filled], self.i[:, : self.filled], out_s, out_i)


def top_k(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (scores, columns) of each row of ``S``, unordered: numpy's ``argpartition``.

    >>> [a.tolist() for a in top_k(np.array([[0.1, 0.9, 0.5]]), 1)]
    [[[0.9]], [[1]]]
    """
    i = np.argpartition(-S, k - 1, axis=1)[:, :k]
    return np.take_along_axis(S, i, 1), i


def write_sorted(s: np.ndarray, i: np.ndarray, out_s: np.ndarray, out_i: np.ndarray) -> None:
    """Scores ``s`` and their indices ``i`` (m, k), each row highest score first (ties in their order),
    into ``out_s`` and ``out_i``."""
    order = np.argsort(-s, axis=1, kind="stable")
    out_s[:] = np.take_along_axis(s, order, 1)
    out_i[:] = np.take_along_axis(i, order, 1)
