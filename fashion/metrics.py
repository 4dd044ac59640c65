"""Retrieval and classification metrics: pure numpy functions, arrays in, float / array / dict out.

Retrieval conventions: ``query_labels`` has shape (q,) and ``neighbor_labels`` (q, K) holds the labels
of each query's K neighbours in rank order (the query itself already left out). A neighbour *hits*
when its label equals the query's. Every function checks its input first: empty input, mismatched
lengths and a ``k`` outside 1..K raise ``ValueError``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .errors import ConfigError

__all__ = [
    "precision_at_k",
    "average_precision_at_k",
    "map_at_k",
    "per_label_precision",
    "recall_at_k",
    "topk_accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "most_confused",
    "check_k",
]


def _retrieval_inputs(query_labels, neighbor_labels, k):
    """Validate (q,) and (q, K) inputs and k; return (query (q,), neighbours (q, k), k)."""
    query = np.asarray(query_labels)
    neigh = np.asarray(neighbor_labels)
    if query.ndim != 1:
        raise ValueError(f"query labels must be 1-D (q,), got shape {query.shape}")
    if neigh.ndim != 2:
        raise ValueError(f"neighbour labels must be 2-D (q, k), got shape {neigh.shape}")
    if query.size == 0 or neigh.shape[1] == 0:
        raise ValueError(f"empty input: {query.shape[0]} queries, {neigh.shape[1]} neighbour columns")
    if neigh.shape[0] != query.shape[0]:
        raise ValueError(f"{query.shape[0]} query labels but {neigh.shape[0]} rows of neighbour labels")
    k = neigh.shape[1] if k is None else check_k(k, neigh.shape[1])
    return query, neigh[:, :k], k


def check_k(k, available: int, name: str = "k", what: str = "neighbour columns given") -> int:
    """``k`` as an int from 1 to ``available``; the one check of a neighbour count, shared by the metrics,
    the indexes (:mod:`fashion.neighbors`) and the service; a :class:`~fashion.errors.ConfigError` naming
    ``name`` otherwise.

    >>> check_k(3, 5)
    3
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {k!r}")
    if k < 1:
        raise ConfigError(f"{name} must be >= 1, got {k}")
    if k > available:
        raise ConfigError(f"{name} must be <= {available} ({what}), got {k}")
    return int(k)


def _hits(query_labels, neighbor_labels, k):
    query, neigh, k = _retrieval_inputs(query_labels, neighbor_labels, k)
    return neigh == query[:, None], query, k


def precision_at_k(query_labels, neighbor_labels, k=None) -> float:
    """Mean over queries of the fraction of the first k neighbours that share the query's label.

    query_labels: (q,); neighbor_labels: (q, K); k: 1..K (default K).

    >>> precision_at_k(["a", "b"], [["a", "b", "a"], ["a", "a", "a"]])
    0.3333333333333333
    >>> precision_at_k(["a", "b"], [["a", "b", "a"], ["b", "a", "a"]], k=1)
    1.0
    >>> precision_at_k([], [[]])
    Traceback (most recent call last):
    ValueError: empty input: 0 queries, 0 neighbour columns
    """
    hits, _, k = _hits(query_labels, neighbor_labels, k)
    return float(hits.mean())


def average_precision_at_k(query_labels, neighbor_labels, k=None, relevant_counts=None) -> np.ndarray:
    """AP@k of each query, shape (q,).

    ``AP@k = sum_{i<=k} P@i * hit_i / min(k, R)``: P@i is the precision of the first i neighbours and
    hit_i whether neighbour i hits. R is the number of relevant items the query could retrieve:
    ``relevant_counts`` gives it per label (a mapping label -> count, e.g. the gallery size of the label
    without the query) or per query (array (q,)); without it, R is the number of hits in the first k
    (so AP is the mean precision at the hit ranks). A query with R = 0 or no hit scores 0.

    >>> average_precision_at_k(["a", "b"], [["a", "x", "a"], ["x", "b", "x"]]).round(4).tolist()
    [0.8333, 0.5]
    >>> average_precision_at_k(["a"], [["a", "x", "a"]], relevant_counts={"a": 4}).round(4).tolist()
    [0.5556]
    """
    hits, query, k = _hits(query_labels, neighbor_labels, k)
    ranks = np.arange(1, k + 1)
    precision_at_i = np.cumsum(hits, axis=1) / ranks
    summed = (precision_at_i * hits).sum(axis=1)
    if relevant_counts is None:
        norm = hits.sum(axis=1).astype(np.float64)
    else:
        norm = np.minimum(_relevant_per_query(query, relevant_counts), k).astype(np.float64)
    out = np.zeros(len(query))
    np.divide(summed, norm, out=out, where=norm > 0)
    return out


