"""Suspect labels from the neighbours alone (no classifier): photos whose K nearest neighbours mostly
carry one other label — the kNN form of confident learning, for runs without a trained model
(``fashion train`` reports cleanlab's suspects from the classifier's probabilities instead).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: A photo is suspect when at most this share of its neighbours has its label and a majority agrees on
#: one other label.
MAX_OWN_SHARE = 0.2


def knn_suspects(labels: Sequence, query_rows: np.ndarray, neighbor_rows: np.ndarray,
                 max_own_share: float = MAX_OWN_SHARE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, own_share, neighbor_label, neighbor_share) of the suspect queries, most suspect first.

    labels: (n,) of the item rows; query_rows (q,), neighbor_rows (q, k): a run's top-K table.

    >>> labels = np.array(["a", "a", "a", "b"])
    >>> rows, own, other, share = knn_suspects(labels, np.array([0, 3]), np.array([[1, 2], [0, 1]]))
    >>> rows.tolist(), own.tolist(), other.tolist(), share.tolist()
    ([3], [0.0], ['a'], [1.0])
    """
    labels = np.asarray(labels).astype(str)
    query_rows, neighbor_rows = np.asarray(query_rows, dtype=np.int64), np.asarray(neighbor_rows, dtype=np.int64)
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0, dtype=labels.dtype), np.zeros(0))
    if neighbor_rows.size == 0:
        return empty
    k = neighbor_rows.shape[1]
    nl = labels[neighbor_rows]
    own = (nl == labels[query_rows][:, None]).mean(1)
    classes, coded = np.unique(nl, return_inverse=True)
    coded = coded.reshape(nl.shape)
    counts = np.zeros((len(query_rows), len(classes)), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(query_rows)), k), coded.reshape(-1)), 1)
    top = counts.argmax(1)
    top_share = counts[np.arange(len(query_rows)), top] / k
    hit = (own <= max_own_share) & (classes[top] != labels[query_rows]) & (top_share > 0.5)
    order = np.lexsort((-top_share[hit], own[hit]))
    sel = np.flatnonzero(hit)[order]
    return query_rows[sel], own[sel], classes[top[sel]], top_share[sel]
