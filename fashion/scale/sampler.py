"""A seeded uniform sample of vectors across the shards of an embedding set (not the first N rows)."""

from __future__ import annotations

import numpy as np

from . import shards


def sample_positions(total: int, size: int, seed: int) -> np.ndarray:
    """``min(size, total)`` distinct positions in ``range(total)``, uniform, seeded, sorted.

    >>> sample_positions(10, 3, seed=0).tolist() == sample_positions(10, 3, seed=0).tolist()
    True
    >>> sample_positions(4, 10, seed=0).tolist()
    [0, 1, 2, 3]
    """
    if size < 1:
        raise ValueError(f"sample size must be positive, got {size}")
    if size >= total:
        return np.arange(total, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False)).astype(np.int64)


def sample_vectors(shard_set: "shards.ShardSet", size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors): a uniform sample of the set's kept rows, read one shard at a time.

    Positions are drawn over the concatenation of every shard's kept rows, so each row has the same
    chance whatever shard it is in; only the shards that hold a picked row are read.
    """
    counts = np.array([int(p.keep.sum()) for p in shard_set.parts], dtype=np.int64)
    picks = sample_positions(int(counts.sum()), size, seed)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    ids, vecs = [], []
    for j, part in enumerate(shard_set.parts):
        lo, hi = np.searchsorted(picks, [bounds[j], bounds[j + 1]])
        if hi == lo:
            continue
        table = shard_set.read(part, ["id", "vector"])
        rows = picks[lo:hi] - bounds[j]
        ids.append(table.column("id").to_numpy()[rows])
        vecs.append(shards.vectors_of(table.column("vector"))[rows])
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate(ids), np.concatenate(vecs)
