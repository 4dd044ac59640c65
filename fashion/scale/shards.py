"""Parquet shard files keyed on ``id``: atomic writer, torn-file cleanup, id scan, resume anti-join.

A shard is ``DIR/part-<first id>-<token>.parquet``, written to a temporary name and renamed, so a
reader sees whole files only. A file without a parquet footer (a copy or another writer cut short) is
*torn*: :func:`clean_torn` deletes it and the rows it held are computed again. Readers go through
:class:`ShardSet`, which keeps the first row of every id (a task retried after it wrote its shard can
leave an id twice; downstream never sees it twice).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

PART_GLOB = "part-*.parquet"
_MAGIC = b"PAR1"


def part_name(first_id: int) -> str:
    """A new shard's file name: sorts by its first id, unique across writers (random token)."""
    return f"part-{int(first_id):012d}-{uuid.uuid4().hex[:8]}.parquet"


def write_table(path: os.PathLike | str, table) -> Path:
    """Write a ``pyarrow.Table`` to ``path`` atomically (temporary sibling, fsync, rename)."""
    import pyarrow.parquet as pq

    from ..atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_shard(directory: os.PathLike | str, table) -> Path:
    """Write ``table`` (with an ``id`` column) as a new shard of ``directory``; returns its path."""
    ids = table.column("id")
    first = int(ids[0].as_py()) if len(ids) else 0
    return write_table(Path(directory) / part_name(first), table)


def vector_array(vectors: np.ndarray):
    """(n, d) float32 → ``pyarrow.FixedSizeListArray`` of length n (zero-copy of the values)."""
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def vectors_of(column) -> np.ndarray:
    """A fixed-size-list (or list) column → (n, d) float32."""
    import pyarrow as pa

    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if pa.types.is_fixed_size_list(column.type):
        d = column.type.list_size
    else:
        d = len(column[0].as_py())
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, d)


def is_complete(path: os.PathLike | str) -> bool:
    """True when ``path`` is a whole parquet file (footer magic present and the metadata parses)."""
    import pyarrow.parquet as pq

    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 12:
                return False
            f.seek(-4, os.SEEK_END)
            if f.read(4) != _MAGIC:
                return False
        pq.read_metadata(path)
        return True
    except Exception:  # noqa: BLE001 - any unreadable footer means the file is torn
        return False


def list_parts(directory: os.PathLike | str) -> list[Path]:
    """The shard files of ``directory`` in name order ([] when it does not exist)."""
    directory = Path(directory)
    return sorted(directory.glob(PART_GLOB)) if directory.is_dir() else []


def clean_torn(directory: os.PathLike | str) -> list[Path]:
    """Delete torn shards and leftover temporary files in ``directory``; returns what was deleted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = [p for p in list_parts(directory) if not is_complete(p)]
    removed += [p for p in directory.glob(".part-*.tmp*")]
    for p in removed:
        p.unlink(missing_ok=True)
    if removed:
        log.warning("%s: deleted %d torn or temporary shard files: %s", directory, len(removed),
                    ", ".join(p.name for p in removed[:5]))
    return removed


def read_ids(directory: os.PathLike | str) -> np.ndarray:
    """The ``id`` column of every complete shard of ``directory``, concatenated (int64; may repeat)."""
    import pyarrow.parquet as pq

    parts = [pq.read_table(p, columns=["id"]).column("id").to_numpy() for p in list_parts(directory)
             if is_complete(p)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def missing_ids(all_ids: np.ndarray, done_ids: np.ndarray) -> np.ndarray:
    """The resume anti-join: sorted ids of ``all_ids`` not in ``done_ids``.

    >>> missing_ids(np.arange(6), np.array([4, 1, 1, 9]))
    array([0, 2, 3, 5])
    """
    return np.setdiff1d(np.asarray(all_ids, dtype=np.int64), np.asarray(done_ids, dtype=np.int64))


def ids_digest(ids: np.ndarray) -> str:
    """A short sha256 of a set of ids (order ignored): what a stage's settings record of its rows."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(np.sort(np.asarray(ids, np.int64))).tobytes()).hexdigest()[:16]


@dataclass
class Part:
    """One shard of a :class:`ShardSet`: its file, rows and the rows kept (first occurrence of an id)."""

    path: Path
    ids: np.ndarray  # (rows,) int64
    keep: np.ndarray  # (rows,) bool: first occurrence of the id (and ok, when the set filters on it)


class ShardSet:
    """The complete shards of a directory with every id once (first occurrence in name order).

    ``only_ok=True`` (embeddings) also drops rows whose ``ok`` is False. ``ids`` are the kept ids in
    part order; :meth:`iter_batches` yields (ids, table) per part with only the kept rows.
    """

    def __init__(self, directory: os.PathLike | str, only_ok: bool = False):
        import pyarrow.parquet as pq

        self.directory = Path(directory)
        self.parts: list[Part] = []
        seen: set[int] = set()
        for path in list_parts(self.directory):
            if not is_complete(path):
                log.warning("%s: skipping torn shard", path)
                continue
            cols = ["id", "ok"] if only_ok else ["id"]
            t = pq.read_table(path, columns=cols)
            ids = t.column("id").to_numpy().astype(np.int64)
            keep = np.ones(len(ids), dtype=bool)
            for j, i in enumerate(ids.tolist()):
                if i in seen:
                    keep[j] = False
                else:
                    seen.add(i)
            if only_ok:
                keep &= t.column("ok").to_numpy(zero_copy_only=False).astype(bool)
            self.parts.append(Part(path, ids, keep))
        self.n_duplicates = sum(int((~p.keep).sum()) for p in self.parts) if not only_ok else None

    def restrict(self, ids: np.ndarray | None) -> "ShardSet":
        """Keep only the rows whose id is in ``ids`` (None: all); returns self."""
        if ids is not None:
            for part in self.parts:
                part.keep &= np.isin(part.ids, ids)
        return self

    @property
    def ids(self) -> np.ndarray:
        kept = [p.ids[p.keep] for p in self.parts]
        return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(sum(p.keep.sum() for p in self.parts))

    def read(self, part: Part, columns: Sequence[str] | None = None):
        """The kept rows of one part as a ``pyarrow.Table``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(part.path, columns=list(columns) if columns else None)
        return table if part.keep.all() else table.filter(pa.array(part.keep))

    def iter_batches(self, columns: Sequence[str] | None = None) -> Iterator[tuple[Part, object]]:
        for part in self.parts:
            if part.keep.any():
                yield part, self.read(part, columns)
