"""The item table kept beside a run as one memory-mapped Arrow file, so that a server's start does not
decode the parquet parts again.

Decoding a 1,000,000-row item table from parquet (snappy, dictionary pages) and widening its strings
for pandas costs 0.4-1.8 s of a start on two cores; the same table mapped from an uncompressed Arrow IPC
file with ``large_string`` columns (pandas' own string layout: no cast) is read in ~0.05 s, the pages
loaded as they are touched (benchmarks/README.md, "the 1M item table"). The file is a cache, not part of
the run: it lies in ``RUN/cache/items/`` (outside the manifest, carried over by reruns, as the saved
OpenVINO network), named by :func:`cache_key`, a digest of the parquet parts' SHA-256 as the manifest
records them, so a run whose item table changed (a rerun, ``fashion add``) never reads an old one.
The file's sampled fingerprint (:func:`fashion.rundir.sample_sha256`) is recorded beside it and checked
at every read, as the run's own large files are; a file that fails the check, or any read error, is
ignored and rewritten. A run directory that cannot be written (read-only) is read from parquet each time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_DIR = ("cache", "items")  # under the run directory
VERSION = 1  # of this file's layout: part of the key


def cache_key(manifest: dict, parts: list[str], tag: str = f"items-v{VERSION}") -> str | None:
    """A digest of a table's parts (run-relative names) and their SHA-256 in ``manifest``, seeded with
    ``tag`` (the cache and its layout version); None when the manifest does not list one of them with its
    hash."""
    files = manifest.get("files", {})
    digest = hashlib.sha256(tag.encode())
    for name in sorted(parts):
        sha = files.get(name, {}).get("sha256") if isinstance(files.get(name), dict) else None
        if not isinstance(sha, str):
            return None
        digest.update(f"\0{name}\0{sha}".encode())
    return digest.hexdigest()[:32]


def _paths(run_dir, key: str) -> tuple[Path, Path]:
    folder = Path(run_dir).joinpath(*CACHE_DIR)
    return folder / f"{key}.arrow", folder / f"{key}.json"


def load(run_dir, key: str):
    """The cached item table (a pyarrow Table over the memory-mapped file) of ``key``, or None when there
    is none or it fails its fingerprint or does not read."""
    import pyarrow as pa

    from ..rundir import sample_sha256

    data, meta = _paths(run_dir, key)
    if not (data.is_file() and meta.is_file()):
        return None
    try:
        recorded = json.loads(meta.read_text())
        if recorded.get("sample_sha256") != sample_sha256(data):
            log.warning("%s: does not match its fingerprint; the item table is read from its parquet parts", data)
            return None
        table = pa.ipc.open_file(pa.memory_map(str(data), "r")).read_all()
        table.validate()
        if table.num_rows != recorded.get("rows"):
            return None
        return table
    except (OSError, ValueError, pa.ArrowException) as exc:
        log.warning("%s: unreadable (%s); the item table is read from its parquet parts", data,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return None


def widened(table):
    """``table`` with its string columns as ``large_string`` (what pandas' str dtype holds: no cast later)."""
    import pyarrow as pa

    fields = [pa.field(f.name, pa.large_string(), f.nullable) if pa.types.is_string(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def save(run_dir, key: str, table) -> bool:
    """Write ``table`` (see :func:`widened`) as the cache of ``key`` and drop the entries of other keys;
    False (logged, nothing raised) where the run directory cannot take it."""
    import pyarrow as pa

    from ..atomic import atomic_write
    from ..errors import FashionError
    from ..rundir import sample_sha256

    data, meta = _paths(run_dir, key)
    try:
        with atomic_write(data) as f:
            with pa.ipc.new_file(f, table.schema) as writer:
                writer.write_table(table)
        with atomic_write(meta, "w") as f:
            json.dump({"version": VERSION, "rows": table.num_rows, "sample_sha256": sample_sha256(data)}, f)
        for old in data.parent.iterdir():  # earlier versions' tables: a live catalogue makes one per change
            if old.suffix in (".arrow", ".json") and old.stem != key and not old.name.startswith("."):
                old.unlink(missing_ok=True)
    except (OSError, FashionError, pa.ArrowException) as exc:
        log.info("%s: the item table is not cached (%s)", data.parent, str(exc).splitlines()[0][:200])
        return False
    return True
