"""A certified bf16 first pass for exact cosine top-k: bf16 products over all pairs, float32 re-score.

Where the CPU multiplies bf16 natively (AVX512-BF16, AMX: :func:`native_bf16`), torch's bf16 GEMM
(oneDNN: bf16 inputs, float32 accumulation, bf16 output) runs at 2-4x its float32 GEMM. Each tile's
bf16 scores ``s^`` feed a running k-th best per query; every pair whose error bound cannot rule it out
of the top k is kept as a candidate, and the candidates are re-scored in float32 from the rows (faiss'
fused ``fvec_inner_products_by_idx``), so the answer is the float32 kernel's (:mod:`.kernel`).

The bound, for rows q, x (float32) and their bf16 roundings q^, x^ (round to nearest, unit roundoff
u = 2^-8, so ||q - q^|| <= u ||q||, computed exactly here per row as r_q, r_x):

* inputs: q.x - q^.x^ = (q - q^).x + q^.(x - x^), so |.| <= r_q ||x|| + ||q^|| r_x (Cauchy-Schwarz);
* accumulation: the products q^_i x^_i are exact in float32 (8 + 8 significant bits); their float32
  sum is within d 2^-24 sum |q^_i x^_i| <= d 2^-24 ||q^|| ||x^|| (doubled here: the dot-product
  instruction adds two products at a time);
* output: the float32 sum y rounded to bf16 (nearest even): |y - s^| <= u |s^|;
* the float32 re-score's own error (d 2^-24 ||q|| ||x||, once more), so that the candidates hold every
  pair the float32 kernel itself could rank in the top k.

So |q.x - s^| <= u |s^| + C_q, with C_q from the per-row norms and the data's largest ones. Let t be
the k-th best s^ of a query: its k best pairs all score at least L = t - u |t| - C_q, so a pair with
s^ + u |s^| + C_q < L is beaten by k others and cannot be in the top k. Every other pair is a
candidate (the k best s^ among them). A query with more than :data:`MAX_WINDOW` candidates (many
duplicates, ties, or data whose neighbours lie within the bound's width of each other) is searched again
by the float32 kernel, and so is a block of queries whose candidates blow up while it is searched.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from .running import RunningBest, top_k, write_sorted

U_BF16 = 2.0**-8  # unit roundoff of bf16: 8 significant bits, round to nearest even
U_FP32 = 2.0**-24
# Candidates per query beyond which the query is searched again in float32: each costs one gathered
# d-vector dot product, and past ~500 they cost as much as the bf16 pass saved at 50k x 2048.
MAX_WINDOW = 512
NORM_ROWS = 512  # rows per chunk of the bound's norms (4 MiB temporaries at d = 2048; 4096 rows peaked at +94 MB)
PAD = 16  # columns after d in the bf16 products: the offset's column, then zeros
SLACK = 2.0**-40  # absolute, beyond the bound: float64's rounding of the bounds themselves
# Bytes a candidate pair costs while it is taken from a tile and kept (24 in its part, the rest the
# extraction's temporaries): a first tile whose pairs would cost more than a copy of its scores waits.
PAIR_BYTES = 64
RESCORE_ROWS = 256  # queries re-scored at a time: their (rows, candidates) temporaries stay ~1.5 MB


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU has native bf16 dot products (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo)
    and torch has oneDNN to use them. Elsewhere bf16 products are emulated, no faster than float32."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return False
    import torch

    return bool(torch.backends.mkldnn.is_available())


def row_norms(A: np.ndarray) -> np.ndarray:
    """(3, n) float64: ||a - bf16(a)||, ||bf16(a)||, ||a|| of each row, from float32 sums inflated by
    their own error bound (2 d 2^-24 relative). bf16(a) is rounded here as torch rounds it (nearest,
    ties to even, on the bits: :func:`to_bf16`), in numpy: torch's conversion and norm kernels left
    +21 MB resident over 30k x 2048 rows, numpy +2 MB."""
    n, d = A.shape
    out = np.empty((3, n))
    for a in range(0, n, NORM_ROWS):
        t = A[a : a + NORM_ROWS]
        h = to_bf16(t)
        for j, v in enumerate((t - h, h, t)):
            out[j, a : a + len(t)] = np.sqrt(np.einsum("ij,ij->i", v, v))
    return out * (1 + 2 * d * U_FP32)


def to_bf16(A: np.ndarray) -> np.ndarray:
    """float32 ``A`` rounded to bf16 (to nearest, ties to even), as float32.

    >>> to_bf16(np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9], dtype=np.float32)).tolist()
    [1.0, 1.015625, 1.0]
    """
    u = np.ascontiguousarray(A, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)).view(np.float32)


def error_constants(q_norms: np.ndarray, x_norms: np.ndarray, d: int) -> np.ndarray:
    """(q,) C_q of the module docstring's bound |q.x - s^| <= u |s^| + C_q, for every data row x:
    ``q_norms``, ``x_norms`` from :func:`row_norms`."""
    rq, hq, nq = q_norms
    r_max, h_max, n_max = (x_norms[j].max(initial=0.0) for j in range(3))
    inputs = rq * n_max + hq * r_max
    sums = 3 * d * U_FP32 * np.maximum(hq, nq) * max(h_max, n_max)
    return inputs + sums + 2.0**-100


def _at_least(low: np.ndarray) -> np.ndarray:
    """(q,) float64: the lowest bf16 output y with y + u |y| >= ``low`` (-inf stays -inf)."""
    with np.errstate(invalid="ignore"):
        return np.where(low >= 0, low / (1 + U_BF16), low / (1 - U_BF16))


def bf16_topk(Q, X, k, own, rows, cols, fallback, stats=None):
    """:func:`.kernel.topk_scores` by the certified bf16 pass, in blocks of ``rows`` queries against
    tiles of ``cols`` rows of X (a bf16 copy of the tile, a bf16 score tile and its mask: 2 (rows + d)
    + rows bytes a column, and 2 rows more where a first tile's pairs wait: :func:`_candidates`). own: (q,) the row of X each query leaves out, or None. fallback(Q', own'):
    the float32 kernel, for the queries the bound cannot settle. stats: receives the counts."""
    import torch

    nq, n, d = len(Q), len(X), X.shape[1]
    x_norms = row_norms(X)
    C = error_constants(x_norms if Q is X else row_norms(Q), x_norms, d)
    out_s, out_i = np.empty((nq, k), dtype=np.float32), np.empty((nq, k), dtype=np.int64)
    redo, kept = [], 0
    bufs = _Buffers(min(rows, nq), min(cols, n), d)
    with warnings.catch_warnings(), torch.no_grad():
        # read-only arrays (memory-mapped data): torch warns, nothing writes
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for r in range(0, nq, rows):
            block = slice(r, min(r + rows, nq))
            o = None if own is None else own[block]
            parts = _candidates(Q[block], X, k, o, C[block], cols, bufs)
            if parts is None:  # the block's candidates blew up: all of it in float32
                redo.append(np.arange(block.start, block.stop))
                continue
            counts = sum(np.bincount(part[0], minlength=block.stop - r) for part in parts)
            bad = _rescore(Q[block], X, k, o, parts, counts, out_s[block], out_i[block])
            redo.append(bad + r)
            kept += counts.sum() - counts[bad].sum()
    del bufs  # before the float32 fallback allocates its own tile
    redo = np.concatenate(redo) if redo else np.empty(0, dtype=np.int64)
    if len(redo):
        out_s[redo], out_i[redo] = fallback(Q[redo], None if own is None else own[redo])
    if stats is not None:
        stats.update(bf16_queries=nq - len(redo), fp32_fallback=len(redo),
                     candidates_mean=round(kept / max(nq - len(redo), 1), 1))
    return out_s, out_i


class _Buffers:
    """The pass's working memory, allocated once and reused by every block and tile: the queries' and
    the data tile's bf16 rows (beside the offset's column and zeros to PAD), the bf16 score tile, its
    mask of the pairs kept, the flat positions of those pairs (grown, never shrunk) and, from the first
    block whose first tile waits for the final bound, a copy of that tile's scores. Fresh arrays of
    these sizes at every tile left glibc's heap fragmented: the peak crept up 6 MB a few tiles at 50k x
    2048 (+120 MB beyond the data in all against +91 MB with a fixed mmap threshold; benchmarks/README.md)."""

    def __init__(self, rows, cols, d):
        import torch

        self.q = torch.zeros((rows, d + PAD), dtype=torch.bfloat16)
        self.x = torch.zeros((cols, d + PAD), dtype=torch.bfloat16)
        self.x[:, d] = 1
        self.s = torch.empty(rows * cols, dtype=torch.bfloat16)
        self.mask = torch.empty(rows * cols, dtype=torch.bool)
        self.at = torch.empty((0, 1), dtype=torch.long)
        self.first = None

    def keep_first(self, S):
        """A copy of the score tile ``S`` (allocated at the first call, reused by later blocks)."""
        import torch

        if self.first is None:
            self.first = torch.empty(self.s.numel(), dtype=torch.bfloat16)
        return self.first[: S.numel()].view(S.shape).copy_(S)

    def positions(self, mask):
        """(N,) int64 tensor: the positions of ``mask``'s True values, written into :attr:`at` (a view of
        it, valid until the next call; grown to twice what it must hold when too small)."""
        import torch

        N = int(torch.count_nonzero(mask))
        if N > len(self.at):
            self.at = torch.empty((2 * N, 1), dtype=torch.long)
        return torch.nonzero(mask, out=self.at[:N])[:, 0]


def _candidates(Qb, X, k, own, C, cols, bufs):
    """Every candidate pair of a block of queries, as parts (one a tile: rows ascending, columns, upper
    bounds; never joined, so that no copy of them all exists), or None when they outgrow
    :data:`MAX_WINDOW` a query on average (the block goes to float32).

    Each tile scores q^.x^ - c_q (the query's offset c_q, a bf16 number: -c_q in the query's extra
    column, 1 in the data's), so that the output's rounding, u |y| of the output y, is small near the
    k-th best score, where c_q is put from the second tile on: the running k-th lower bound."""
    import torch

    m, n, d = len(Qb), len(X), X.shape[1]
    qb = bufs.q[:m]
    qb[:, :d] = torch.from_numpy(Qb)
    best = RunningBest(m, k, dtype=np.float64)  # the k best lower bounds of the true scores
    offset = np.zeros(m)
    parts, size, prune_at = [], 0, 64 * m
    first = first_Ct = None  # the first tile's scores and constants, where its pairs wait for the final bound
    for c in range(0, n, cols):
        w = min(cols, n - c)
        xb = bufs.x[:w]
        xb[:, :d].copy_(torch.from_numpy(X[c : c + w]))  # float32 -> bf16 a tile at a time: no bf16 copy of X
        qb[:, d] = torch.from_numpy(-offset)
        S = bufs.s[: m * w].view(m, w)
        torch.mm(qb, xb.T, out=S)
        if own is not None:
            hit = np.flatnonzero((own >= c) & (own < c + w))
            if len(hit):
                S[torch.from_numpy(hit), torch.from_numpy(own[hit] - c)] = float("-inf")
        Ct = (C + 3 * (d + 1) * U_FP32 * np.abs(offset) + SLACK)[:, None]  # the offset's product, exact, in the sum
        topk = best.filled < k  # the first tile (k columns or more): its top-k sets the k-th lower bound
        if topk:
            s, i = torch.topk(S, min(k, w), dim=1, sorted=False)
            y = s.double().numpy()
            best.add(_bounds(offset[:, None], y, Ct, -1), i.numpy(), c)
        low = best.kth()
        mask = _mask(S, low, offset, Ct[:, 0], bufs)
        if c == 0 and int(torch.count_nonzero(mask)) * PAIR_BYTES > S.nbytes:
            # the first tile's k-th bound is weak where it holds fewer than k of a query's near neighbours
            # (30k x 2048: 400 pairs a query pass, 19 MB of parts): its pairs are taken at the block's end,
            # against the final bound, from a copy of its scores
            first, first_Ct = bufs.keep_first(S), Ct[:, 0]
        else:
            r_, c_, y = _pairs(S, mask, c, bufs)
            parts.append((r_, c_, _bounds(offset[r_], y, Ct[r_, 0], 1)))
            size += len(r_)
            if not topk:  # later tiles: every pair that could raise the k-th lower bound is among these
                best.add(*_top_per_row(r_, c_, _bounds(offset[r_], y, Ct[r_, 0], -1), m, k), 0)
            if size > prune_at:  # drop what the risen k-th lower bound now rules out, part by part (a joined
                # copy of all of them, then the kept pairs, was the block's largest transient: +38 MB at 50k)
                low = best.kth()
                parts = [_keep(*part, low) for part in parts]
                size = sum(len(part[0]) for part in parts)
                if size > MAX_WINDOW * m:
                    return None
                prune_at = 2 * size
        # the next tiles' offsets: the k-th lower bound as a bf16 number (0 while unknown)
        low = best.kth()
        offset = torch.from_numpy(np.where(np.isfinite(low), low, 0.0)).to(torch.bfloat16).double().numpy()
    low = best.kth()
    if first is not None:  # the first tile's offset was 0
        r_, c_, y = _pairs(first, _mask(first, low, np.zeros(m), first_Ct, bufs), 0, bufs)
        parts.append((r_, c_, _bounds(0.0, y, first_Ct[r_], 1)))
    return [_keep(*part, low) for part in parts]


def _mask(S, low, offset, Ct, bufs):
    """The flat mask (in ``bufs``) of the tile's pairs whose upper bound offset + y + u |y| + Ct reaches
    the k-th lower bound ``low``: y at least _at_least(low - offset - Ct), compared in bf16, lowered by
    more than bf16's rounding of it (2^-9 relative)."""
    import torch

    floor = _at_least(low - offset - Ct)
    floor = torch.from_numpy((floor - np.abs(floor) * 2.0**-7 - 2.0**-120).astype(np.float32))
    mask = bufs.mask[: S.numel()]
    torch.ge(S, floor.to(torch.bfloat16)[:, None], out=mask.view(S.shape))
    return mask


def _pairs(S, mask, c, bufs):
    """(rows, columns + ``c``, bf16 scores as float64) of the pairs of ``mask``, row by row."""
    at = bufs.positions(mask)  # flat positions in the tile
    r_, c_ = np.divmod(at.numpy(), S.shape[1])
    c_ += c
    return r_, c_, S.reshape(-1)[at].double().numpy()


def _bounds(offset, y, C, sign):
    """Lower (sign -1) or upper (+1) bounds of the true scores of bf16 outputs ``y`` (float64) of q^.x^ -
    offset: offset + y -+ (u |y| + C); a left-out pair (-inf) stays -inf."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(y), -np.inf, offset + y + sign * (U_BF16 * np.abs(y) + C))


def _top_per_row(rows, cols, values, m, k):
    """(m, k) the k largest ``values`` of each row among the pairs (rows, cols), -inf (column 0) where a
    row has fewer."""
    order = np.lexsort((-values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    counts = np.bincount(rows, minlength=m)
    rank = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]
    take = rank < k
    out_v, out_c = np.full((m, k), -np.inf), np.zeros((m, k), dtype=np.int64)
    out_v[rows[take], rank[take]], out_c[rows[take], rank[take]] = values[take], cols[take]
    return out_v, out_c


def _keep(rows, cols, upper, low):
    """The pairs whose upper bound reaches their query's k-th lower bound ``low`` (in their order)."""
    keep = upper >= low[rows]
    return rows[keep], cols[keep], upper[keep]


def _rescore(Qb, X, k, own, parts, counts, out_s, out_i):
    """Float32 scores of each query's candidates (``parts`` of :func:`_candidates`, ``counts`` a query)
    by faiss' fused gather-dot, its k best into ``out_s``, ``out_i`` best first, :data:`RESCORE_ROWS`
    queries at a time (each part's rows ascend: a query range is a slice of it); returns the block's
    queries with more than :data:`MAX_WINDOW` candidates (left unwritten)."""
    import faiss

    d = Qb.shape[1]
    for a in range(0, len(Qb), RESCORE_ROWS):
        b = min(a + RESCORE_ROWS, len(Qb))
        good = counts[a:b] <= MAX_WINDOW
        if not good.any():
            continue
        width = max(int(counts[a:b][good].max()), k)
        ids = np.full((b - a, width), -1, dtype=np.int64)  # -1: faiss scores -inf
        filled = np.zeros(b - a, dtype=np.int64)  # each query's candidates placed so far
        for rows, cols, _ in parts:
            lo, hi = np.searchsorted(rows, [a, b])
            r = rows[lo:hi] - a
            n_r = np.bincount(r, minlength=b - a)
            pos = np.arange(len(r)) - (np.cumsum(n_r) - n_r)[r] + filled[r]
            sel = good[r]
            ids[r[sel], pos[sel]] = cols[lo:hi][sel]
            filled += n_r
        ip = np.empty((b - a, width), dtype=np.float32)
        Qc = np.ascontiguousarray(Qb[a:b], dtype=np.float32)
        faiss.fvec_inner_products_by_idx(faiss.swig_ptr(ip), faiss.swig_ptr(Qc), faiss.swig_ptr(X),
                                         faiss.swig_ptr(ids), d, b - a, width)
        if own is not None:
            ip[ids == own[a:b, None]] = -np.inf  # left out (a candidate only while fewer than k were known)
        s, pick = top_k(ip, k)
        s_, i_ = np.empty((b - a, k), dtype=np.float32), np.empty((b - a, k), dtype=np.int64)
        write_sorted(s, np.take_along_axis(ids, pick, 1), s_, i_)
        out_s[a:b][good], out_i[a:b][good] = s_[good], i_[good]
    return np.flatnonzero(counts > MAX_WINDOW)
