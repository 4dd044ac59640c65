"""The writer stage's store: an embedding cache of atomically written ``chunk_NNNNN.npz`` files.

Each chunk holds ``keys`` (path, mtime, file size, bbox), ``vectors``, ``ok`` and ``reasons``. A
rerun reuses every cached key; a run killed half-way loses at most one chunk.
"""

from __future__ import annotations

import logging
import os
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
    return f"{os.path.abspath(path)}\x1f{st.st_mtime_ns}\x1f{st.st_size}\x1f{box}"


class ChunkCache:
    """Directory of ``chunk_NNNNN.npz`` files mapping key → (vector, ok, reason)."""

    def __init__(self, directory: Path):
        self.dir = ensure_dir(directory)
        self.entries: dict[str, tuple[np.ndarray, bool, str]] = {}
        self.next_chunk = 0
        for chunk in sorted(self.dir.glob("chunk_*.npz")):
            try:
                self.next_chunk = max(self.next_chunk, int(chunk.stem.split("_")[1]) + 1)
                with np.load(chunk, allow_pickle=False) as z:
                    for key, vec, ok, reason in zip(z["keys"], z["vectors"], z["ok"], z["reasons"]):
                        self.entries[str(key)] = (vec, bool(ok), str(reason))
            except Exception as exc:  # noqa: BLE001 - a damaged chunk is recomputed, not fatal
                log.warning("ignoring unreadable cache chunk %s: %s", chunk, exc)

    def write(self, keys: list[str], vectors: np.ndarray, ok: np.ndarray, reasons: list[str]) -> None:
        """Write one chunk atomically."""
        path = self.dir / f"chunk_{self.next_chunk:05d}.npz"
        self.next_chunk += 1
        with atomic_write(path, "wb") as f:
            np.savez(f, keys=np.array(keys, dtype=str), vectors=vectors.astype(np.float32, copy=False),
                     ok=np.asarray(ok, dtype=bool), reasons=np.array(reasons, dtype=str))
        log.debug("wrote cache chunk %s (%d rows)", path, len(keys))
