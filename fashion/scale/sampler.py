"""A seeded uniform sample of vectors across the shards of an embedding set (not the first N rows)."""

from __future__ import annotations

import numpy as np

from ..neighbors.ivfpq import sample_positions
from . import shards


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
