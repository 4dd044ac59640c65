"""Exact top-k candidates by tiled float32 matrix products fused with a streaming top-k.

The scores of a block of queries against a tile of the data come from torch's fp32 GEMM (MKL /
oneDNN: the fastest matrix product on the CPU), written into one reused buffer; each tile's
``torch.topk`` is merged into a running (rows, k) best per query block, so no score matrix larger
than one tile ever exists (as scikit-learn's ``pairwise_distances_chunked``). A tile holds at most
``working_memory`` bytes (default :data:`WORKING_MEMORY`) and at most an eighth of the data's size
(or 1 MiB): with MKL's own buffers and the distance recompute's scratch, the search's peak memory
stays within the data + 25 % (measured: benchmarks/README.md).

Scores, higher is nearer: cosine ``q . x`` on unit rows; euclidean ``2 q . x - ||x||^2`` (= ||q||^2 -
||q - x||^2, the query's own norm dropped), on data the caller has centred (the expansion loses all
precision in float32 for tight clusters far from the origin). The scores only pick candidates: the
distances reported are recomputed from the rows (:mod:`.distances`).

Engines: ``torch`` (its GEMM and ``topk``, above) or ``numpy`` (its BLAS and ``argpartition``:
:func:`topk_scores_numpy`, the same candidates). The caller may name one; otherwise the rule is by size
(:func:`default_engine`): a search of at least :data:`TORCH_FROM_QUERIES` queries (an all-pairs run, a
catalogue's re-search of its lists) uses torch where it is installed; a smaller one (a server's photo or
id queries, batched a few at a time) uses numpy, so that answering a query never imports torch (a server
of a saved OpenVINO network runs without it).
"""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np

# Bytes of one tile of float32 scores (rows x columns) when the caller gives no budget.
WORKING_MEMORY = 128 * 2**20
# A tile also holds at most data_bytes / DATA_SHARE (an eighth: the rest of the 25 % goes to MKL's
# packing buffers and the recompute's scratch, ~20-30 MB measured at 8k x 2048), but never less than
# MIN_TILE_BYTES (tiny data: a few large products rather than many Python-sized ones).
DATA_SHARE = 8
MIN_TILE_BYTES = 2**20
# Queries from which a search uses torch's GEMM and topk (where torch is installed) when the caller names
# no engine: an all-pairs run or a catalogue's re-search; a server's queries, batched a few at a time
# (fashion.service.batcher), stay below it and never import torch.
TORCH_FROM_QUERIES = 256
ENGINES = ("torch", "numpy")
# Tile shape: rows a power of two up to MAX_TILE_ROWS, columns a multiple of COLUMN_STEP. MKL's GEMM
# ran 1.3-1.5x slower on ragged shapes here (704 x 5818 against 1024 x 3968 or 2048 x 1024, 8k x 2048
# data, same budget); wide tiles (2048 x 16384 at the default budget) need few top-k merges.
MAX_TILE_ROWS = 2048
COLUMN_STEP = 128


