"""The one pair distance every index backend reports: agreement across backends, the stated error bound
(near ties, large and tiny norms, duplicates, awkward dimensions), independence from the query batch."""

import numpy as np
import pytest

from fashion.neighbors import APPROXIMATE_INDEXES, EXACT_INDEXES, build_index
from fashion.neighbors.distances import pair_sq_distances

METRICS = ("cosine", "euclidean")
BOUND_SQ = 7.9e-6  # relative error of a squared distance promised by pair_sq_distances (d = 2048)


def reference_sq(Q, X, idx):
    """float64 differences of the float32 rows: the reference the bound is stated against."""
    diff = X[idx].astype(np.float64) - Q.astype(np.float64)[:, None, :]
    return np.einsum("rkd,rkd->rk", diff, diff)


def datasets():
    rng = np.random.default_rng(11)
    base = np.abs(rng.normal(size=(1, 256))).astype(np.float32)
    yield "near ties", (base + rng.normal(0, 1e-3, (300, 256))).astype(np.float32)
    far = rng.normal(size=(1, 256)) * 1e4  # tight cluster far from the origin: no cancellation allowed
    yield "large norm", (far + rng.normal(0, 1e-1, (300, 256))).astype(np.float32)
    X = np.abs(rng.normal(size=(150, 256))).astype(np.float32)
    yield "duplicates", np.vstack([X, X[:150]])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name, X", list(datasets()), ids=[n for n, _ in datasets()])
def test_every_backend_reports_the_same_distance_for_the_same_pair(name, X, metric):
    seen: dict[tuple[int, int], float] = {}
    compared = 0
    Xd = X.astype(np.float64)
    if metric == "cosine":
        Xd = Xd / np.linalg.norm(Xd, axis=1, keepdims=True)
    for backend in EXACT_INDEXES + APPROXIMATE_INDEXES:
        dist, idx = build_index(backend, metric).fit(X).kneighbors(None, n_neighbors=5)
        diff = Xd[idx] - Xd[:, None, :]
        true = np.sqrt((diff**2).sum(-1)) if metric == "euclidean" else (diff**2).sum(-1) / 2
        np.testing.assert_allclose(dist, true, rtol=1e-5, atol=1e-6, err_msg=backend)  # the tests' promise
        for (row, col), value in zip(np.ndindex(idx.shape), dist.ravel()):
            pair = (row, int(idx[row, col]))
            compared += pair in seen
            assert seen.setdefault(pair, value) == value, (backend, pair)  # bitwise, whatever the backend
    assert compared > len(X)  # pairs found by several backends (how many depends on the ties)


@pytest.mark.parametrize(
    "d, scale",
    [(2048, 1.0), (1280, 1.0), (17, 1.0), (2053, 1.0), (2048, 1e30), (2048, 1e-30), (2048, 3e18)],
)
def test_pair_sq_distances_within_the_stated_bound(d, scale):
    rng = np.random.default_rng(d)
    X = (rng.normal(size=(64, d)) * scale).astype(np.float32)
    X[:8] = (0.1 + np.arange(8)[:, None] * 0.3).astype(np.float32)  # equal terms: worst case for float32 sums
    X[8] = X[9]  # an exact duplicate pair: distance 0
    idx = rng.integers(0, len(X), (len(X), 6))
    idx[9, 0] = 8
    got, want = pair_sq_distances(X, X, idx), reference_sq(X, X, idx)
    assert got.dtype == np.float64 and np.isfinite(got).all()
    assert got[9, 0] == 0.0
    np.testing.assert_array_equal(got == 0, want == 0)
    rel = np.abs(got - want)[want > 0] / want[want > 0]
    assert rel.max() <= BOUND_SQ, rel.max()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name", ["exact", "faiss-flat", "kdtree"])
def test_distances_do_not_depend_on_the_query_batch(name, metric):
    rng = np.random.default_rng(5)
    X = np.abs(rng.normal(size=(400, 640))).astype(np.float32)
    Q = np.abs(rng.normal(size=(30, 640))).astype(np.float32)
    index = build_index(name, metric).fit(X)
    whole = index.kneighbors(Q, 8)
    for row in (0, 17, 29):
        alone = index.kneighbors(Q[row : row + 1], 8)
        np.testing.assert_array_equal(alone[1][0], whole[1][row])
        np.testing.assert_array_equal(alone[0][0], whole[0][row])
