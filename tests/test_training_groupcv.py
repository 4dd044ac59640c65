"""fashion.training.groupcv: plain against grouped K-fold of a logistic head measures what near-duplicates
add to a random split's score."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.training.groupcv import compare_folds, fold_predictions, grouped_folds, plain_folds


def memorable(n_groups=40, per=5, d=64, seed=0):
    """Groups of near-identical rows, each group a random label of two: nothing to learn but the groups."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, d))
    features = np.repeat(centres, per, axis=0) + rng.normal(scale=0.05, size=(n_groups * per, d))
    labels = np.repeat(rng.choice(["dress", "shirt"], n_groups), per)
    return features, labels, np.repeat(np.arange(n_groups), per)


def test_random_folds_flatter_when_only_the_groups_carry_the_label():
    features, labels, groups = memorable()
    cv = compare_folds(features, labels, groups, folds=5)
    assert cv["plain"] > 0.95  # each row's group mates sat in training
    assert 0.25 < cv["grouped"] < 0.75  # unseen groups: a coin
    assert cv["flattery"] == pytest.approx(cv["plain"] - cv["grouped"]) and cv["flattery"] > 0.25
    assert cv["n"] == 200 and cv["n_with_mate"] == 200 and cv["plain_without_mate"] is None


def test_no_flattery_without_near_duplicates():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 8))
    labels = np.where(features[:, 0] + 0.3 * rng.normal(size=200) > 0, "dress", "shirt")
    groups = np.arange(200)  # every row alone
    cv = compare_folds(features, labels, groups, folds=5)
    assert cv["plain"] > 0.8 and abs(cv["flattery"]) < 0.05
    assert cv["n_with_mate"] == 0 and cv["plain_with_mate"] is None
    assert cv["plain_without_mate"] == pytest.approx(cv["plain"])


def test_compare_folds_is_deterministic_and_checks_its_inputs():
    features, labels, groups = memorable(n_groups=12, per=3)
    assert compare_folds(features, labels, groups, folds=3, seeds=(0,)) == compare_folds(features, labels, groups, folds=3, seeds=(0,))
    with pytest.raises(ValueError, match="differ in length"):
        compare_folds(features[:-1], labels, groups)
    with pytest.raises(ValueError, match="cannot fill 5 grouped folds"):
        compare_folds(features, labels, np.arange(len(labels)) % 4, folds=5)


def test_plain_folds_computed_once_serve_every_grouping():
    features, labels, groups = memorable(n_groups=12, per=3)
    plain = plain_folds(features, labels, folds=3, seeds=(0, 1))
    for g in (groups, np.arange(len(labels)) % 6):
        assert compare_folds(features, labels, g, folds=3, seeds=(0, 1), plain=plain) == \
            compare_folds(features, labels, g, folds=3, seeds=(0, 1))
    with pytest.raises(ValueError, match="do not match"):
        compare_folds(features, labels, groups, folds=3, seeds=(0, 2), plain=plain)


def test_fold_predictions_never_score_a_row_it_trained_on():
    # one-hot rows: a held-out row's feature is a column its head never saw set, so only the intercept
    # (the majority of the other rows) can speak; with 5 dresses and 5 shirts that is always the other label
    labels = np.array(["dress", "shirt"] * 5)
    rows = np.arange(10)
    pred = fold_predictions(np.eye(10, dtype=np.float32), labels, [(rows[rows != i], np.array([i])) for i in rows])
    assert (pred != labels).all()
    everything = fold_predictions(np.eye(10, dtype=np.float32), labels, [(rows, rows)])
    assert (everything == labels).all()  # trained on the rows themselves it would have known them


def test_grouped_folds_keep_groups_whole_cover_every_row_and_follow_the_seed():
    groups = np.repeat(np.arange(30), np.arange(30) % 3 + 1)  # groups of 1, 2 and 3 rows
    per_seed = []
    for seed in (0, 1):
        folds = grouped_folds(groups, 5, seed)
        tested = np.concatenate([test for _, test in folds])
        assert len(folds) == 5 and sorted(tested.tolist()) == list(range(len(groups)))
        for train, test in folds:
            assert not set(groups[train]) & set(groups[test])
        per_seed.append([sorted(set(groups[test])) for _, test in folds])
    assert per_seed[0] != per_seed[1]
    assert [t.tolist() for _, t in grouped_folds(groups, 5, 0)] == [t.tolist() for _, t in grouped_folds(groups, 5, 0)]
