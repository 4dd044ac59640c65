"""Leak-aware evaluation: the test score with and without the test photos that have a copy in training.

A test photo whose near-copy is in train (or valid) is not a test of generalisation; the accuracy over
the others says how much the published number owes to such copies.
"""

from __future__ import annotations

import numpy as np


def leak_aware_accuracy(targets: np.ndarray, predictions: np.ndarray, leaked: np.ndarray) -> dict:
    """Accuracy over all test photos and over those without a copy in training.

    targets, predictions: int (n,); leaked: bool (n,). ``accuracy_without_leaks`` is None when every
    photo leaked (nothing is left to score).

    >>> leak_aware_accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.array([True, True, False, False]))
    {'n': 4, 'accuracy': 0.75, 'n_leaked': 2, 'accuracy_leaked': 1.0, 'n_without_leaks': 2, 'accuracy_without_leaks': 0.5}
    """
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    leaked = np.asarray(leaked, dtype=bool)
    if not (targets.shape == predictions.shape == leaked.shape) or targets.ndim != 1:
        raise ValueError(f"targets {targets.shape}, predictions {predictions.shape} and leaked {leaked.shape} "
                         "must be equal 1-D shapes")
    right = targets == predictions

    def mean(mask):
        return float(right[mask].mean()) if mask.any() else None

    return {"n": int(len(targets)), "accuracy": mean(np.ones(len(targets), bool)), "n_leaked": int(leaked.sum()),
            "accuracy_leaked": mean(leaked), "n_without_leaks": int((~leaked).sum()),
            "accuracy_without_leaks": mean(~leaked)}
