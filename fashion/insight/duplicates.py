"""Near-duplicate pairs and clusters from a run's nearest neighbours — pure functions on arrays.

The pairs come from a top-K table (``query_rows`` (q,), ``neighbor_rows`` (q, k), item rows), kept
where the distance is at most a threshold: a retrieval run's own table (no second search), or, for a
set without one, :func:`self_neighbors`. An
exact-copy pass (identical file bytes, by digest) runs first and costs one read of each file.
Clusters are the connected components of the pair graph (``scipy.sparse.csgraph``).

Distances are cosine distances ``1 - cos`` of the embedding vectors, recomputed for the candidate pairs
only (n·k dot products), so the calibrated threshold holds whatever ``--metric`` the search used.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Cosine distance (1 - cos) of pretrained efficientnet_lite0 body features at or under which two
#: photos are candidate copies (then confirmed on the pixels, fashion.insight.verify); calibrated by
#: ``benchmarks/duplicates.py`` (benchmarks/README.md).
DEFAULT_THRESHOLD = 0.35

METHODS = ("embedding", "phash")


def exact_copy_pairs(digests: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose file digests are equal (``None``/"" digests never match).

    Each group of m identical files gives m - 1 pairs (its first row with each other one): enough to
    connect the group into one cluster. Returns (a, b) int64 arrays with a < b.

    >>> exact_copy_pairs(["x", "y", "x", None, "x"])
    (array([0, 0]), array([2, 4]))
    """
    first: dict = {}
    a, b = [], []
    for row, digest in enumerate(digests):
        if digest is None or digest == "":
            continue
        if digest in first:
            a.append(first[digest])
            b.append(row)
        else:
            first[digest] = row
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)