def _relevant_per_query(query: np.ndarray, relevant_counts) -> np.ndarray:
    if isinstance(relevant_counts, Mapping):
        missing = sorted({str(q) for q in query if q not in relevant_counts})
        if missing:
            raise ValueError(f"relevant_counts has no count for label(s) {missing[:5]}")
        counts = np.array([relevant_counts[q] for q in query])
    else:
        counts = np.asarray(relevant_counts)
        if counts.shape != query.shape:
            raise ValueError(f"relevant_counts must be a mapping or shape {query.shape}, got {counts.shape}")
    if (counts < 0).any():
        raise ValueError("relevant_counts must be >= 0")
    return counts


def map_at_k(query_labels, neighbor_labels, k=None, relevant_counts=None) -> float:
    """Mean of :func:`average_precision_at_k` over queries (same definition).

    >>> map_at_k(["a", "b"], [["a", "x", "a"], ["x", "b", "x"]])
    0.6666666666666666
    """
    return float(average_precision_at_k(query_labels, neighbor_labels, k, relevant_counts).mean())


def per_label_precision(query_labels, neighbor_labels, k=None) -> dict[str, float]:
    """precision@k averaged over the queries of each label: {str(label): float}, labels sorted.

    >>> per_label_precision(["a", "b", "a"], [["a", "b"], ["b", "b"], ["x", "x"]])
    {'a': 0.25, 'b': 1.0}
    """
    hits, query, k = _hits(query_labels, neighbor_labels, k)
    per_query = hits.mean(axis=1)
    labels, inverse = np.unique(query, return_inverse=True)
    sums = np.bincount(inverse, weights=per_query, minlength=len(labels))
    counts = np.bincount(inverse, minlength=len(labels))
    return {str(label): float(s / c) for label, s, c in zip(labels, sums, counts)}


def recall_at_k(query_item_ids, neighbor_item_ids, ks: Sequence[int] = (1, 5, 10, 20)) -> dict[int, float]:
    """DeepFashion In-shop recall@k: the fraction of queries with their item id among the first k
    gallery neighbours. query_item_ids: (q,); neighbor_item_ids: (q, K); every k in ks must be <= K.

    >>> recall_at_k(["i1", "i2"], [["i3", "i1"], ["i2", "i4"]], ks=(1, 2))
    {1: 0.5, 2: 1.0}
    >>> recall_at_k(["i1"], [["i1"]], ks=(1, 5))
    Traceback (most recent call last):
    fashion.errors.ConfigError: k must be <= 1 (neighbour columns given), got 5
    """
    query, neigh, _ = _retrieval_inputs(query_item_ids, neighbor_item_ids, None)
    ks = _check_ks(ks, neigh.shape[1])
    first_hit = _first_true(neigh == query[:, None])
    return {k: float((first_hit < k).mean()) for k in ks}


