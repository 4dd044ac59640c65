"""How much a random split flatters (#30 item 3): K-fold against grouped K-fold of a cheap proxy.

The proxy of the recipe is a logistic-regression head on frozen features (e.g. the pretrained
EfficientNet-Lite0 body's, cached by :mod:`fashion.embedding`): seconds per fold, so the two protocols can
be compared on every photo. Plain K-fold (shuffled, seeded) lets a garment's other photos sit in the
training folds while one is scored; grouped K-fold (scikit-learn's ``GroupKFold`` over near-duplicate
groups, :func:`fashion.insight.groups.near_duplicate_groups`) never does. The difference of the two
accuracies is what near-duplicates add to a random split's score.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

FOLDS = 5
C = 1.0  # inverse L2 strength of the logistic head (features standardised)
SEEDS = (0, 1, 2)  # one plain and one grouped K-fold per seed


def fold_predictions(features: np.ndarray, labels: Sequence, splits) -> np.ndarray:
    """Out-of-fold predicted labels (n,) of a standardised logistic-regression head trained on each
    ``splits`` (an iterable of (train_rows, test_rows)) fold's training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    out = np.empty(len(labels), dtype=labels.dtype)
    for train, test in splits:
        head = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        head.fit(features[train], labels[train])
        out[test] = head.predict(features[test])
    return out


def grouped_folds(groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's ``GroupKFold`` over ``groups`` with the group ids relabelled by a seeded permutation
    first, so that, as with a shuffled ``KFold``, the seed decides where groups of equal size go (its own
    ``shuffle`` needs scikit-learn 1.6). No group is ever split between a fold's train and test rows.

    >>> folds = grouped_folds(np.array([0, 0, 1, 2, 3, 3]), 2, seed=0)
    >>> all(not set(np.array([0, 0, 1, 2, 3, 3])[tr]) & set(np.array([0, 0, 1, 2, 3, 3])[te]) for tr, te in folds)
    True
    """
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    ids, inverse = np.unique(groups, return_inverse=True)
    relabelled = np.random.default_rng(seed).permutation(len(ids))[inverse]
    return list(GroupKFold(folds).split(np.zeros((len(groups), 1)), groups=relabelled))


def plain_folds(features: np.ndarray, labels: Sequence, folds: int = FOLDS,
                seeds: Sequence[int] = SEEDS) -> dict:
    """Plain (shuffled, seeded) K-fold of the proxy, per seed: {seed: (folds' (train, test) rows, bool (n,)
    right)}. It does not depend on the groups, so :func:`compare_folds` can take it for every threshold."""
    from sklearn.model_selection import KFold

    features, labels = np.asarray(features, dtype=np.float32), np.asarray(labels).astype(str)
    out = {}
    for seed in seeds:
        splits = list(KFold(folds, shuffle=True, random_state=seed).split(features))
        out[int(seed)] = (splits, fold_predictions(features, labels, splits) == labels)
    return out


def compare_folds(features: np.ndarray, labels: Sequence, groups: np.ndarray, folds: int = FOLDS,
                  seeds: Sequence[int] = SEEDS, plain: dict | None = None) -> dict:
    """Accuracy of the proxy under plain K-fold and grouped K-fold, and the flattery (plain − grouped),
    each the mean over ``seeds`` (one shuffled split of each kind per seed; the per-seed figures are
    kept, so the flattery can be read against the seed-to-seed spread of a random split).

    Also, for plain K-fold, the accuracy of the photos that had a group mate in their training folds
    (``plain_with_mate``) and of those that had none (``plain_without_mate``), pooled over the seeds;
    None where there are none.

    ``plain``: :func:`plain_folds` of the same features, labels, folds and seeds (computed when None).
    """
    features = np.asarray(features, dtype=np.float32)
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups)
    if not len(features) == len(labels) == len(groups):
        raise ValueError(f"features {features.shape}, labels {labels.shape} and groups {groups.shape} differ in length")
    if len(np.unique(groups)) < folds:
        raise ValueError(f"{len(np.unique(groups))} groups cannot fill {folds} grouped folds")
    if plain is None:
        plain_runs = plain_folds(features, labels, folds, seeds)
    else:
        plain_runs = plain
        if sorted(plain_runs) != sorted(int(s) for s in seeds) or any(len(h) != len(labels) for _, h in plain_runs.values()):
            raise ValueError(f"plain folds of seeds {sorted(plain_runs)} do not match seeds {list(seeds)} and {len(labels)} rows")
    plain, grouped, right, mate = [], [], [], []
    for seed in seeds:
        plain_splits, hit = plain_runs[int(seed)]
        plain.append(float(hit.mean()))
        grouped.append(float((fold_predictions(features, labels, grouped_folds(groups, folds, seed)) == labels).mean()))
        has_mate = np.zeros(len(labels), dtype=bool)
        for train, test in plain_splits:
            has_mate[test] = np.isin(groups[test], groups[train])
        right.append(hit)
        mate.append(has_mate)
    right, mate = np.concatenate(right), np.concatenate(mate)

    def mean(mask):
        return float(right[mask].mean()) if mask.any() else None

    flattery = [p - g for p, g in zip(plain, grouped)]
    return {"n": int(len(labels)), "folds": int(folds), "seeds": [int(s) for s in seeds],
            "plain": float(np.mean(plain)), "grouped": float(np.mean(grouped)), "flattery": float(np.mean(flattery)),
            "plain_per_seed": plain, "grouped_per_seed": grouped, "flattery_per_seed": flattery,
            "n_with_mate": int(mate.sum() // len(seeds)), "plain_with_mate": mean(mate),
            "plain_without_mate": mean(~mate)}