def pair_cosine_distances(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """``1 - cos`` between ``vectors[a]`` and ``vectors[b]`` row by row (float64 (m,)); zero rows give 1.

    >>> v = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    >>> pair_cosine_distances(v, np.array([0, 0]), np.array([1, 2])).round(6).tolist()
    [1.0, 0.0]
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), chunk):  # bounded memory: m pairs never make two (m, d) copies at once
        va, vb = vectors[a[s:s + chunk]].astype(np.float64), vectors[b[s:s + chunk]].astype(np.float64)
        norm = np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1)
        cos = np.divide((va * vb).sum(1), norm, out=np.zeros(len(va)), where=norm > 0)
        out[s:s + chunk] = 1.0 - cos
    return np.clip(out, 0.0, 2.0)


def knn_distances(vectors: np.ndarray, query_rows: np.ndarray, neighbor_rows: np.ndarray) -> np.ndarray:
    """Cosine distances float64 (q, k) of each query row to its neighbours (:func:`pair_cosine_distances`):
    recomputed whatever metric the search used, so a calibrated threshold holds.

    >>> knn_distances(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.array([0]), np.array([[1, 2]])).tolist()
    [[1.0, 0.0]]
    """
    query_rows, neighbor_rows = np.asarray(query_rows, dtype=np.int64), np.asarray(neighbor_rows, dtype=np.int64)
    q = np.broadcast_to(query_rows[:, None], neighbor_rows.shape)
    return pair_cosine_distances(vectors, q.reshape(-1), neighbor_rows.reshape(-1)).reshape(neighbor_rows.shape)


def self_neighbors(vectors: np.ndarray, ok: np.ndarray | None = None, k: int = 10,
                   index: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` table of the ``ok`` rows of ``vectors`` among themselves (cosine, each row never its
    own neighbour): (rows (q,), neighbor_rows (q, k')) with k' = min(k, q - 1), (q, 0) when under two.
    The search for a set without a retrieval run's table (``fashion duplicates``, near-duplicate groups).

    >>> rows, nb = self_neighbors(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), np.array([True, True, False]), k=5)
    >>> rows.tolist(), nb.tolist()
    ([0, 1], [[1], [0]])
    """
    from ..neighbors import build_index

    rows = np.flatnonzero(np.ones(len(vectors), dtype=bool) if ok is None else np.asarray(ok, dtype=bool))
    kk = min(int(k), len(rows) - 1)
    if kk < 1:
        return rows, np.zeros((len(rows), 0), dtype=np.int64)
    _, idx = build_index(index, metric="cosine").fit(np.asarray(vectors)[rows]).kneighbors(None, n_neighbors=kk)
    return rows, rows[np.asarray(idx)]


def knn_pairs(query_rows: np.ndarray, neighbor_rows: np.ndarray, distances: np.ndarray,
              threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b, distance) of a top-K table with ``distance <= threshold``; a < b, each pair once.

    query_rows: (q,) item rows; neighbor_rows, distances: (q, k). A pair seen from both ends keeps its
    smaller distance; a row paired with itself is dropped.

    >>> knn_pairs(np.array([0, 1, 2]), np.array([[1, 2], [0, 2], [1, 0]]),
    ...           np.array([[0.05, 0.5], [0.05, 0.09], [0.08, 0.5]]), 0.1)
    (array([0, 1]), array([1, 2]), array([0.05, 0.08]))
    """
    query_rows = np.asarray(query_rows, dtype=np.int64)
    neighbor_rows, distances = np.asarray(neighbor_rows, dtype=np.int64), np.asarray(distances, dtype=np.float64)
    if neighbor_rows.shape != distances.shape or neighbor_rows.shape[:1] != query_rows.shape:
        raise ValueError(f"query_rows {query_rows.shape}, neighbor_rows {neighbor_rows.shape} and distances "
                         f"{distances.shape} do not match")
    keep = distances <= threshold
    q = np.broadcast_to(query_rows[:, None], neighbor_rows.shape)[keep]
    nb, d = neighbor_rows[keep], distances[keep]
    keep = q != nb
    return dedupe_pairs(q[keep], nb[keep], d[keep])


def dedupe_pairs(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order each pair (a < b), keep each pair once with its smallest distance; sorted by (a, b).

    >>> dedupe_pairs(np.array([3, 1, 1]), np.array([1, 3, 2]), np.array([0.2, 0.1, 0.3]))
    (array([1, 1]), array([2, 3]), array([0.3, 0.1]))
    """
    a, b, d = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), np.asarray(d, dtype=np.float64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((d, hi, lo))
    lo, hi, d = lo[order], hi[order], d[order]
    first = np.ones(len(lo), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], d[first]


def connected_clusters(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cluster id of each of ``n`` rows: connected components of the pairs, -1 for rows in no pair.

    Clusters are numbered 0, 1, … largest first (ties: lowest row first).

    >>> connected_clusters(6, np.array([0, 4, 1]), np.array([1, 5, 2])).tolist()
    [0, 0, 0, -1, 1, 1]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(a) == 0:
        return out
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    in_pair = np.zeros(n, dtype=bool)
    in_pair[a] = in_pair[b] = True
    comps, first_row, sizes = np.unique(comp[in_pair], return_index=True, return_counts=True)
    first_row = np.flatnonzero(in_pair)[first_row]
    ranked = comps[np.lexsort((first_row, -sizes))]
    new_id = np.full(comp.max() + 1, -1, dtype=np.int64)
    new_id[ranked] = np.arange(len(ranked))
    out[in_pair] = new_id[comp[in_pair]]
    return out


def leaked_rows(a: np.ndarray, b: np.ndarray, splits: Sequence, split: str = "test",
                against: Sequence[str] = ("train",)) -> np.ndarray:
    """Bool (n,): rows of ``split`` that have a pair partner in one of the ``against`` splits.

    >>> leaked_rows(np.array([0, 1]), np.array([2, 3]), ["train", "valid", "test", "test"]).tolist()
    [False, False, True, False]
    """
    splits = np.asarray(splits).astype(str)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    out = np.zeros(len(splits), dtype=bool)
    against = np.asarray(list(against), dtype=str)
    hit = (splits[a] == split) & np.isin(splits[b], against)
    out[a[hit]] = True
    hit = (splits[b] == split) & np.isin(splits[a], against)
    out[b[hit]] = True
    return out


def pair_summary(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, splits: Sequence,
                 labels: Sequence) -> dict:
    """Counts for metrics.json: pairs, clusters, items in them, split-crossing and label-disagreeing pairs.

    ``cross_split`` breaks the split-crossing pairs down by split pair ("test-train": n, names sorted);
    ``leaks`` counts rows of test (and valid) with a partner in train, and test rows with one in valid.

    >>> s = pair_summary(np.array([0, 2]), np.array([1, 3]), np.array([0, 0, 1, 1]),
    ...                  ["train", "test", "train", "train"], ["a", "a", "a", "b"])
    >>> s["n_pairs"], s["n_clusters"], s["cross_split_pairs"], s["label_disagreeing_pairs"], s["leaks"]["test_in_train"]
    (2, 2, 1, 1, 1)
    """
    splits, labels = np.asarray(splits).astype(str), np.asarray(labels).astype(str)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    cross = splits[a] != splits[b]
    by_split: dict[str, int] = {}
    for x, y in zip(splits[a][cross], splits[b][cross]):
        key = "-".join(sorted((x, y)))
        by_split[key] = by_split.get(key, 0) + 1
    clusters = np.asarray(clusters)
    return {
        "n_pairs": int(len(a)),
        "n_clusters": int(clusters.max() + 1) if clusters.size and clusters.max() >= 0 else 0,
        "n_items_in_clusters": int((clusters >= 0).sum()),
        "cross_split_pairs": int(cross.sum()),
        "label_disagreeing_pairs": int((labels[a] != labels[b]).sum()),
        "cross_split": dict(sorted(by_split.items())),
        "leaks": {
            "test_in_train": int(leaked_rows(a, b, splits, "test", ("train",)).sum()),
            "test_in_valid": int(leaked_rows(a, b, splits, "test", ("valid",)).sum()),
            "valid_in_train": int(leaked_rows(a, b, splits, "valid", ("train",)).sum()),
        },
    }


def precision_recall(found: set, truth: set, n_found: int | None = None) -> dict:
    """Precision and recall of a set of found pairs against the true pairs (pairs as (a, b), a < b).

    >>> precision_recall({(0, 1), (2, 3)}, {(0, 1), (4, 5)})
    {'found': 2, 'true': 2, 'hits': 1, 'precision': 0.5, 'recall': 0.5}
    """
    hits = len(found & truth)
    n_found = len(found) if n_found is None else n_found
    return {"found": n_found, "true": len(truth), "hits": hits,
            "precision": hits / n_found if n_found else 1.0, "recall": hits / len(truth) if truth else 1.0}
