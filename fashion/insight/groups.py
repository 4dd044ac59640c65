"""Near-duplicate groups for honest splits (#30 item 3): photos of the same garment, shot more than once.

The leak check (:func:`fashion.insight.stage.find_leaks`) confirms *copies* on the pixels; a garment
photographed twice — moved, refolded, another angle — is no copy, yet a test photo whose twin was trained
on is no test of an unseen garment. Here a group is a connected component of the pairs of photos whose
embeddings (pretrained body features) lie within a cosine distance ``threshold`` of each other, found
through each photo's top-``k`` neighbours. Every photo gets a group id (photos in no pair get one of
their own), so the ids can feed scikit-learn's ``GroupKFold``. :func:`without_twin` marks the photos of
a split with no photo of the others within a distance (an exact search of that split against the others:
no chain, no top-k). The groups' top-``k`` search can miss a pair when ``k`` closer look-alikes crowd it
out, so a twin group may be split in two (and GroupKFold then put the halves in different folds).

Pretrained features see look-alikes as well as twins: a threshold trades groups that miss a twin against
groups of different garments (benchmarks/README.md, "Out-of-split checks", has sheets of pairs per bin).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Cosine distance of pretrained efficientnet_lite0 body features at or under which two photos of
#: clothing-dataset-small are taken as one garment. Chosen by eye on sheets of pairs per distance bin
#: (``benchmarks/outofsplit.py --pairs-sheet``; benchmarks/README.md, "Out-of-split checks"): the same
#: garment shot twice on one backdrop sits at 0.06–0.10, beside look-alikes (plain jeans, white T-shirts
#: on one backdrop); over 0.10 nearly every pair is two garments, and connected components chain them
#: (0.15: a group of 94 photos). On another backdrop a twin lies further (a sweater: 0.146).
DEFAULT_GROUP_THRESHOLD = 0.10
#: The generous distance of :func:`without_twin`: it takes in the sweater shot on two backdrops (one
#: photo in test, one in train) at 0.146; the pairs between 0.15 and 0.20 looked at were look-alikes, and
#: excluding a photo that close to a training photo, if anything, makes the "unseen" subset harder.
DEFAULT_TWIN_THRESHOLD = 0.20


def candidate_pairs(vectors: np.ndarray, threshold: float = DEFAULT_GROUP_THRESHOLD, k: int = 10,
                    ok: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b, cosine distance) of rows of ``vectors`` (n, d) within ``threshold`` of each other
    among each row's top-``k`` neighbours; a < b, each pair once (:func:`.duplicates.knn_pairs`). Rows
    not ``ok`` are never paired.

    >>> a, b, d = candidate_pairs(np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0]]), threshold=0.01, k=2)
    >>> a.tolist(), b.tolist()
    ([0], [1])
    """
    from .duplicates import knn_distances, knn_pairs, self_neighbors

    vectors = np.asarray(vectors, dtype=np.float32)
    rows, neighbors = self_neighbors(vectors, ok, k, index="exact")
    return knn_pairs(rows, neighbors, knn_distances(vectors, rows, neighbors), threshold)


def near_duplicate_groups(vectors: np.ndarray, threshold: float = DEFAULT_GROUP_THRESHOLD, k: int = 10,
                          ok: np.ndarray | None = None) -> np.ndarray:
    """Group id int64 (n,) of each row of ``vectors`` (n, d): rows within ``threshold`` cosine distance of
    one of their top-``k`` neighbours share a group (transitively); ids 0, 1, … largest group first, then
    one id per ungrouped row in row order. Rows not ``ok`` are never paired.

    >>> v = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [-1.0, 0.0]])
    >>> near_duplicate_groups(v, threshold=0.01, k=2).tolist()
    [0, 0, 1, 2]
    """
    from .duplicates import connected_clusters

    a, b, _ = candidate_pairs(vectors, threshold, k, ok)
    clusters = connected_clusters(len(vectors), a, b)
    alone = clusters < 0
    clusters[alone] = clusters.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    return clusters


