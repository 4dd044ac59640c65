"""fashion.insight.groups: near-duplicate groups from embeddings, the unseen rows of a split, counts."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.insight.groups import group_summary, near_duplicate_groups, unseen


def planted(n_groups=6, per=3, n_single=10, d=32, spread=0.02, seed=0):
    """Unit vectors: ``n_groups`` tight groups of ``per`` rows (cosine distance ~spread²/2 inside), then
    ``n_single`` rows far from everything; rows shuffled. Returns vectors and the planted group of each
    row (-1 for the singles)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups + n_single, d))
    rows = [centres[g] + rng.normal(scale=spread, size=d) for g in range(n_groups) for _ in range(per)]
    rows += list(centres[n_groups:])
    truth = np.array([g for g in range(n_groups) for _ in range(per)] + [-1] * n_single)
    order = rng.permutation(len(rows))
    vectors = np.array(rows)[order]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), truth[order]


def same_partition(got, truth):
    for x in range(len(truth)):
        for y in range(len(truth)):
            if x != y and (got[x] == got[y]) != (truth[x] >= 0 and truth[x] == truth[y]):
                return False
    return True


@pytest.mark.parametrize("seed", range(3))
def test_planted_groups_are_found_and_every_row_gets_an_id(seed):
    vectors, truth = planted(seed=seed)
    groups = near_duplicate_groups(vectors, threshold=0.05)
    assert groups.dtype == np.int64 and (groups >= 0).all()
    assert same_partition(groups, truth)
    sizes = np.bincount(groups)
    assert list(sizes) == sorted(sizes, reverse=True) and set(groups) == set(range(len(sizes)))


def test_threshold_decides_what_counts_as_one_garment():
    vectors, truth = planted(spread=0.3)  # pairs inside a group lie ~0.04–0.1 apart
    loose, tight = near_duplicate_groups(vectors, threshold=0.3), near_duplicate_groups(vectors, threshold=1e-4)
    assert same_partition(loose, truth)
    assert len(np.unique(tight)) == len(vectors)  # nothing that close: every row alone


def test_rows_not_ok_are_never_paired_but_get_their_own_group():
    vectors, truth = planted()
    ok = np.ones(len(vectors), bool)
    dropped = int(np.flatnonzero(truth == 0)[0])
    ok[dropped] = False
    groups = near_duplicate_groups(vectors, threshold=0.05, ok=ok)
    assert (groups == groups[dropped]).sum() == 1
    mates = np.flatnonzero(truth == 0)
    mates = mates[mates != dropped]
    assert groups[mates[0]] == groups[mates[1]]


def test_tiny_inputs():
    assert near_duplicate_groups(np.zeros((0, 4))).tolist() == []
    assert near_duplicate_groups(np.ones((1, 4))).tolist() == [0]
    assert near_duplicate_groups(np.array([[1.0, 0.0], [1.0, 0.001]]), threshold=0.01).tolist() == [0, 0]


def test_unseen_marks_the_split_rows_whose_group_stays_inside_it():
    groups = np.array([0, 0, 1, 1, 2, 3, 3])
    splits = ["train", "test", "test", "test", "test", "valid", "test"]
    assert unseen(groups, splits).tolist() == [False, False, True, True, True, False, False]
    assert unseen(groups, splits, against=("train",)).tolist() == [False, False, True, True, True, False, True]
    assert unseen(groups, splits, split="valid", against=("test",)).tolist() == [False] * 5 + [False, False]


def test_group_summary_counts():
    groups = np.array([0, 0, 0, 1, 1, 2, 3])
    splits = ["train", "train", "test", "valid", "valid", "test", "train"]
    labels = ["dress", "dress", "dress", "shirt", "t-shirt", "pants", "pants"]
    assert group_summary(groups, splits, labels) == {
        "n_photos": 7, "n_groups": 2, "n_photos_grouped": 5, "largest": 3, "cross_split_groups": 1,
        "mixed_label_groups": 1}
