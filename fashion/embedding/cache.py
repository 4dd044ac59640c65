"""The writer stage's store: an embedding cache of atomically written ``chunk_NNNNN-<token>.npz`` files.

Each chunk holds ``keys`` (one image's identity: absolute path, size, mtime_ns, ctime_ns, inode, bbox),
``vectors``, ``ok`` and ``reasons``. A rerun reuses every cached key; a run killed half-way loses at
most one chunk. Everything else that shapes a vector (weights checksum, mean/std, size, resize, layer,
crop, runtime, precision) is in the directory's name (:func:`fashion.chunkstore.settings_tag`, with
:data:`CACHE_FORMAT`), so a change in any of them misses the cache. The chunk files, their names and
their writing are the one chunked-cache mechanism of :mod:`fashion.chunkstore`.
"""

from __future__ import annotations

import os

import numpy as np

from .. import chunkstore

CACHE_FORMAT = 2  # 2: keys carry ctime and inode; directory names carry settings_tag


def cache_key(path: str, bbox) -> str | None:
    """Identity of one image's embedding input; None when the file cannot be stat'ed (never cached)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    box = "" if bbox is None else ",".join(str(int(round(float(v)))) for v in bbox)
    # ctime and inode too: new content written with its old size and mtime restored still misses
    return (f"{os.path.abspath(path)}\x1f{st.st_mtime_ns}\x1f{st.st_size}\x1f{box}\x1f{st.st_ctime_ns}"
            f"\x1f{st.st_ino}")


class ChunkCache(chunkstore.ChunkStore):
    """Directory of ``chunk_NNNNN-<token>.npz`` files mapping key → (vector, ok, reason)."""

    suffix = ".npz"

    def read_chunk(self, path):
        from ..runfiles import check_npz

        check_npz(path)  # a crafted header claiming a huge array is refused before np.load
        with np.load(path, allow_pickle=False) as z:
            return [(str(key), (vec, bool(ok), str(reason)))
                    for key, vec, ok, reason in zip(z["keys"], z["vectors"], z["ok"], z["reasons"])]

    def write_chunk(self, file, keys, vectors, ok, reasons) -> None:
        np.savez(file, keys=np.array(keys, dtype=str), vectors=vectors.astype(np.float32, copy=False),
                 ok=np.asarray(ok, dtype=bool), reasons=np.array(reasons, dtype=str))
