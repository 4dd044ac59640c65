"""The one chunked-cache mechanism: a directory of atomically written chunk files mapping key → entry.

Two users, each a subclass that says how one chunk is read and written: the embedding cache
(:class:`fashion.embedding.cache.ChunkCache`: ``.npz`` of vectors) and the colour cache
(:class:`fashion.colour.stage.ColourCache`: ``.parquet`` of colour columns). What they share lives here:

- the directory's name carries a digest of every setting that shapes an entry (:func:`settings_tag`), so
  a change in any of them misses the cache as a whole;
- chunks are ``chunk_NNNNN-<token><suffix>``, each written atomically as the work goes, so a killed run
  loses at most one chunk; each writer names its chunks with its own random token, so concurrent runs
  sharing one directory never replace each other's chunks;
- a damaged chunk is logged and recomputed, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import Iterable

from .atomic import atomic_write, ensure_dir

log = logging.getLogger("fashion.cache")


def settings_tag(**settings) -> str:
    """12 hex digits of SHA-256 over every setting that shapes a cached entry (JSON, keys sorted).

    >>> settings_tag(mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2]) == settings_tag(std=[0.2, 0.2, 0.2], mean=[0.5, 0.5, 0.5])
    True
    >>> settings_tag(mean=[0.5, 0.5, 0.5]) == settings_tag(mean=[0.5, 0.5, 0.6])
    False
    """
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ChunkStore:
    """``chunk_NNNNN-<token><suffix>`` files of one directory (created): ``entries`` maps key → entry,
    read from every chunk at open; :meth:`write` adds one chunk. Subclasses set ``suffix`` and define
    :meth:`read_chunk` and :meth:`write_chunk`."""

    suffix = ""

    def __init__(self, directory: Path):
        self.dir = ensure_dir(directory)
        self.entries: dict = {}
        self.next_chunk = 0
        self.token = uuid.uuid4().hex[:12]  # this writer's own chunk names
        for chunk in sorted(self.dir.glob(f"chunk_*{self.suffix}")):
            try:
                self.next_chunk = max(self.next_chunk, int(chunk.name[len("chunk_"):].split("-")[0]) + 1)
                self.entries.update(self.read_chunk(chunk))
            except Exception as exc:  # noqa: BLE001 - a damaged chunk is recomputed, not fatal
                log.warning("ignoring unreadable cache chunk %s: %s", chunk, exc)

    def write(self, keys: list[str], *columns) -> None:
        """One chunk of ``keys`` and their ``columns`` (as :meth:`write_chunk` takes them), written atomically."""
        path = self.dir / f"chunk_{self.next_chunk:05d}-{self.token}{self.suffix}"
        self.next_chunk += 1
        with atomic_write(path, "wb") as f:
            self.write_chunk(f, keys, *columns)
        log.debug("wrote cache chunk %s (%d rows)", path, len(keys))

    def read_chunk(self, path: Path) -> Iterable[tuple[str, object]]:
        """(key, entry) pairs of one chunk file; any exception: the chunk is skipped."""
        raise NotImplementedError

    def write_chunk(self, file, keys: list[str], *columns) -> None:
        """Write one chunk of ``keys`` and ``columns`` to the open binary ``file``."""
        raise NotImplementedError
