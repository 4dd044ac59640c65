"""The one distance every backend reports for a pair of rows, and the row norms cosine needs.

:func:`pair_sq_distances` is a function of the two float32 rows alone (not of the backend, nor of
the query batch), so all backends report bitwise the same distance for the same pair. It costs one
read of each neighbour's row, in faiss' fused kernel (``fvec_L2sqr_by_idx``): no (q, k, d) gather,
no float64 copy (its cost against the search: benchmarks/README.md).

Error bound, u = 2^-24 (float32 unit roundoff): each difference and square is within u (relative);
a float32 sum of s non-negative terms is within (s - 1) u whatever order the SIMD code adds them in,
so summing slices of s <= ``PAIR_SLICE`` = 128 dimensions in float32 and the d / s slice sums in
float64 leaves the squared distance within (s + 2) u + 2^-50 <= 7.9e-6 (relative) and the distance
within 3.9e-6 (the tests promise 1e-5). Sums outside ``TRUSTED`` (exact duplicates; values near
float32's limits) are redone in float64.
"""

from __future__ import annotations

import numpy as np

# Slices of at most this many dimensions are summed in float32; the slices are added in float64.
PAIR_SLICE = 128
# Row norms (cosine): shorter slices, so a normalised row's squared norm is 1 within 2.3e-6.
NORM_SLICE = 32
# float32 sums are trusted in [2^-60, 2^100]: below 2^100 no term can have overflowed, and above 2^-60
# terms lost to underflow (< 2^-126 each) weigh < d 2^-66 relative. Outside: float64 differences.
TRUSTED = (2.0**-60, 2.0**100)
# Elements per chunk of the float64 fallback (chunk x k x d, 32 MiB of float64) and of the slice ids (512 KiB
# of int64: with its float32 sums, the recompute's scratch stays ~2 MB, small beside an 8k x 2048 index).
_CHUNK_ELEMENTS = 2**22
_ID_ELEMENTS = 2**16


def pair_sq_distances(Q: np.ndarray, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Squared euclidean distances ||Q[i] - X[idx[i, j]]||^2 of float32 rows, as float64 (q, k).

    Q: (q, d) and X: (n, d) C-contiguous float32; idx: (q, k) int64 indices into X. Within the
    module docstring's bound; when no slice length of 16..128 divides d, float64 throughout.

    >>> X = np.array([[0, 0], [3, 4], [1, 1]], dtype=np.float32)
    >>> pair_sq_distances(X, X, np.array([[1, 2], [0, 1], [1, 0]])).tolist()
    [[25.0, 2.0], [25.0, 0.0], [13.0, 2.0]]
    """
    s = _slice_length(X.shape[1], PAIR_SLICE)
    out = _sliced(Q, X, idx, s) if s else _float64(Q, X, idx)
    lo, hi = TRUSTED
    redo = ~((out >= lo) & (out <= hi)) if s else np.zeros(out.shape, dtype=bool)
    if redo.any():
        r, c = np.nonzero(redo)
        out[r, c] = _float64(Q[r], X, idx[r, c][:, None])[:, 0]
    return out


def pair_distances(Q: np.ndarray, X: np.ndarray, idx: np.ndarray, metric: str) -> np.ndarray:
    """float64 (q, k) distances between Q[i] and X[idx[i, j]] (:func:`pair_sq_distances`), the distance
    every backend reports: euclidean ||q - x||; cosine (unit rows) ||q - x||^2 / 2 = 1 - cos, clipped to [0, 2]."""
    sq = pair_sq_distances(Q, X, idx)
    return np.sqrt(sq) if metric == "euclidean" else np.clip(sq / 2.0, 0.0, 2.0)


def sq_norms(X: np.ndarray) -> np.ndarray:
    """(n,) float64 squared row norms of float32 rows: float32 sums over slices of ``NORM_SLICE``
    dimensions (within 34 u), added in float64; rows outside ``TRUSTED`` in float64 throughout.

    >>> sq_norms(np.array([[3, 4], [0, 0]], dtype=np.float32)).tolist()
    [25.0, 0.0]
    """
    n, d = X.shape
    s = next(s for s in range(min(d, NORM_SLICE), 0, -1) if d % s == 0)
    sliced = X.reshape(n, d // s, s)
    sq = np.einsum("nms,nms->nm", sliced, sliced).sum(axis=1, dtype=np.float64)
    lo, hi = TRUSTED
    redo = np.flatnonzero(~((sq >= lo) & (sq <= hi)))
    if len(redo):
        sq[redo] = np.einsum("ij,ij->i", X[redo], X[redo], dtype=np.float64)
    return sq


def _slice_length(d: int, most: int) -> int:
    """d itself up to ``most``, else the largest divisor of d in 16..most; 0 when there is none."""
    if d <= most:
        return d
    return next((s for s in range(most, 15, -1) if d % s == 0), 0)


def _sliced(Q, X, idx, s):
    import faiss

    q, k = idx.shape
    m = X.shape[1] // s
    Xs, Qs = X.reshape(-1, s), Q.reshape(-1, s)  # row i, slice j -> row i * m + j (views, no copy)
    offsets = np.arange(m, dtype=np.int64)[None, :, None]
    out = np.empty((q, k), dtype=np.float64)
    rows = max(1, _ID_ELEMENTS // (k * m))
    for a in range(0, q, rows):
        block = idx[a : a + rows]
        ids = np.ascontiguousarray(block[:, None, :] * m + offsets)  # (r, m, k): slice j of neighbour t
        part = np.empty(ids.shape, dtype=np.float32)
        faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(part), faiss.swig_ptr(Qs[a * m : (a + len(block)) * m]),
                                faiss.swig_ptr(Xs), faiss.swig_ptr(ids), s, len(block) * m, k)
        out[a : a + len(block)] = part.sum(axis=1, dtype=np.float64)
    return out


def _float64(Q, X, idx):
    q, k = idx.shape
    out = np.empty((q, k), dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // (k * X.shape[1]))
    for a in range(0, q, rows):
        diff = X[idx[a : a + rows]].astype(np.float64) - Q[a : a + rows].astype(np.float64)[:, None, :]
        out[a : a + rows] = np.einsum("rkd,rkd->rk", diff, diff)
    return out