def tile_shape(n_queries: int, n_data: int, tile_bytes: int) -> tuple[int, int]:
    """(rows, columns) of a score tile of at most ``tile_bytes`` float32 values.

    >>> tile_shape(100_000, 100_000, 128 * 2**20), tile_shape(8000, 8000, 15_625_000)
    ((2048, 16384), (1024, 3712))
    >>> tile_shape(5, 7, 2**20)
    (5, 7)
    """
    elements = max(tile_bytes // 4, 1)
    rows = min(MAX_TILE_ROWS, 2 ** int(math.log2(math.sqrt(elements))), n_queries)
    cols = elements // rows
    cols = cols // COLUMN_STEP * COLUMN_STEP or cols
    return rows, min(n_data, cols)


def tile_budget(X: np.ndarray, working_memory: int | None = None) -> int:
    """Bytes of one score tile for data ``X``: ``working_memory`` (default :data:`WORKING_MEMORY`), but
    at most an eighth of ``X``'s bytes or :data:`MIN_TILE_BYTES`, whichever is larger."""
    budget = WORKING_MEMORY if working_memory is None else int(working_memory)
    return min(budget, max(MIN_TILE_BYTES, X.nbytes // DATA_SHARE))


def default_engine(n_queries: int) -> str:
    """The engine of a search of ``n_queries`` queries when the caller names none: "torch" from
    :data:`TORCH_FROM_QUERIES` queries on where torch is installed, else "numpy".

    >>> default_engine(1)
    'numpy'
    """
    if n_queries >= TORCH_FROM_QUERIES and importlib.util.find_spec("torch") is not None:
        return "torch"
    return "numpy"


def topk_scores(Q: np.ndarray, X: np.ndarray, k: int, metric: str, *, x_sq_norms: np.ndarray | None = None,
                exclude_self: bool = False, working_memory: int | None = None,
                engine: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k best-scoring rows of ``X`` for every row of ``Q``: (scores float32, indices int64), (q, k),
    best first.

    Q: (q, d), X: (n, d) C-contiguous float32 (unit rows for cosine; centred for euclidean); k <= n.
    x_sq_norms: (n,) squared norms of X's rows (euclidean; computed here when None).
    exclude_self: Q is X (row i of Q is point i): point i's score against itself is -inf, so it comes
    last, and only when k = n.
    working_memory: bytes of one score tile (:func:`tile_budget`).
    engine: "torch" or "numpy" (:data:`ENGINES`); None: :func:`default_engine` of the number of queries.

    >>> X = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    >>> topk_scores(X, X, 1, "cosine", exclude_self=True)[1].ravel().tolist()
    [1, 2, 1]
    """
    nq, n = len(Q), len(X)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    engine = default_engine(nq) if engine is None else engine
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    rows, cols = tile_shape(nq, n, tile_budget(X, working_memory))
    if engine == "numpy":
        return topk_scores_numpy(Q, X, k, metric, x_sq_norms, exclude_self, rows, cols)
    import torch

    with warnings.catch_warnings():  # read-only arrays (memory-mapped data): torch warns, nothing writes
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        Qt, Xt = torch.from_numpy(Q), torch.from_numpy(X)
    bias = None
    if metric == "euclidean":
        if x_sq_norms is None:
            from .distances import sq_norms

            x_sq_norms = sq_norms(X)
        bias = torch.from_numpy(-np.asarray(x_sq_norms, dtype=np.float32))[None, :]
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    buf = torch.empty(rows * cols, dtype=torch.float32)
    with torch.no_grad():
        for r in range(0, nq, rows):
            qb = Qt[r : r + rows]
            m = len(qb)
            best_s = best_i = None
            for c in range(0, n, cols):
                xb = Xt[c : c + cols]
                w = len(xb)
                S = buf[: m * w].view(m, w)
                if bias is None:
                    torch.mm(qb, xb.T, out=S)
                else:
                    torch.addmm(bias[:, c : c + w], qb, xb.T, alpha=2.0, out=S)
                if exclude_self and c < r + m and r < c + w:
                    own = torch.arange(max(r, c), min(r + m, c + w))
                    S[own - r, own - c] = -math.inf
                s, i = torch.topk(S, min(k, w), dim=1, sorted=False)
                i += c
                if best_s is None:
                    best_s, best_i = s, i
                else:  # merge with the running best of the earlier tiles
                    s, i = torch.cat((best_s, s), 1), torch.cat((best_i, i), 1)
                    best_s, pick = torch.topk(s, min(k, s.shape[1]), dim=1, sorted=False)
                    best_i = torch.gather(i, 1, pick)
            best_s, order = torch.sort(best_s, dim=1, descending=True)
            out_s[r : r + m] = best_s.numpy()
            out_i[r : r + m] = torch.gather(best_i, 1, order).numpy()
    return out_s, out_i


def topk_scores_numpy(Q, X, k, metric, x_sq_norms, exclude_self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk_scores` with numpy's matrix product (sgemm through its BLAS) and ``argpartition``: the
    engine of a few queries (a server answering one photo at a time: never a reason to load torch)."""
    bias = None
    if metric == "euclidean":
        if x_sq_norms is None:
            from .distances import sq_norms

            x_sq_norms = sq_norms(X)
        bias = -np.asarray(x_sq_norms, dtype=np.float32)
    nq, n = len(Q), len(X)
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    for r in range(0, nq, rows):
        qb = Q[r : r + rows]
        best_s = best_i = None
        for c in range(0, n, cols):
            S = qb @ X[c : c + cols].T
            if bias is not None:
                S *= 2.0
                S += bias[c : c + len(S[0])]
            if exclude_self and c < r + len(qb) and r < c + S.shape[1]:
                own = np.arange(max(r, c), min(r + len(qb), c + S.shape[1]))
                S[own - r, own - c] = -np.inf
            kk = min(k, S.shape[1])
            i = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
            s, i = np.take_along_axis(S, i, 1), i + c
            if best_s is not None:  # merge with the running best of the earlier tiles
                s, i = np.concatenate((best_s, s), 1), np.concatenate((best_i, i), 1)
                pick = np.argpartition(-s, min(k, s.shape[1]) - 1, axis=1)[:, :k]
                s, i = np.take_along_axis(s, pick, 1), np.take_along_axis(i, pick, 1)
            best_s, best_i = s, i
        order = np.argsort(-best_s, axis=1, kind="stable")
        out_s[r : r + len(qb)] = np.take_along_axis(best_s, order, 1)
        out_i[r : r + len(qb)] = np.take_along_axis(best_i, order, 1)
    return out_s, out_i