def _check_ks(ks, available: int) -> list[int]:
    ks = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks:
        raise ValueError("ks is empty")
    return [available if k is None else check_k(k, available) for k in ks]


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Column of the first True per row, or the number of columns where a row has none."""
    return np.where(mask.any(axis=1), mask.argmax(axis=1), mask.shape[1])


def topk_accuracy(targets, scores, ks: Sequence[int] = (1, 3, 5)) -> dict[int, float]:
    """Fraction of rows whose target class is among the k highest scores.

    targets: (n,) int class indices; scores: (n, c). A target counts as rank r when r classes score
    strictly higher (ties favour the target). Every k must be <= c.

    >>> topk_accuracy([0, 2], [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]], ks=(1, 3))
    {1: 0.5, 3: 1.0}
    """
    targets = _class_indices(targets, "targets")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores must have shape ({targets.shape[0]}, n_classes), got {scores.shape}")
    if targets.max() >= scores.shape[1]:
        raise ValueError(f"target {targets.max()} is out of range for {scores.shape[1]} score columns")
    ks = _check_ks(ks, scores.shape[1])
    target_score = scores[np.arange(len(targets)), targets]
    rank = (scores > target_score[:, None]).sum(axis=1)
    return {k: float((rank < k).mean()) for k in ks}


def _class_indices(values, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {values.dtype}")
    if values.min() < 0:
        raise ValueError(f"{name} has a negative class index {values.min()}")
    return values.astype(np.int64)


def confusion_matrix(targets, preds, n_classes: int) -> np.ndarray:
    """int64 (c, c) counts: rows are actual classes, columns predicted ones.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1], n_classes=2).tolist()
    [[1, 0], [1, 1]]
    """
    targets = _class_indices(targets, "targets")
    preds = _class_indices(preds, "preds")
    if targets.shape != preds.shape:
        raise ValueError(f"{len(targets)} targets but {len(preds)} predictions")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    top = max(targets.max(), preds.max())
    if top >= n_classes:
        raise ValueError(f"class index {top} is out of range for n_classes={n_classes}")
    flat = np.bincount(targets * n_classes + preds, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def per_class_accuracy(cm) -> np.ndarray:
    """Recall of each class from a confusion matrix: diag / row sum, NaN for a class with no rows.

    >>> per_class_accuracy([[1, 1], [0, 0]]).tolist()
    [0.5, nan]
    """
    cm = _square(cm)
    totals = cm.sum(axis=1).astype(np.float64)
    out = np.full(len(cm), np.nan)
    np.divide(np.diag(cm), totals, out=out, where=totals > 0)
    return out


def _square(cm) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.size == 0:
        raise ValueError(f"confusion matrix must be a non-empty square (c, c) array, got shape {cm.shape}")
    return cm


def most_confused(cm, classes: Sequence[str], min_count: int = 1) -> list[tuple[str, str, int]]:
    """Off-diagonal (actual, predicted, count) with count >= min_count, most frequent first
    (ties by class names).

    >>> most_confused([[5, 2, 0], [3, 4, 2], [0, 0, 1]], ["a", "b", "c"], min_count=2)
    [('b', 'a', 3), ('a', 'b', 2), ('b', 'c', 2)]
    """
    cm = _square(cm)
    if len(classes) != len(cm):
        raise ValueError(f"{len(classes)} class names for a {len(cm)}x{len(cm)} confusion matrix")
    actual, predicted = np.nonzero((cm >= min_count) & ~np.eye(len(cm), dtype=bool))
    pairs = [(str(classes[a]), str(classes[p]), int(cm[a, p])) for a, p in zip(actual, predicted)]
    return sorted(pairs, key=lambda t: (-t[2], t[0], t[1]))


RECALL_KS = (1, 5, 10, 20)  # recall@k by item id reported where items have an item_id


class RetrievalTally:
    """The retrieval metrics of a neighbour table, tallied part by part (the one definition for runs of
    every size): precision@k, mAP@k, per label, and recall@k by item id when ``item_ids`` are given.

    ``labels`` (n,) and ``item_ids`` (n,) are indexed by item id; :meth:`update` takes (q,) query ids and
    their (q, k) neighbour ids in rank order (-1 where a rank is missing). The result equals
    :func:`precision_at_k` / :func:`map_at_k` / :func:`per_label_precision` / :func:`recall_at_k` over the
    whole table in query-id order, bit for bit, however the table was split.

    >>> t = RetrievalTally(np.array(["a", "a", "b"]), 2)
    >>> t.update(np.array([2]), np.array([[0, 1]])); t.update(np.array([0, 1]), np.array([[1, 2], [2, 0]]))
    >>> r = t.result(); r["precision_at_k"], r["map_at_k"], r["per_label_precision"]
    (0.3333333333333333, 0.5, {'a': 0.5, 'b': 0.0})
    """

    def __init__(self, labels: np.ndarray, k: int, item_ids: np.ndarray | None = None):
        self.labels = np.asarray(labels).astype(str)
        # each label as its rank among the distinct labels: equal codes, equal labels (ints compare faster)
        self.names, self.codes = np.unique(self.labels, return_inverse=True)
        self.item_ids = None if item_ids is None else np.asarray(item_ids).astype(str)
        self.k = int(k)
        self.ks = tuple(x for x in RECALL_KS if x <= self.k) or (self.k,)
        self._parts: list[tuple[np.ndarray, ...]] = []

    def update(self, query_ids: np.ndarray, neighbor_ids: np.ndarray) -> None:
        query_ids = np.asarray(query_ids, dtype=np.int64)
        neighbor_ids = np.asarray(neighbor_ids, dtype=np.int64).reshape(len(query_ids), self.k)
        missing = neighbor_ids < 0
        q_lab = self.codes[query_ids]
        n_lab = np.where(missing, -1, self.codes[np.maximum(neighbor_ids, 0)])
        hits = (n_lab == q_lab[:, None]).sum(axis=1)
        ap = average_precision_at_k(q_lab, n_lab, self.k)
        first = np.zeros(len(query_ids), dtype=np.int64)
        if self.item_ids is not None:
            n_ids = np.where(missing, "\x00none", self.item_ids[np.maximum(neighbor_ids, 0)])
            first = _first_true(n_ids == self.item_ids[query_ids][:, None])
        self._parts.append((query_ids, hits, ap, first))

    def result(self) -> dict:
        """{precision_at_k, map_at_k, per_label_precision, per_label_queries[, recall_at_k], n_queries}."""
        qids, hits, ap, first = (np.concatenate(c) for c in zip(*self._parts)) if self._parts else \
            (np.zeros(0, np.int64),) * 4
        if not len(qids):
            raise ValueError("empty input: 0 queries")
        order = np.argsort(qids, kind="stable")
        qids, hits, ap, first = qids[order], hits[order], ap[order], first[order]
        codes, inverse, counts = np.unique(self.codes[qids], return_inverse=True, return_counts=True)
        labels = self.names[codes]
        sums = np.bincount(inverse, weights=hits / self.k, minlength=len(labels))
        out = {"precision_at_k": float(hits.sum() / (len(qids) * self.k)), "map_at_k": float(ap.mean()),
               "per_label_precision": {str(lab): float(s / c) for lab, s, c in zip(labels, sums, counts)},
               "per_label_queries": {str(lab): int(c) for lab, c in zip(labels, counts)}}
        if self.item_ids is not None:
            out["recall_at_k"] = {str(x): float((first < x).mean()) for x in self.ks}
        out["n_queries"] = int(len(qids))
        return out
