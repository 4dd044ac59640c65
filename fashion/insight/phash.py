"""Perceptual-hash duplicates: no network, no model — ``imagehash.phash`` bits and Hamming distance.

For users who want copies found without embedding (as imagededup's ``PHash``). The 64-bit DCT hash of
each photo is compared with every other through the project's exact kNN index: a hash as a 0/1 vector
has squared Euclidean distance equal to its Hamming distance, so the top-K search is the same
``fit``/``kneighbors`` as the embeddings' and stays blockwise in memory.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

HASH_SIZE = 8  # 8 x 8 = 64 bits, imagehash's (and imagededup's) default
#: Hamming distance (of 64 bits) at or under which two photos are copies; benchmarks/duplicates.py.
DEFAULT_PHASH_THRESHOLD = 2


def phash_bits(paths: Sequence, hash_size: int = HASH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(bits uint8 (n, hash_size²), ok bool (n,)) of each image; unreadable images get zeros, ok False."""
    from ..errors import FashionError, ImageError

    try:
        import imagehash
    except ImportError:
        raise FashionError("the perceptual-hash method needs the imagehash package: "
                           "pip install 'fashion[insight]' (or imagehash)") from None
    from ..images import open_image

    bits = np.zeros((len(paths), hash_size * hash_size), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            image = open_image(path)
        except (ImageError, OSError, ValueError) as exc:
            log.debug("phash skipped %s: %s", path, exc)
            continue
        bits[i] = np.asarray(imagehash.phash(image, hash_size=hash_size).hash, dtype=np.uint8).reshape(-1)
        ok[i] = True
    return bits, ok


def hamming_neighbors(bits: np.ndarray, ok: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` by Hamming distance among the ``ok`` rows: (query_rows (q,), neighbor_rows (q, k),
    distances float64 (q, k) in bits), the same shape as a retrieval run's neighbours table."""
    from ..neighbors import build_index

    rows = np.flatnonzero(np.asarray(ok))
    k = min(int(k), len(rows) - 1)
    if k < 1:
        return rows, np.zeros((len(rows), 0), dtype=np.int64), np.zeros((len(rows), 0))
    index = build_index("exact", metric="euclidean").fit(np.asarray(bits, dtype=np.float32)[rows])
    dist, idx = index.kneighbors(None, n_neighbors=k)
    return rows, rows[np.asarray(idx)], np.rint(np.asarray(dist, dtype=np.float64) ** 2)
