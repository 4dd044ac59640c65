"""The writer stage's store: an embedding cache of atomically written ``chunk_NNNNN-<token>.npz`` files.

Each chunk holds ``keys`` (one image's identity: absolute path, size, mtime_ns, ctime_ns, inode, bbox),
``vectors``, ``ok`` and ``reasons``. A rerun reuses every cached key; a run killed half-way loses at
most one chunk. Everything else that shapes a vector (weights checksum, mean/std, size, resize, layer,
crop, runtime, precision) is in the directory's name (:func:`settings_tag`), so a change in any of
them misses the cache. Each writer names its chunks with its own random token: concurrent runs
sharing one cache directory never replace each other's chunks.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, ensure_dir

log = logging.getLogger("fashion.embedding")


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


def settings_tag(**settings) -> str:
    """12 hex digits of SHA-256 over every setting that shapes a vector (JSON, keys sorted).

    >>> settings_tag(mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2]) == settings_tag(std=[0.2, 0.2, 0.2], mean=[0.5, 0.5, 0.5])
    True
    >>> settings_tag(mean=[0.5, 0.5, 0.5]) == settings_tag(mean=[0.5, 0.5, 0.6])
    False
    """
    import hashlib
    import json

    text = json.dumps({"format": CACHE_FORMAT, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


CACHE_FORMAT = 2  # 2: keys carry ctime and inode; directory names carry settings_tag


class ChunkCache:
    """Directory of ``chunk_NNNNN-<token>.npz`` files mapping key → (vector, ok, reason)."""

    def __init__(self, directory: Path):
        from ..runfiles import check_npz

        self.dir = ensure_dir(directory)
        self.entries: dict[str, tuple[np.ndarray, bool, str]] = {}
        self.next_chunk = 0
        self.token = uuid.uuid4().hex[:12]  # this writer's own chunk names
        for chunk in sorted(self.dir.glob("chunk_*.npz")):
            try:
                self.next_chunk = max(self.next_chunk, int(chunk.stem.split("_")[1].split("-")[0]) + 1)
                check_npz(chunk)  # a crafted header claiming a huge array is refused before np.load
                with np.load(chunk, allow_pickle=False) as z:
                    for key, vec, ok, reason in zip(z["keys"], z["vectors"], z["ok"], z["reasons"]):
                        self.entries[str(key)] = (vec, bool(ok), str(reason))
            except Exception as exc:  # noqa: BLE001 - a damaged chunk is recomputed, not fatal
                log.warning("ignoring unreadable cache chunk %s: %s", chunk, exc)

    def write(self, keys: list[str], vectors: np.ndarray, ok: np.ndarray, reasons: list[str]) -> None:
        """Write one chunk atomically."""
        path = self.dir / f"chunk_{self.next_chunk:05d}-{self.token}.npz"
        self.next_chunk += 1
        with atomic_write(path, "wb") as f:
            np.savez(f, keys=np.array(keys, dtype=str), vectors=vectors.astype(np.float32, copy=False),
                     ok=np.asarray(ok, dtype=bool), reasons=np.array(reasons, dtype=str))
        log.debug("wrote cache chunk %s (%d rows)", path, len(keys))
