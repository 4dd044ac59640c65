"""Filtered search (``kneighbors(Q, k, allowed=...)``): the filter acts during the search, so every
query gets min(k, allowed) neighbours, all allowed, equal to brute force over the allowed rows (exact
backends, and any backend over at most SELECT_EXACT_MAX allowed rows); approximate backends above that
search with a faiss selector and keep their usual recall."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.neighbors import APPROXIMATE_INDEXES, EXACT_INDEXES, build_index


def _data(n=3000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, d)) * 3
    X = (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, d))).astype(np.float32)
    return X, X[rng.choice(n, 20, replace=False)] + rng.normal(scale=0.1, size=(20, d)).astype(np.float32)


def _brute(X, Q, rows, k):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    dist = 1.0 - Qn @ Xn[rows].T
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), rows[order]


@pytest.fixture(scope="module")
def fitted():
    X, Q = _data()
    params = {"faiss-ivfpq": {"factory": "IVF16,PQ8x8"}}
    return X, Q, {name: build_index(name, "cosine", **params.get(name, {})).fit(X)
                  for name in EXACT_INDEXES + APPROXIMATE_INDEXES}


@pytest.mark.parametrize("name", EXACT_INDEXES + APPROXIMATE_INDEXES)
@pytest.mark.parametrize("share", [0.003, 0.1, 0.6])
def test_filtered_search_equals_brute_force_over_the_allowed_rows(fitted, name, share):
    X, Q, indexes = fitted
    rng = np.random.default_rng(1)
    allowed = rng.random(len(X)) < share
    rows = np.flatnonzero(allowed)
    k = 10
    dist, idx = indexes[name].kneighbors(Q, n_neighbors=k, allowed=allowed)
    want_dist, want_idx = _brute(X, Q, rows, k)
    assert idx.shape == (len(Q), min(k, len(rows)))
    assert allowed[idx].all()
    np.testing.assert_allclose(dist, want_dist[:, :idx.shape[1]], atol=2e-5)
    assert (idx == want_idx[:, :idx.shape[1]]).mean() > 0.99  # ties aside


@pytest.mark.parametrize("name", EXACT_INDEXES + APPROXIMATE_INDEXES)
def test_fewer_allowed_rows_than_k_and_none(fitted, name):
    X, Q, indexes = fitted
    dist, idx = indexes[name].kneighbors(Q, n_neighbors=10, allowed=np.array([5, 2, 7, 2]))
    assert idx.shape == (len(Q), 3) and set(np.unique(idx)) == {2, 5, 7}
    assert (np.diff(dist, axis=1) >= 0).all()
    dist, idx = indexes[name].kneighbors(Q, n_neighbors=10, allowed=np.zeros(len(X), bool))
    assert idx.shape == dist.shape == (len(Q), 0)


@pytest.mark.parametrize("name", APPROXIMATE_INDEXES)
def test_approximate_backends_filter_inside_faiss_above_the_exact_limit(fitted, name):
    X, Q, indexes = fitted
    index = indexes[name]
    index.SELECT_EXACT_MAX = 0  # this instance only: the selector path, whatever the number of rows
    try:
        allowed = np.random.default_rng(2).random(len(X)) < 0.1
        dist, idx = index.kneighbors(Q, n_neighbors=10, allowed=allowed)
    finally:
        del index.SELECT_EXACT_MAX
    want = _brute(X, Q, np.flatnonzero(allowed), 10)[1]
    assert idx.shape == (len(Q), 10) and allowed[idx].all()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, want)])
    assert recall >= 0.9, recall


def test_bad_allowed_arguments_are_value_errors(fitted):
    X, Q, indexes = fitted
    index = indexes["exact"]
    with pytest.raises(ValueError, match="shape"):
        index.kneighbors(Q, allowed=np.ones(5, bool))
    with pytest.raises(ValueError, match="0..2999"):
        index.kneighbors(Q, allowed=np.array([0, 3000]))
    with pytest.raises(ValueError, match="query vectors"):
        index.kneighbors(None, allowed=np.ones(len(X), bool))
