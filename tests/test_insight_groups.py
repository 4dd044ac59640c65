"""fashion.insight.groups: near-duplicate groups from embeddings, the rows of a split without a twin in the others, counts."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.insight.groups import group_summary, near_duplicate_groups, twin_distance, without_twin


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


def look_alikes_hiding_a_twin(per=12, twin=0.154, d=32, seed=0):
    """``per`` test photos of one garment, tight together, and ``per`` train photos of its twin ``twin``
    away (cosine distance), tight together too: every photo's 10 nearest are of its own split."""
    rng = np.random.default_rng(seed)
    u, w = np.eye(d)[0], (1 - twin) * np.eye(d)[0] + np.sqrt(1 - (1 - twin) ** 2) * np.eye(d)[1]
    rows = np.array([c + rng.normal(scale=0.003, size=d) for c in (u, w) for _ in range(per)])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True), ["test"] * per + ["train"] * per


def test_a_twin_crowded_out_of_the_top_k_by_look_alikes_is_still_found():
    vectors, splits = look_alikes_hiding_a_twin()
    dist = twin_distance(vectors, splits)
    assert np.isinf(dist[12:]).all() and np.allclose(dist[:12], 0.154, atol=0.01)
    assert not without_twin(vectors, splits, threshold=0.20).any()  # a top-10 over all photos marked all 12 unseen
    assert without_twin(vectors, splits, threshold=0.10).tolist() == [True] * 12 + [False] * 12


@pytest.mark.parametrize("seed", range(3))
def test_twin_distance_is_the_nearest_other_split_photo(seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(40, 8))
    splits = rng.choice(["train", "valid", "test"], size=40)
    ok = rng.random(40) > 0.2
    got = twin_distance(vectors, splits, against=("train",), ok=ok)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for row in range(40):
        others = np.flatnonzero((splits == "train") & ok)
        want = (1 - unit[others] @ unit[row]).min() if splits[row] == "test" and ok[row] else np.inf
        assert got[row] == pytest.approx(want, abs=1e-6)
    free = without_twin(vectors, splits, threshold=0.5, against=("train",), ok=ok)
    assert free.tolist() == ((splits == "test") & ~(got <= 0.5)).tolist()
    assert free[(splits == "test") & ~ok].all()  # nothing to compare: counted without twin


def test_no_other_split_means_no_twin():
    vectors, splits = look_alikes_hiding_a_twin()
    assert without_twin(vectors, ["test"] * 24).all()
    assert not without_twin(vectors, ["train"] * 24).any()


def test_group_summary_counts():
    groups = np.array([0, 0, 0, 1, 1, 2, 3])
    splits = ["train", "train", "test", "valid", "valid", "test", "train"]
    labels = ["dress", "dress", "dress", "shirt", "t-shirt", "pants", "pants"]
    assert group_summary(groups, splits, labels) == {
        "n_photos": 7, "n_groups": 2, "n_photos_grouped": 5, "largest": 3, "cross_split_groups": 1,
        "mixed_label_groups": 1}
