"""Exact top-k candidates by tiled float32 matrix products fused with a streaming top-k.

The scores of a block of queries against a tile of the data come from torch's fp32 GEMM (MKL /
oneDNN: the fastest matrix product on the CPU), written into one reused buffer; each tile's
``torch.topk`` is merged in numpy into a running (rows, k) best per query block
(:class:`.running.RunningBest`), so no score matrix larger than one tile ever exists (as scikit-learn's ``pairwise_distances_chunked``). A
tile holds at most ``working_memory`` bytes (default :data:`WORKING_MEMORY`) and at most what the
memory rule leaves (:func:`tile_budget`: a fifth of the data less the fixed costs and the candidates,
never less than a sixteenth of the data or 1 MiB): with MKL's packing buffers, the torch code paged
in at the first call and the distance recompute's scratch, the search's peak memory stays within the
data + 25 % (measured: benchmarks/README.md), and large data gets tiles as wide as the old rule's
eighth (narrow tiles cost time: 10 % at 50k). torch runs only the product and the tile's top-k; the merges, the
self-exclusion and the final order are numpy's, shared by both engines.

Scores, higher is nearer: cosine ``q . x`` on unit rows; euclidean ``2 q . x - ||x||^2`` (= ||q||^2 -
||q - x||^2, the query's own norm dropped), on data the caller has centred (the expansion loses all
precision in float32 for tight clusters far from the origin). The scores only pick candidates: the
distances reported are recomputed from the rows (:mod:`.distances`).

Engines: ``torch`` (its GEMM and ``topk``, above) or ``numpy`` (its BLAS and ``argpartition``:
the same merges, the same candidates). The caller may name one; otherwise the rule is by size
(:func:`default_engine`): a search of at least :data:`TORCH_FROM_QUERIES` queries (an all-pairs run, a
catalogue's re-search of its lists) uses torch where it is installed; a smaller one (a server's photo or
id queries, batched a few at a time) uses numpy, so that answering a query never imports torch (a server
of a saved OpenVINO network runs without it).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings

import numpy as np

from .running import RunningBest, top_k

# Bytes of one tile of float32 scores (rows x columns) when the caller gives no budget.
WORKING_MEMORY = 128 * 2**20
# The memory rule (:func:`tile_budget`): the search's peak beyond the data is the score tile, fixed costs
# (~9 MB measured at 8k x 2048: MKL's packing buffers, the torch code paged in by the first product and
# top-k, the recompute's scratch) and the (q, k) candidates (float32 scores + int64 indices, held twice
# while merged and ranked: CANDIDATE_BYTES each). A tile gets TILE_SHARE of the data less FIXED_BYTES and
# the candidates (a fifth: 5 points of the 25 % left as margin), but never less than a DATA_SHARE-th of
# the data (small data, where the fixed costs alone near 25 %: at 8k x 2048, 512 x 1920 tiles measured
# +21 % before the columns were spread evenly; now 512 x 1664, +20 % in benchmarks/README.md's quiet run),
# nor less than MIN_TILE_BYTES (tiny data: a few large products rather than many Python-sized ones). At
# 50k x 2048 this gives 2048 x 5632 tiles (a sixteenth, then 2048 x 3072 before even columns: 10 % slower).
TILE_SHARE = 0.2
FIXED_BYTES = 10 * 2**20
CANDIDATE_BYTES = 24
DATA_SHARE = 16
MIN_TILE_BYTES = 2**20
# Queries from which a search uses torch's GEMM and topk (where torch is installed) when the caller names
# no engine: an all-pairs run or a catalogue's re-search; a server's queries, batched a few at a time
# (fashion.service.batcher), stay below it and never import torch.
TORCH_FROM_QUERIES = 256
ENGINES = ("torch", "numpy")
# The candidates' first pass: float32 products, or bf16 ones certified by an error bound and re-scored in
# float32 (:mod:`.bf16`). Unnamed, bf16 from BF16_FROM_DATA rows of data on a CPU with native bf16 dot
# products (cosine, torch engine): below it the fixed costs (conversions, re-score) eat the gain.
PRECISIONS = ("fp32", "bf16")
BF16_FROM_DATA = 20_000
# Tile shape: rows a power of two up to MAX_TILE_ROWS, columns a multiple of COLUMN_STEP. At 8k x 2048
# (same run, load 1.5, measured before the columns were spread evenly) 512 x 1920 tiles ran as fast as 1024 x 1920 (1.52 / 1.55 s), narrower ones 7-14 %
# slower (1024 x 640, 1024 x 1024, 2048 x 512: MKL and topk per column). MKL's GEMM
# ran 1.3-1.5x slower on ragged shapes here (704 x 5818 against 1024 x 3968 or 2048 x 1024, 8k x 2048
# data, same budget); wide tiles (2048 x 16384 at the default budget) need few top-k merges.
MAX_TILE_ROWS = 2048
COLUMN_STEP = 128


def tile_shape(n_queries: int, n_data: int, tile_bytes: int) -> tuple[int, int]:
    """(rows, columns) of a score tile of at most ``tile_bytes`` float32 values; the columns are spread
    evenly over the data (no narrow last tile: MKL runs ragged shapes slowly).

    >>> tile_shape(100_000, 100_000, 128 * 2**20), tile_shape(8000, 8000, 4_096_000)
    ((2048, 14336), (512, 1664))
    >>> tile_shape(50_000, 50_000, 3 * 2**25 // 2), tile_shape(5, 7, 2**20)
    ((2048, 5632), (5, 7))
    """
    elements = max(tile_bytes // 4, 1)
    rows = min(MAX_TILE_ROWS, 2 ** int(math.log2(math.sqrt(elements))), n_queries)
    cols = elements // rows
    return rows, even_columns(n_data, cols // COLUMN_STEP * COLUMN_STEP or cols)


def even_columns(n_data: int, cols: int) -> int:
    """At most ``cols`` columns a tile, spread evenly over ``n_data``: as many tiles as ``cols`` need,
    each as wide as a multiple of :data:`COLUMN_STEP` allows (no sliver of a last tile).

    >>> even_columns(50_000, 3072), even_columns(100, 3072)
    (2944, 100)
    """
    if cols < n_data:
        even = -(-n_data // -(-n_data // cols))
        cols = min(cols, -(-even // COLUMN_STEP) * COLUMN_STEP)
    return min(n_data, cols)


def tile_budget(X: np.ndarray, working_memory: int | None = None, candidates: int = 0) -> int:
    """Bytes of one score tile for data ``X`` and a search keeping ``candidates`` (queries x k) in all:
    ``working_memory`` (default :data:`WORKING_MEMORY`), but at most the memory rule's share (module
    constants above: a fifth of ``X``'s bytes less the fixed costs and the candidates), and never below a
    sixteenth of ``X``'s bytes or :data:`MIN_TILE_BYTES`."""
    budget = WORKING_MEMORY if working_memory is None else int(working_memory)
    share = int(X.nbytes * TILE_SHARE) - FIXED_BYTES - CANDIDATE_BYTES * candidates
    return min(budget, max(MIN_TILE_BYTES, X.nbytes // DATA_SHARE, share))


def default_engine(n_queries: int) -> str:
    """The engine of a search of ``n_queries`` queries when the caller names none: "torch" from
    :data:`TORCH_FROM_QUERIES` queries on where torch is installed, else "numpy".

    >>> default_engine(1)
    'numpy'
    """
    if n_queries >= TORCH_FROM_QUERIES and importlib.util.find_spec("torch") is not None:
        return "torch"
    return "numpy"


def default_precision(n_data: int, metric: str, engine: str) -> str:
    """The first pass of a search when the caller names none: "bf16" for cosine with torch from
    :data:`BF16_FROM_DATA` rows on a CPU with native bf16 (:func:`.bf16.native_bf16`), else "fp32".

    >>> default_precision(10**6, "euclidean", "torch")
    'fp32'
    """
    if metric != "cosine" or engine != "torch" or n_data < BF16_FROM_DATA:
        return "fp32"
    from .bf16 import native_bf16

    return "bf16" if native_bf16() else "fp32"


def topk_scores(Q: np.ndarray, X: np.ndarray, k: int, metric: str, *, x_sq_norms: np.ndarray | None = None,
                exclude_self: bool = False, working_memory: int | None = None,
                engine: str | None = None, precision: str | None = None,
                stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k best-scoring rows of ``X`` for every row of ``Q``: (scores float32, indices int64), (q, k),
    best first.

    Q: (q, d), X: (n, d) C-contiguous float32 (unit rows for cosine; centred for euclidean); k <= n.
    x_sq_norms: (n,) squared norms of X's rows (euclidean; computed here when None).
    exclude_self: Q is X (row i of Q is point i): point i's score against itself is -inf, so it comes
    last, and only when k = n.
    working_memory: bytes of one score tile (:func:`tile_budget`).
    engine: "torch" or "numpy" (:data:`ENGINES`); None: :func:`default_engine` of the number of queries.
    precision: "fp32", "bf16" (the certified bf16 first pass of :mod:`.bf16`, cosine and torch only) or
    None: :func:`default_precision`. Both give the same candidates (the bf16 pass re-scores in float32
    every candidate its error bound cannot rule out).
    stats: a dict to receive the bf16 pass's counts (``bf16_queries``, ``fp32_fallback``,
    ``candidates_mean``), when it runs.

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
    precision = default_precision(n, metric, engine) if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and (metric != "cosine" or engine != "torch"):
        raise ValueError("the bf16 first pass scores cosine with torch only")
    budget = tile_budget(X, working_memory, nq * k)
    own = np.arange(nq) if exclude_self else None
    if precision == "bf16":
        from .bf16 import bf16_topk

        rows, _ = tile_shape(nq, n, budget)
        # a bf16 score tile and a bf16 copy of the data's tile (2 (rows + d) bytes a column) in half the
        # budget: the rest for the tile's mask (rows bytes a column), oneDNN's reordered copy of the data's
        # tile and the candidates (with the whole budget: data + 25 % at 50k x 2048, against + 15 % for the
        # float32 pass; same run, before the pass reused its buffers: benchmarks/README.md)
        cols = budget // (4 * (rows + X.shape[1])) // COLUMN_STEP * COLUMN_STEP
        cols = even_columns(n, max(cols, COLUMN_STEP))
        fallback = functools.partial(_fp32_topk, X=X, k=k, bias=None, engine="torch", budget=budget)
        return bf16_topk(Q, X, k, own, rows, cols, fallback, stats)
    bias = None
    if metric == "euclidean":
        if x_sq_norms is None:
            from .distances import sq_norms

            x_sq_norms = sq_norms(X)
        bias = -np.asarray(x_sq_norms, dtype=np.float32)
    return _fp32_topk(Q, own, X=X, k=k, bias=bias, engine=engine, budget=budget)


def _fp32_topk(Q, own, *, X, k, bias, engine, budget):
    """:func:`topk_scores` by float32 products: ``own`` (q,) the row of X each query must leave out (or
    None)."""
    nq, n = len(Q), len(X)
    rows, cols = tile_shape(nq, n, budget)
    tiles, topk = (_torch_tiles, _torch_topk) if engine == "torch" else (_numpy_tiles, top_k)
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    for r, c, S in tiles(Q, X, bias, rows, cols):
        if c == 0:  # a new block of queries: the running best of its earlier tiles starts empty
            best = RunningBest(len(S), k)
        if own is not None:
            o = own[r : r + len(S)]
            hit = np.flatnonzero((o >= c) & (o < c + S.shape[1]))
            S[hit, o[hit] - c] = -np.inf
        best.add(*topk(S, min(k, S.shape[1])), c)
        if c + S.shape[1] == n:
            best.write(out_s[r : r + len(S)], out_i[r : r + len(S)])
    return out_s, out_i


def _torch_tiles(Q, X, bias, rows, cols):
    """(query offset, data offset, scores) of every tile: torch's GEMM into one reused buffer, handed out
    as a numpy view (valid until the next tile)."""
    import torch

    buf = np.empty(rows * cols, dtype=np.float32)
    with warnings.catch_warnings(), torch.no_grad():
        # read-only arrays (memory-mapped data): torch warns, nothing writes
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for r in range(0, len(Q), rows):
            qb = torch.from_numpy(Q[r : r + rows])
            for c in range(0, len(X), cols):
                # numpy slices and transposes (views), so that torch runs only its product: less of its
                # library is paged in (~1 MB of the fixed cost)
                xbT = torch.from_numpy(X[c : c + cols].T)
                S = buf[: len(qb) * xbT.shape[1]].reshape(len(qb), xbT.shape[1])
                if bias is None:
                    torch.mm(qb, xbT, out=torch.from_numpy(S))
                else:
                    torch.addmm(torch.from_numpy(bias[None, c : c + xbT.shape[1]]), qb, xbT, alpha=2.0,
                                out=torch.from_numpy(S))
                yield r, c, S


def _numpy_tiles(Q, X, bias, rows, cols):
    """:func:`_torch_tiles` with numpy's matrix product (sgemm through its BLAS): the engine of a few
    queries (a server answering one photo at a time: never a reason to load torch)."""
    buf = np.empty(rows * cols, dtype=np.float32)
    for r in range(0, len(Q), rows):
        qb = Q[r : r + rows]
        for c in range(0, len(X), cols):
            xb = X[c : c + cols]
            S = np.matmul(qb, xb.T, out=buf[: len(qb) * len(xb)].reshape(len(qb), len(xb)))
            if bias is not None:
                S *= 2.0
                S += bias[c : c + len(xb)]
            yield r, c, S


def _torch_topk(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (scores, columns) of each row of a score tile, unordered: ``torch.topk`` (threaded; the
    numpy engine's is :func:`.running.top_k`)."""
    import torch

    s, i = torch.topk(torch.from_numpy(S), k, dim=1, sorted=False)
    return s.numpy(), i.numpy()

