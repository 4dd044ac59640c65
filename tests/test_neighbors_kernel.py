"""The exact kernel (tiled GEMM + streaming top-k) against numpy brute force: random, duplicated and
tied data, both metrics, all-pairs and explicit queries, k = 1 and k = n - 1, tiles far smaller than
the data (many merges), float64 input; ties ordered by index."""

import functools

import numpy as np
import pytest

from fashion.neighbors import build_index, kernel
from fashion.neighbors.exact import TIE_MARGIN
from fashion.neighbors.kernel import MIN_TILE_BYTES, WORKING_MEMORY, tile_budget, tile_shape, topk_scores

METRICS = ("cosine", "euclidean")
# working_memory values: 256 bytes = tiles of 2 x 32 scores; 1000 bytes = 5 x 50 (uneven edges); default
TILES = (256, 1000, None)


def brute(X, Q, metric, exclude_self=False):
    """float64 (q, n) distances of the float32 rows, the reference."""
    X, Q = X.astype(np.float32).astype(np.float64), Q.astype(np.float32).astype(np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    D = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    if metric == "cosine":
        D = D**2 / 2
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    return D


def by_index(D, k):
    """The reference answer: each row's k smallest distances, ties by index."""
    order = np.lexsort((np.broadcast_to(np.arange(D.shape[1]), D.shape), D), axis=1)[:, :k]
    return np.take_along_axis(D, order, 1), order


def assert_exact(D, dist, idx, tol=1e-5):
    """Distances are the k smallest; every index outside a tie at the k-th distance is the reference's."""
    k = idx.shape[1]
    ref_d, _ = by_index(D, k)
    np.testing.assert_allclose(dist, ref_d, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.take_along_axis(D, idx, 1), dist, rtol=tol, atol=tol)
    for row in range(len(idx)):
        sure = set(np.flatnonzero(D[row] < ref_d[row, -1] - tol).tolist())
        assert sure <= set(idx[row].tolist()) and len(set(idx[row].tolist())) == k, row


def random_data(n=150, d=24, seed=0):
    return np.abs(np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32)


def copies_data(seed=1):
    """50 distinct points, three exact copies of each, shuffled: every query has groups of 3 equal distances."""
    X = random_data(50, 20, seed)
    return X[np.random.default_rng(seed).permutation(np.repeat(np.arange(50), 3))]


def grid_data(seed=2):
    """Small integer vectors: many exact duplicates and large groups of equal distances."""
    return np.random.default_rng(seed).integers(1, 4, (120, 4)).astype(np.float32)


DATA = {"random": random_data, "copies": copies_data, "grid": grid_data}


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", DATA)
def test_all_pairs_match_brute_force(kind, metric, tile):
    X = DATA[kind]()
    index = build_index("exact", metric, working_memory=tile).fit(X)
    D = brute(X, X, metric, exclude_self=True)
    for k in (1, 7, len(X) - 1):
        dist, idx = index.kneighbors(None, k)
        assert dist.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (len(X), k)
        assert not (idx == np.arange(len(X))[:, None]).any()  # itself left out by index, duplicates kept
        assert_exact(D, dist, idx)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", DATA)
def test_queries_match_brute_force(kind, metric, tile):
    X = DATA[kind]()
    Q = np.vstack([X[::7], random_data(9, X.shape[1], seed=5) * X.max()])  # members (distance 0) and others
    index = build_index("exact", metric, working_memory=tile).fit(X)
    D = brute(X, Q, metric)
    for k in (1, 10, len(X)):
        dist, idx = index.kneighbors(Q, k)
        assert idx.shape == (len(Q), k)
        assert_exact(D, dist, idx)


@pytest.mark.parametrize("metric", METRICS)
def test_ties_are_broken_by_index(metric):
    """Groups of equal distances no larger than TIE_MARGIN + 1: exactly the reference, ties by index,
    whatever the tiling; copies of the query find each other first."""
    X = copies_data()
    assert 3 <= TIE_MARGIN + 1
    D = brute(X, X, metric, exclude_self=True)
    for tile in TILES:
        for k in (1, 2, 4, 5, 8):
            dist, idx = build_index("exact", metric, working_memory=tile).fit(X).kneighbors(None, k)
            np.testing.assert_array_equal(idx, by_index(D, k)[1], err_msg=f"tile={tile} k={k}")
            assert (dist[:, :2] == 0).all()  # the two other copies, at distance exactly 0


def test_float64_input_gives_the_float32_answer():
    X = random_data(80, 16).astype(np.float64) + 1e-9
    for metric in METRICS:
        a = build_index("exact", metric, working_memory=256).fit(X).kneighbors(None, 5)
        b = build_index("exact", metric).fit(X.astype(np.float32)).kneighbors(None, 5)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("engine", ["torch", "numpy"])
def test_kernel_scores_and_self_exclusion(engine):
    X = random_data(90, 12)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    topk_scores = functools.partial(kernel.topk_scores, engine=engine)
    for tile in TILES:
        s, i = topk_scores(Xn, Xn, 6, "cosine", exclude_self=True, working_memory=tile)
        assert s.dtype == np.float32 and i.dtype == np.int64
        assert (np.diff(s, axis=1) <= 0).all() and not (i == np.arange(90)[:, None]).any()
        full = Xn.astype(np.float64) @ Xn.T.astype(np.float64)
        np.fill_diagonal(full, -np.inf)
        np.testing.assert_allclose(s, -np.sort(-full, axis=1)[:, :6], atol=1e-6)
        np.testing.assert_allclose(np.take_along_axis(full, i, 1), s, atol=1e-6)
        # k = n: every other point, then itself last at -inf
        s, i = topk_scores(Xn, Xn, 90, "cosine", exclude_self=True, working_memory=tile)
        assert (i[:, -1] == np.arange(90)).all() and np.isneginf(s[:, -1]).all()
        Xc = X - X.mean(0)  # euclidean: 2 q.x - ||x||^2 ranks like -||q - x||^2
        s, i = topk_scores(Xc[:7], Xc, 3, "euclidean", working_memory=tile)
        D = ((Xc[:7, None, :].astype(np.float64) - Xc[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(i, np.argsort(D, axis=1)[:, :3])
    with pytest.raises(ValueError, match="k must be in 1..90"):
        topk_scores(Xn, Xn, 91, "cosine")


def test_tiles_stay_within_the_budget():
    assert tile_shape(100_000, 100_000, WORKING_MEMORY) == (2048, 14336)  # 7 even tiles, not 6 + a sliver
    for q, n, budget in [(8000, 8000, 15_625_000), (7, 3, 2**20), (1, 10**6, 2**27), (10**5, 5, 256)]:
        rows, cols = tile_shape(q, n, budget)
        assert 1 <= rows <= q and 1 <= cols <= n and rows * cols * 4 <= max(budget, 256)
    X = np.zeros((8000, 2048), dtype=np.float32)
    assert tile_budget(X) == X.nbytes // 16  # a sixteenth of the data: peak <= data + 25 %
    assert tile_budget(X, 10**6) == 10**6
    assert tile_budget(np.zeros((10, 10), dtype=np.float32)) == MIN_TILE_BYTES


class _Data:
    """Stands for an (n, d) float32 matrix in the memory rule (only its ``nbytes`` is read)."""

    def __init__(self, n, d=2048):
        self.nbytes = n * d * 4


@pytest.mark.parametrize("n", [8000, 20_000, 50_000, 100_000, 1_000_000])
def test_the_tile_rule_keeps_the_memory_target_and_wide_tiles(n):
    """Tile + fixed costs + candidates within a fifth of the data wherever the data is large enough for
    it; never narrower than a sixteenth of the data (small data) nor wider than WORKING_MEMORY; from 50k
    x 2048 on at least as wide as the old rule's eighth (narrow tiles cost 10 % at 50k)."""
    X, k = _Data(n), 18
    budget = tile_budget(X, None, n * k)
    rows, cols = tile_shape(n, n, budget)
    assert rows * cols * 4 <= budget <= WORKING_MEMORY
    assert budget >= X.nbytes // kernel.DATA_SHARE or budget == WORKING_MEMORY
    fixed = kernel.FIXED_BYTES + kernel.CANDIDATE_BYTES * n * k
    if budget > X.nbytes // kernel.DATA_SHARE:  # the share, not the floor of a sixteenth, decided
        assert budget + fixed <= kernel.TILE_SHARE * X.nbytes
    if 50_000 <= n and budget < WORKING_MEMORY:  # tiles as wide as the old rule's eighth of the data, or wider
        eighth = tile_shape(n, n, X.nbytes // 8)
        assert rows >= eighth[0] and cols >= eighth[1], ((rows, cols), eighth)
    assert tile_budget(X, 2**20, n * k) == 2**20  # a working_memory below both: the caller's
    # the columns are spread evenly: no sliver of a last tile (a sixteenth at 50k left one of 848 columns)
    last = n - (-(-n // cols) - 1) * cols
    assert cols % kernel.COLUMN_STEP == 0 and last >= cols / 2, (cols, last)


def test_the_share_takes_over_from_a_sixteenth_at_its_boundary():
    """Below the boundary a sixteenth of the data; above it the share (a fifth less the fixed costs and
    candidates), continuous and growing with n."""
    k = 18
    per_row = 2048 * 4 * (kernel.TILE_SHARE - 1 / kernel.DATA_SHARE) - kernel.CANDIDATE_BYTES * k
    boundary = int(kernel.FIXED_BYTES / per_row)  # share == a sixteenth here
    below, above = _Data(boundary - 50), _Data(boundary + 50)
    assert tile_budget(below, None, (boundary - 50) * k) == below.nbytes // kernel.DATA_SHARE
    assert tile_budget(above, None, (boundary + 50) * k) > above.nbytes // kernel.DATA_SHARE


def test_exact_matches_faiss_flat_on_random_data():
    pytest.importorskip("faiss")
    X = random_data(400, 64, seed=9)
    for metric in METRICS:
        a = build_index("exact", metric, working_memory=4096).fit(X).kneighbors(None, 10)
        b = build_index("faiss-flat", metric).fit(X).kneighbors(None, 10)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_numpy_path_gives_the_torch_paths_candidates(metric):
    """A process without torch (a server of a saved OpenVINO network) scores with numpy: same neighbours."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 48)).astype(np.float32)
    if metric == "cosine":
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q = X[:70] + 0.01 * rng.standard_normal((70, 48)).astype(np.float32)
    for tile in (None, 2**16):
        s_np, i_np = topk_scores(Q, X, 9, metric, working_memory=tile, engine="numpy")
        s_t, i_t = topk_scores(Q, X, 9, metric, working_memory=tile, engine="torch")
        assert np.array_equal(i_np, i_t) and np.allclose(s_np, s_t, atol=1e-4)
    _, own = topk_scores(X, X, 1, metric, exclude_self=True, working_memory=2**16, engine="numpy")
    assert (own[:, 0] != np.arange(len(X))).all()


def test_the_engine_is_chosen_by_the_number_of_queries(monkeypatch):
    """Named, it is used; unnamed, torch from TORCH_FROM_QUERIES queries on (where installed), else numpy:
    whatever the process imported before."""
    assert kernel.default_engine(kernel.TORCH_FROM_QUERIES - 1) == "numpy"
    assert kernel.default_engine(kernel.TORCH_FROM_QUERIES) == "torch"  # installed here
    used = []
    numpy_tiles = kernel._numpy_tiles
    monkeypatch.setattr(kernel, "_numpy_tiles", lambda *a: used.append("numpy") or numpy_tiles(*a))
    Xn = random_data(300, 8)
    Xn /= np.linalg.norm(Xn, axis=1, keepdims=True)
    kernel.topk_scores(Xn[:3], Xn, 2, "cosine")
    assert used == ["numpy"]
    s, i = kernel.topk_scores(Xn, Xn, 2, "cosine")  # 300 queries: torch's path (not the patched numpy one)
    assert used == ["numpy"] and i.shape == (300, 2)
    kernel.topk_scores(Xn, Xn, 2, "cosine", engine="numpy")
    assert used == ["numpy", "numpy"]
    with pytest.raises(ValueError, match="engine must be one of"):
        kernel.topk_scores(Xn, Xn, 2, "cosine", engine="gpu")


# -- the certified bf16 first pass (fashion.neighbors.bf16) ---------------------------------------------


def _unit(X):
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def test_the_bf16_error_bound_holds_for_every_pair():
    """|q.x - (offset + y)| <= u |y| + C_q for the bf16 product y of q^.x^ - offset (the offset column),
    offset 0 and offset near the scores, on random and clustered rows."""
    torch = pytest.importorskip("torch")
    from fashion.neighbors import bf16

    rng = np.random.default_rng(4)
    for X in (_unit(rng.standard_normal((300, 256))), _unit(np.abs(rng.normal(size=(300, 256)) + 3))):
        d = X.shape[1]
        norms = bf16.row_norms(X)
        C = bf16.error_constants(norms, norms, d)
        truth = X.astype(np.float64) @ X.T.astype(np.float64)
        for offset in (0.0, float(np.median(truth))):
            c = float(torch.tensor(offset).to(torch.bfloat16))  # a bf16 number, as the pass uses
            q = torch.zeros((len(X), d + bf16.PAD), dtype=torch.bfloat16)
            q[:, :d], q[:, d] = torch.from_numpy(X), -c
            x = torch.zeros((len(X), d + bf16.PAD), dtype=torch.bfloat16)
            x[:, :d], x[:, d] = torch.from_numpy(X), 1
            y = torch.mm(q, x.T).double().numpy()
            err = np.abs(truth - (c + y))
            bound = bf16.U_BF16 * np.abs(y) + (C + 3 * (d + 1) * bf16.U_FP32 * abs(c))[:, None]
            assert (err <= bound).all(), float((err / bound).max())
            assert (err > bound / 20).any()  # not vacuous: the bound is within 20x of the worst error


@pytest.mark.parametrize("tile", [4096, 40_000, None])
@pytest.mark.parametrize("kind", DATA)
def test_the_bf16_pass_gives_the_float32_answer(kind, tile):
    """Forced on (any CPU), at tiles of a few columns to the whole data: every returned score is the
    float32 kernel's k-th best list's, and each index's true score is its score."""
    X = _unit(DATA[kind]())
    full = X.astype(np.float64) @ X.T.astype(np.float64)
    np.fill_diagonal(full, -np.inf)
    for k in (1, 7, len(X) - 1, len(X)):
        stats = {}
        s, i = topk_scores(X, X, k, "cosine", exclude_self=True, working_memory=tile, engine="torch",
                           precision="bf16", stats=stats)
        s32, _ = topk_scores(X, X, k, "cosine", exclude_self=True, working_memory=tile, engine="torch",
                             precision="fp32")
        assert (np.diff(s, axis=1) <= 0).all() and i.min() >= 0
        np.testing.assert_allclose(s, s32, atol=1e-6)
        np.testing.assert_allclose(np.take_along_axis(full, i, 1), s, atol=1e-6)
        assert stats["bf16_queries"] + stats["fp32_fallback"] == len(X)
        if k < len(X):
            assert not (i == np.arange(len(X))[:, None]).any()
        else:  # k = n: every other point, then itself last at -inf, as the float32 kernel
            assert (i[:, -1] == np.arange(len(X))).all() and np.isneginf(s[:, -1]).all()


def test_the_bf16_pass_falls_back_where_the_candidates_blow_up(monkeypatch):
    """Queries with more candidates than MAX_WINDOW (here 3; the copies data has groups of 3 equal
    rows) go to the float32 kernel: same answer; and with queries other than the data."""
    from fashion.neighbors import bf16

    X = _unit(copies_data())
    monkeypatch.setattr(bf16, "MAX_WINDOW", 3)
    stats = {}
    s, i = topk_scores(X, X, 5, "cosine", exclude_self=True, engine="torch", precision="bf16", stats=stats)
    assert stats["fp32_fallback"] > 0
    s32, _ = topk_scores(X, X, 5, "cosine", exclude_self=True, engine="torch", precision="fp32")
    np.testing.assert_allclose(s, s32, atol=1e-6)
    assert not (i == np.arange(len(X))[:, None]).any()
    Q = _unit(random_data(20, X.shape[1], seed=8))
    s, i = topk_scores(Q, X, 4, "cosine", engine="torch", precision="bf16")
    np.testing.assert_allclose(s, topk_scores(Q, X, 4, "cosine", engine="torch", precision="fp32")[0], atol=1e-6)


def test_exact_with_the_bf16_pass_matches_brute_force(monkeypatch):
    """The default rule turned on at every size (BF16_FROM_DATA = 0): the exact (cosine) index's answer is
    brute force's, ties by index, on the tied data; euclidean stays float32 (its results are the float32
    kernel's, tested above)."""
    from fashion.neighbors import bf16

    monkeypatch.setattr(kernel, "BF16_FROM_DATA", 0)
    monkeypatch.setattr(kernel, "TORCH_FROM_QUERIES", 1)
    monkeypatch.setattr(bf16, "native_bf16", lambda: True)
    assert kernel.default_precision(10, "cosine", "torch") == "bf16"
    assert kernel.default_precision(10, "euclidean", "torch") == "fp32"
    for kind in DATA:
        X = DATA[kind]()
        D = brute(X, X, "cosine", exclude_self=True)
        for tile in (256, None):
            index = build_index("exact", "cosine", working_memory=tile).fit(X)
            for k in (1, 7):
                assert_exact(D, *index.kneighbors(None, k))
    X = copies_data()
    np.testing.assert_array_equal(build_index("exact", "cosine").fit(X).kneighbors(None, 4)[1],
                                  by_index(brute(X, X, "cosine", exclude_self=True), 4)[1])


def test_the_precision_rule(monkeypatch):
    from fashion.neighbors import bf16

    big = kernel.BF16_FROM_DATA
    monkeypatch.setattr(bf16, "native_bf16", lambda: True)
    assert kernel.default_precision(big, "cosine", "torch") == "bf16"
    assert kernel.default_precision(big - 1, "cosine", "torch") == "fp32"
    assert kernel.default_precision(big, "cosine", "numpy") == "fp32"
    assert kernel.default_precision(big, "euclidean", "torch") == "fp32"
    monkeypatch.setattr(bf16, "native_bf16", lambda: False)  # emulated bf16: no faster than float32
    assert kernel.default_precision(big, "cosine", "torch") == "fp32"
    X = _unit(random_data(30, 8))
    with pytest.raises(ValueError, match="cosine with torch only"):
        topk_scores(X, X, 2, "euclidean", engine="torch", precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        topk_scores(X, X, 2, "cosine", precision="fp16")


def test_the_bound_rounds_to_bf16_as_torch_does():
    """The bound's r = ||x - bf16(x)|| needs torch's rounding (nearest, ties to even) of every element."""
    torch = pytest.importorskip("torch")
    from fashion.neighbors import bf16

    rng = np.random.default_rng(6)
    X = np.concatenate([rng.standard_normal(20_000), rng.standard_normal(2000) * 1e-30,
                        1 + np.arange(-600, 600) * 2.0**-16, [0.0, -0.0, 3.4e38, np.inf, -np.inf]]).astype(np.float32)
    np.testing.assert_array_equal(bf16.to_bf16(X), torch.from_numpy(X).to(torch.bfloat16).float().numpy())


@pytest.mark.parametrize("pair_bytes", [0, 10**9])
@pytest.mark.parametrize("kind", DATA)
def test_the_bf16_pass_gives_the_same_answer_with_the_first_tile_taken_at_once_or_last(monkeypatch, kind, pair_bytes):
    """The first tile's pairs, taken from it at once (PAIR_BYTES 0) or from a copy of its scores against
    the block's final bound (PAIR_BYTES huge: every first tile waits): the float32 kernel's answer, with
    queries in several blocks and the data in several tiles."""
    from fashion.neighbors import bf16

    monkeypatch.setattr(bf16, "PAIR_BYTES", pair_bytes)
    X = _unit(DATA[kind]())
    for k in (1, 7):
        stats = {}
        s, i = topk_scores(X, X, k, "cosine", exclude_self=True, working_memory=4096, engine="torch",
                           precision="bf16", stats=stats)
        s32, i32 = topk_scores(X, X, k, "cosine", exclude_self=True, working_memory=4096, engine="torch",
                               precision="fp32")
        np.testing.assert_allclose(s, s32, atol=1e-6)
        assert not (i == np.arange(len(X))[:, None]).any()
        if kind == "random":  # no tied scores: the same ids, every query through the bf16 pass
            assert np.array_equal(i, i32) and stats["bf16_queries"] == len(X) and stats["fp32_fallback"] == 0
