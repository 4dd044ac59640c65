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


def compare_folds(features: np.ndarray, labels: Sequence, groups: np.ndarray, folds: int = FOLDS,
                  seed: int = 0) -> dict:
    """Accuracy of the proxy under plain K-fold and grouped K-fold, and the flattery (plain − grouped).

    Also, for plain K-fold, the accuracy of the photos that had a group mate in their training folds
    (``plain_with_mate``) and of those that had none (``plain_without_mate``); None where there are none.
    """
    from sklearn.model_selection import GroupKFold, KFold

    features = np.asarray(features, dtype=np.float32)
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups)
    if not len(features) == len(labels) == len(groups):
        raise ValueError(f"features {features.shape}, labels {labels.shape} and groups {groups.shape} differ in length")
    if len(np.unique(groups)) < folds:
        raise ValueError(f"{len(np.unique(groups))} groups cannot fill {folds} grouped folds")
    plain_splits = list(KFold(folds, shuffle=True, random_state=seed).split(features))
    plain = fold_predictions(features, labels, plain_splits) == labels
    grouped = fold_predictions(features, labels, GroupKFold(folds).split(features, labels, groups)) == labels
    mate = np.zeros(len(labels), dtype=bool)
    for train, test in plain_splits:
        mate[test] = np.isin(groups[test], groups[train])

    def mean(mask):
        return float(plain[mask].mean()) if mask.any() else None

    return {"n": int(len(labels)), "folds": int(folds), "seed": int(seed), "plain": float(plain.mean()),
            "grouped": float(grouped.mean()), "flattery": float(plain.mean() - grouped.mean()),
            "n_with_mate": int(mate.sum()), "plain_with_mate": mean(mate), "plain_without_mate": mean(~mate)}
