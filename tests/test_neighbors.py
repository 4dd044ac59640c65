"""fashion.neighbors: every backend against brute force, self-exclusion, duplicates, save/load, errors."""

import numpy as np
import pytest

from fashion.neighbors import (
    APPROXIMATE_INDEXES,
    EXACT_INDEXES,
    INDEXES,
    ExactIndex,
    build_index,
    load_index,
)

METRICS = ("cosine", "euclidean")


def blobs(n=600, d=16, centers=8, seed=0, std=1.0):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, n_features=d, centers=centers, cluster_std=std, random_state=seed)
    return np.abs(X).astype(np.float32)  # non-negative, like post-ReLU features


def brute(X, Q, metric, exclude_self=False):
    """float64 (q, n) distance matrix."""
    X, Q = X.astype(np.float64), Q.astype(np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        D = 1.0 - Q @ X.T
    else:
        D = np.sqrt(np.maximum(0, (Q**2).sum(1)[:, None] + (X**2).sum(1)[None] - 2 * Q @ X.T))
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    return D


def assert_matches_brute(D, dist, idx, tol=1e-5):
    """Distances equal (to tol); indices equal wherever the distance is not tied at the k-th position."""
    k = idx.shape[1]
    ref = np.sort(D, axis=1)[:, :k]
    np.testing.assert_allclose(dist, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.take_along_axis(D, idx, 1), ref, rtol=tol, atol=tol)
    assert (np.diff(dist, axis=1) >= 0).all()
    for row in range(len(idx)):
        kth = ref[row, -1]
        sure = set(np.flatnonzero(D[row] < kth - tol))  # strictly inside the top k
        assert sure <= set(idx[row].tolist()), row
        assert len(set(idx[row].tolist())) == k


@pytest.fixture(scope="module")
def data():
    X = blobs()
    rng = np.random.default_rng(1)
    Q = np.abs(X[rng.choice(len(X), 50)] + rng.normal(0, 0.5, (50, X.shape[1]))).astype(np.float32)
    return X, Q


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name", EXACT_INDEXES)
def test_exact_backends_match_brute_force(name, metric, data):
    X, Q = data
    index = build_index(name, metric).fit(X)
    dist, idx = index.kneighbors(Q, n_neighbors=10)
    assert dist.dtype == np.float32 and idx.dtype == np.int64 and dist.shape == idx.shape == (len(Q), 10)
    assert_matches_brute(brute(X, Q, metric), dist, idx)
    dist, idx = index.kneighbors(None, n_neighbors=7)
    assert idx.shape == (len(X), 7)
    assert not (idx == np.arange(len(X))[:, None]).any()
    assert_matches_brute(brute(X, X, metric, exclude_self=True), dist, idx)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name", APPROXIMATE_INDEXES)
def test_approximate_backends_recall(name, metric):
    X = blobs(n=3000, d=32, centers=20, seed=3)
    dist, idx = build_index(name, metric).fit(X).kneighbors(None, n_neighbors=10)
    D = brute(X, X, metric, exclude_self=True)
    ref = np.argsort(D, axis=1, kind="stable")[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, ref)])
    assert recall >= 0.95, recall
    # reported distances are the true distances of the returned neighbours
    np.testing.assert_allclose(dist, np.take_along_axis(D, idx, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name", EXACT_INDEXES + APPROXIMATE_INDEXES)
def test_duplicates_find_each_other_not_themselves(name, metric, data):
    X = np.vstack([data[0][:200], data[0][:5]])  # rows 200..204 duplicate rows 0..4
    dist, idx = build_index(name, metric).fit(X).kneighbors(None, n_neighbors=3)
    for a in range(5):
        b = 200 + a
        assert idx[a, 0] == b and idx[b, 0] == a
        assert dist[a, 0] == pytest.approx(0, abs=1e-6) and dist[b, 0] == pytest.approx(0, abs=1e-6)
    assert not (idx == np.arange(len(X))[:, None]).any()


@pytest.mark.parametrize("name", ("exact", "faiss-flat", "kdtree"))
def test_more_duplicates_than_k(name):
    X = np.vstack([np.ones((8, 4)), np.arange(20, dtype=float).reshape(5, 4) + 5]).astype(np.float32)
    dist, idx = build_index(name, "euclidean").fit(X).kneighbors(None, n_neighbors=3)
    for row in range(8):
        assert row not in idx[row]
        assert set(idx[row]) <= set(range(8)) and (dist[row] == 0).all()


@pytest.mark.parametrize("name", [n for n in INDEXES if n != "auto"])
def test_save_load_round_trip(name, data, tmp_path):
    X, Q = data
    index = build_index(name, "cosine").fit(X)
    path = index.save(tmp_path / f"{name}.npz")
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    with np.load(path, allow_pickle=False) as arrays:  # no pickle anywhere in the file
        assert all(arrays[key].dtype != object for key in arrays.files)
    loaded = load_index(path)
    assert type(loaded) is type(index) and loaded.metric == "cosine" and loaded.params == index.params
    for a, b in zip(index.kneighbors(Q, 5), loaded.kneighbors(Q, 5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", [n for n in INDEXES if n != "auto"])
def test_restore_is_the_public_contract_load_index_uses(name, data):
    """Every backend's saved form is its public ``state_arrays`` / ``restore`` pair (what load_index calls):
    a new index restored from the fitted rows and those arrays is fitted and answers as the saved one;
    arrays that do not fit the rows are refused."""
    X, Q = data
    index = build_index(name, "cosine").fit(X)
    arrays = index.state_arrays()
    restored = build_index(name, "cosine")
    assert restored.restore(index.fitted_rows.copy(), arrays) is restored and restored.n_samples_fit_ == len(X)
    for a, b in zip(index.kneighbors(Q, 5), restored.kneighbors(Q, 5)):
        np.testing.assert_array_equal(a, b)
    if arrays:  # a backend holding a faiss index checks it against the rows
        with pytest.raises(ValueError, match="saved data 599 x 16"):
            build_index(name, "cosine").restore(index.fitted_rows[:-1].copy(), arrays)


def test_auto_is_an_exact_backend(data):
    index = build_index("auto")
    assert index.name in EXACT_INDEXES and index.exact
    assert isinstance(build_index(), ExactIndex)


def test_an_exact_index_saved_with_the_old_engine_knobs_still_loads(data, tmp_path):
    """index.npz files written before the torch engine was dropped carry block_size/engine params."""
    import json

    X, Q = data
    path = build_index("exact", "cosine").fit(X).save(tmp_path / "old.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {key: z[key] for key in z.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["params"] = {"block_size": None, "engine": "auto"}
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    loaded = load_index(path)
    assert loaded.params == {"working_memory": None}
    np.testing.assert_array_equal(loaded.kneighbors(Q, 5)[1], build_index("exact").fit(X).kneighbors(Q, 5)[1])


def test_k_equal_n_with_queries_and_n_minus_1_without():
    X = np.eye(4, dtype=np.float32) + 0.1
    index = build_index("exact", "euclidean").fit(X)
    assert index.kneighbors(X[:2], 4)[1].shape == (2, 4)
    assert index.kneighbors(None, 3)[1].shape == (4, 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda i: i.kneighbors(None, 4), r"n_neighbors must be <= 3 \(with X=None each of the 4 fitted points"),
        (lambda i: i.kneighbors(np.ones((1, 3)), 5), r"n_neighbors must be <= 4 \(the fitted points\), got 5"),
        (lambda i: i.kneighbors(None, 0), "n_neighbors must be >= 1, got 0"),
        (lambda i: i.kneighbors(None, 2.5), "2.5"),
        (lambda i: i.kneighbors(np.ones((1, 5)), 1), "5 features"),
        (lambda i: i.kneighbors(np.ones(3), 1), "2-D"),
        (lambda i: i.kneighbors(np.empty((0, 3)), 1), "empty"),
        (lambda i: i.kneighbors(np.array([[1, 2, 3.0], [1, np.inf, 0]]), 1), "row 1"),
    ],
)
def test_query_errors(call, message):
    index = build_index("exact", "euclidean").fit(np.arange(12, dtype=float).reshape(4, 3))
    with pytest.raises(ValueError, match=message):
        call(index)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.empty((0, 3)), "empty"),
        (np.ones(3), "2-D"),
        (np.ones((2, 3, 1)), "2-D"),
        (np.array([[1.0, 2.0], [3.0, 4.0], [np.nan, 1.0]]), "row 2 contains NaN"),
        (np.array([[1e39, 1.0]]), "row 0"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_fit_errors(X, message):
    with pytest.raises(ValueError, match=message):
        build_index("exact", "euclidean").fit(X)


def test_other_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown index 'annoy'.*exact.*faiss-hnsw"):
        build_index("annoy")
    with pytest.raises(ValueError, match="unknown metric 'manhattan'.*cosine"):
        build_index("exact", metric="manhattan")
    with pytest.raises(ValueError, match="unknown parameter"):
        build_index("exact", nprobe=3)
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        build_index("exact", "cosine").fit(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="not fitted"):
        build_index("exact").kneighbors(None, 1)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a saved fashion index"):
        load_index(tmp_path / "other.npz")


def test_ivf_big_batch_search_equals_its_per_query_search(capsys, monkeypatch):
    """All-pairs IVF search goes cell by cell (faiss big_batch_search): same neighbours as the index's
    own per-query search, and nothing printed."""
    pytest.importorskip("faiss")
    from fashion.neighbors import FaissIVFIndex

    rng = np.random.default_rng(3)
    X = (rng.normal(size=(1500, 24)) + 4 * rng.normal(size=(12, 24))[rng.integers(0, 12, 1500)]).astype(np.float32)
    index = build_index("faiss-ivf", "cosine", nprobe=4).fit(X)
    assert len(X) >= FaissIVFIndex.BIG_BATCH_PER_LIST * index._index.nlist  # the big-batch path
    batched = index.kneighbors(None, 8)
    monkeypatch.setattr(FaissIVFIndex, "BIG_BATCH_PER_LIST", 10**9)  # the per-query path
    single = index.kneighbors(None, 8)
    assert (batched[1] == single[1]).mean() > 0.999  # equal up to the order of exact ties
    np.testing.assert_allclose(batched[0], single[0], atol=1e-6)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("n, expected", [(100_000, 16), (3_781, 49), (500, 89)])
def test_ivf_default_nprobe_scans_enough_candidates(n, expected):
    """Default nprobe: >= 750 candidates per query (small collections: more cells), at least 16."""
    pytest.importorskip("faiss")
    from fashion.neighbors import FaissIVFIndex

    index = FaissIVFIndex("cosine")
    nlist = index._nlist(n)

    class Fake:  # the two attributes _configure reads, without training k-means on n points
        ntotal, nprobe = n, None

    Fake.nlist = nlist
    index._index = Fake()
    index._configure()
    assert index._index.nprobe == min(expected, nlist)
    assert build_index("faiss-ivf", nprobe=5).params["nprobe"] == 5  # an explicit value wins


def test_auto_picks_the_index_by_size(monkeypatch):
    from fashion.neighbors import AUTO_EXACT_MAX, auto_index_name

    monkeypatch.delenv("FASHION_AUTO_INDEX", raising=False)
    assert auto_index_name() == auto_index_name(AUTO_EXACT_MAX) == "exact"
    assert auto_index_name(AUTO_EXACT_MAX + 1) == "faiss-ivfpq"
    monkeypatch.setenv("FASHION_AUTO_INDEX", "faiss-hnsw")
    assert auto_index_name(10 * AUTO_EXACT_MAX) == "faiss-hnsw"