def twin_distance(vectors: np.ndarray, splits: Sequence, split: str = "test",
                  against: Sequence[str] = ("train", "valid"), ok: np.ndarray | None = None) -> np.ndarray:
    """Float64 (n,): the cosine distance of each ``ok`` row of ``split`` to its nearest ``ok`` row of an
    ``against`` split; inf elsewhere (rows of other splits, rows not ``ok``, no ``against`` row).

    An exact search of the split's rows against the others' rows, as
    :func:`fashion.insight.stage.find_leaks` does, not a top-k over all photos: look-alikes of its own
    split can never hide a row's twin. The distance is recomputed as ``1 - cos`` in float64.

    >>> v = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.05, 1.0]])
    >>> twin_distance(v, ["train", "test", "test", "train"]).round(4).tolist()
    [inf, 0.0013, 0.0012, inf]
    """
    from ..neighbors import build_index
    from .duplicates import pair_cosine_distances

    vectors = np.asarray(vectors, dtype=np.float32)
    splits = np.asarray(splits).astype(str)
    usable = np.ones(len(vectors), dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
    query = np.flatnonzero((splits == split) & usable)
    gallery = np.flatnonzero(np.isin(splits, list(against)) & usable)
    out = np.full(len(vectors), np.inf)
    if len(query) == 0 or len(gallery) == 0:
        return out
    _, idx = build_index("exact", metric="cosine").fit(vectors[gallery]).kneighbors(vectors[query], n_neighbors=1)
    out[query] = pair_cosine_distances(vectors, query, gallery[np.asarray(idx)[:, 0]])
    return out


def without_twin(vectors: np.ndarray, splits: Sequence, threshold: float = DEFAULT_TWIN_THRESHOLD,
                 split: str = "test", against: Sequence[str] = ("train", "valid"),
                 ok: np.ndarray | None = None) -> np.ndarray:
    """Bool (n,): rows of ``split`` with no ``against`` photo within ``threshold`` cosine distance
    (:func:`twin_distance`). Pairs, not groups: a generous threshold excludes every twin the pretrained
    features put that close without a chain of look-alikes taking in a whole class. Rows not ``ok``
    count as without twin (nothing to compare).

    >>> v = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.05, 1.0]])
    >>> without_twin(v, ["train", "test", "test", "valid"], threshold=0.01).tolist()
    [False, False, False, False]
    >>> without_twin(v, ["train", "test", "test", "test"], threshold=0.01).tolist()
    [False, False, True, True]
    """
    return (np.asarray(splits).astype(str) == split) & ~(twin_distance(vectors, splits, split, against, ok) <= threshold)


def group_summary(groups: np.ndarray, splits: Sequence, labels: Sequence) -> dict:
    """Counts: groups of two or more photos, photos in them, the largest, groups spanning splits and
    groups whose photos carry more than one label.

    >>> group_summary(np.array([0, 0, 1, 1, 2]), ["train", "test", "train", "train", "test"], list("aabca"))
    {'n_photos': 5, 'n_groups': 2, 'n_photos_grouped': 4, 'largest': 2, 'cross_split_groups': 1, 'mixed_label_groups': 1}
    """
    import pandas as pd

    frame = pd.DataFrame({"g": np.asarray(groups), "s": np.asarray(splits).astype(str),
                          "l": np.asarray(labels).astype(str)})
    per = frame.groupby("g").agg(size=("s", "size"), splits=("s", "nunique"), labels=("l", "nunique"))
    multi = per[per["size"] > 1]
    return {"n_photos": int(len(frame)), "n_groups": int(len(multi)), "n_photos_grouped": int(multi["size"].sum()),
            "largest": int(multi["size"].max()) if len(multi) else 0,
            "cross_split_groups": int((multi["splits"] > 1).sum()), "mixed_label_groups": int((multi["labels"] > 1).sum())}
