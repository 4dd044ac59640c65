"""fashion.insight.duplicates: pairs from a top-K table, clusters as connected components, counts."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.insight.duplicates import (connected_clusters, dedupe_pairs, exact_copy_pairs, knn_pairs, leaked_rows,
                                        pair_cosine_distances, pair_summary)


def _components_by_union_find(n, pairs):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    return [find(x) for x in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_clusters_are_the_connected_components(seed):
    rng = np.random.default_rng(seed)
    n = 60
    a, b = rng.integers(0, n, 40), rng.integers(0, n, 40)
    keep = a != b
    a, b = a[keep], b[keep]
    got = connected_clusters(n, a, b)
    roots = _components_by_union_find(n, zip(a.tolist(), b.tolist()))
    in_pair = np.zeros(n, bool)
    in_pair[a] = in_pair[b] = True
    assert (got[~in_pair] == -1).all()
    for x in range(n):
        for y in range(n):
            if in_pair[x] and in_pair[y]:
                assert (got[x] == got[y]) == (roots[x] == roots[y])
    sizes = np.bincount(got[got >= 0])
    assert list(sizes) == sorted(sizes, reverse=True)  # largest first
    assert set(got[got >= 0]) == set(range(len(sizes)))


def test_no_pairs_no_clusters():
    assert connected_clusters(3, np.zeros(0, int), np.zeros(0, int)).tolist() == [-1, -1, -1]
    assert connected_clusters(0, np.zeros(0, int), np.zeros(0, int)).tolist() == []


def test_knn_pairs_threshold_order_and_dedupe():
    q = np.array([0, 1, 2, 3])
    nb = np.array([[1, 3], [0, 2], [1, 2], [0, 1]])  # 2's own row appears in its list: dropped
    d = np.array([[0.10, 0.30], [0.05, 0.20], [0.20, 0.0], [0.30, 0.9]])
    a, b, dist = knn_pairs(q, nb, d, threshold=0.2)
    assert list(zip(a.tolist(), b.tolist(), dist.tolist())) == [(0, 1, 0.05), (1, 2, 0.2)]
    a, b, _ = knn_pairs(q, nb, d, threshold=0.3)
    assert (0, 3) in set(zip(a.tolist(), b.tolist())) and (a < b).all()
    with pytest.raises(ValueError):
        knn_pairs(q, nb, d[:, :1], 0.1)


def test_dedupe_keeps_smallest_distance():
    a, b, d = dedupe_pairs(np.array([2, 1, 2]), np.array([1, 2, 3]), np.array([0.3, 0.1, 0.2]))
    assert list(zip(a.tolist(), b.tolist(), d.tolist())) == [(1, 2, 0.1), (2, 3, 0.2)]


def test_exact_copy_pairs_connect_each_group():
    a, b = exact_copy_pairs(["h1", "h2", "h1", "h1", None, "h2", ""])
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 2), (0, 3), (1, 5)]


def test_pair_cosine_distances_match_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20, 8)).astype(np.float32)
    a, b = rng.integers(0, 20, 30), rng.integers(0, 20, 30)
    want = 1 - (v[a] * v[b]).sum(1) / np.linalg.norm(v[a], axis=1) / np.linalg.norm(v[b], axis=1)
    assert pair_cosine_distances(v, a, b, chunk=7) == pytest.approx(np.clip(want, 0, 2), abs=1e-6)


def test_cross_split_and_label_disagreeing_pairs_are_counted():
    splits = ["train", "train", "test", "valid", "test", "train"]
    labels = ["shirt", "shirt", "shirt", "pants", "dress", "pants"]
    a, b = np.array([0, 1, 2, 4, 3]), np.array([1, 2, 3, 5, 5])
    clusters = connected_clusters(6, a, b)
    s = pair_summary(a, b, clusters, splits, labels)
    # pairs: 0-1 train/train same; 1-2 train/test same; 2-3 test/valid differ; 4-5 test/train differ;
    # 3-5 valid/train same
    assert s["n_pairs"] == 5
    assert s["cross_split_pairs"] == 4
    assert s["label_disagreeing_pairs"] == 2
    assert s["cross_split"] == {"test-train": 2, "test-valid": 1, "train-valid": 1}
    assert s["leaks"] == {"test_in_train": 2, "test_in_valid": 1, "valid_in_train": 1}
    assert s["n_clusters"] == 1 and s["n_items_in_clusters"] == 6


def test_leaked_rows_only_marks_the_evaluated_split():
    splits = np.array(["test", "train", "test", "valid"])
    got = leaked_rows(np.array([0, 2]), np.array([1, 3]), splits, "test", ("train",))
    assert got.tolist() == [True, False, False, False]
    got = leaked_rows(np.array([0, 2]), np.array([1, 3]), splits, "test", ("train", "valid"))
    assert got.tolist() == [True, False, True, False]
