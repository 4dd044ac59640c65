"""The colour stage of a run: the colour columns (:data:`COLUMNS`) of every item of an item table.

:func:`add_colour_columns` fills ``colour`` (a palette family or ``multicolour``), ``colour_2`` (the
runner-up family), ``colour_hex`` and ``colour_share`` for every row that lacks them, with
:func:`fashion.colour.table.photo_colour` (the function a query photo's colour comes from too), so that
``colour=blue`` works as a filter and a facet through :mod:`fashion.filters` like any other column.
Rows that already carry a colour keep it (``fashion add`` computes only its new photos; rewriting a
run's item table computes nothing); removed items (role ``removed``) are left empty.

Cache: one directory per method, ``<cache>/colour-<tag>/`` (``tag``: :func:`method_tag`, a digest of
everything that shapes a colour: the palette, the segmentation and clustering constants, the size),
holding ``chunk-<token>-<n>.parquet`` files of (key, the four columns, reason), the key being the
photo's SHA-256 and its bounding box: a renamed or copied photo hits the cache, an edited one misses it,
and a change to the method misses it as a whole. Chunks are written atomically as the work goes, so a
killed run resumes where it stopped.

Work: photos are coloured in a process pool (``spawn``: no state of the parent is inherited) when more
than ``POOL_ABOVE`` of them miss the cache and more than one core is free; on the bundled sample one
photo costs ~35 ms on one core (decode + colour), so the pool's start (~2 s for two workers that import
scikit-image) pays from a few hundred photos.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from ..run import layout
from . import dominant, garment, palette
from .table import COLUMNS, photo_colour

log = logging.getLogger(__name__)

METHOD_VERSION = 2  # bump when the colour code changes in a way its constants do not show
POOL_ABOVE = 256  # photos to colour before a process pool pays for its start
CHUNK = 256  # photos per cache chunk (a killed run loses at most one chunk's work)
HASH_COLUMN = layout.HASH_COLUMN  # an item table's column of file contents (fashion.catalog), reused when present
TEXT_COLUMNS = ("colour", "colour_2", "colour_hex")


def method_tag() -> str:
    """12 hex digits of SHA-256 over everything that shapes a photo's colour columns."""
    constants = {module.__name__: {name: value for name, value in vars(module).items()
                                   if name.isupper() and isinstance(value, (int, float, str, tuple))}
                 for module in (garment, dominant)}
    text = json.dumps({"version": METHOD_VERSION, "palette": [tuple(vars(s).values()) for s in palette.PALETTE],
                       "constants": constants}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _bbox(value) -> tuple | None:
    """A bbox cell (a tuple from a dataset, "x1 y1 x2 y2" or "" from a run's parquet) as a tuple or None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return tuple(float(v) for v in value.split()) or None
    return tuple(value) or None


def _key(sha: str, bbox) -> str:
    return sha if bbox is None else f"{sha}@{','.join(str(int(round(float(v)))) for v in bbox)}"


class ColourCache:
    """``chunk-*.parquet`` files of one method's directory: key → (the colour columns, reason)."""

    def __init__(self, directory: Path):
        import pyarrow.parquet as pq

        self.dir = Path(directory)
        self.entries: dict[str, tuple[dict, str]] = {}
        self.token, self.count = uuid.uuid4().hex[:12], 0
        for chunk in sorted(self.dir.glob("chunk-*.parquet")) if self.dir.is_dir() else ():
            try:
                rows = pq.read_table(chunk).to_pylist()
            except Exception as exc:  # noqa: BLE001 - a damaged chunk is recomputed, not fatal
                log.warning("ignoring unreadable colour cache chunk %s: %s", chunk, exc)
                continue
            for row in rows:
                self.entries[row["key"]] = ({c: row[c] for c in COLUMNS}, row["reason"])

    def write(self, keys: list[str], results: list[tuple[dict, str]]) -> None:
        """One chunk, written atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..atomic import atomic_path

        table = pa.table({"key": pa.array(keys, pa.string()),
                          **{c: pa.array([r[c] for r, _ in results], pa.string()) for c in TEXT_COLUMNS},
                          "colour_share": pa.array([r["colour_share"] for r, _ in results], pa.float64()),
                          "reason": pa.array([reason for _, reason in results], pa.string())})
        with atomic_path(self.dir / f"chunk-{self.token}-{self.count:05d}.parquet") as tmp:
            pq.write_table(table, tmp)
        self.count += 1
        self.entries.update(zip(keys, results))


def _colour_job(job: tuple[str, tuple | None]) -> tuple[dict, str]:
    return photo_colour(job[0], job[1])


def _workers(workers: int | None) -> int:
    if workers is not None:
        return max(1, int(workers))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _compute(jobs: list[tuple[str, tuple | None]], workers: int, pool_above: int):
    """Each job's (columns, reason), in order, one chunk at a time (a generator of lists)."""
    if workers > 1 and len(jobs) > pool_above:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for start in range(0, len(jobs), CHUNK):
                yield list(pool.map(_colour_job, jobs[start:start + CHUNK], chunksize=8))
        return
    for start in range(0, len(jobs), CHUNK):
        yield [_colour_job(job) for job in jobs[start:start + CHUNK]]


def add_colour_columns(items, cache_dir: os.PathLike | str | None = None, workers: int | None = None,
                       pool_above: int = POOL_ABOVE):
    """``items`` (an item table: ``path``, optionally ``bbox``, ``role``, ``sha256``) with the colour columns,
    computed for the rows that lack them (the same frame when none does). ``cache_dir``: the run's cache
    directory (None: no cache); ``workers``: processes (default: the usable cores)."""
    import pandas as pd

    has = all(c in items.columns for c in COLUMNS)
    # missing: null, or "" (fashion.catalog fills the text cells of appended rows with "")
    todo = (np.ones(len(items), dtype=bool) if not has
            else (items["colour"].isna() | (items["colour"].astype(str) == "")).to_numpy().copy())
    if "role" in items.columns:
        todo &= (items["role"].astype(str) != "removed").to_numpy()
    if has and not todo.any():
        return items
    table = items.copy()
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = np.nan if column == "colour_share" else None
    rows = np.flatnonzero(todo)
    paths = table["path"].astype(str).to_numpy()
    boxes = table["bbox"].to_numpy(dtype=object) if "bbox" in table.columns else np.full(len(table), None, object)
    hashes = table[HASH_COLUMN].to_numpy(dtype=object) if HASH_COLUMN in table.columns else None
    skipped: Counter = Counter()
    keyed: list[tuple[int, str]] = []
    for row in rows:
        sha = hashes[row] if hashes is not None and isinstance(hashes[row], str) and hashes[row] else None
        if sha is None:
            try:
                from ..rundir import file_sha256

                sha = file_sha256(paths[row])
            except OSError as exc:
                skipped[f"cannot read the file ({exc.strerror or type(exc).__name__})"] += 1
                continue
        keyed.append((row, _key(sha, _bbox(boxes[row]))))
    cache = ColourCache(Path(cache_dir) / f"colour-{method_tag()}") if cache_dir is not None else None
    known = dict(cache.entries) if cache is not None else {}
    missing: dict[str, tuple[str, tuple | None]] = {}
    for row, key in keyed:
        if key not in known and key not in missing:
            missing[key] = (paths[row], _bbox(boxes[row]))
    results: dict[str, tuple[dict, str]] = dict(known)
    keys = list(missing)
    done = 0
    for batch in _compute([missing[k] for k in keys], _workers(workers), pool_above):
        batch_keys = keys[done:done + len(batch)]
        done += len(batch)
        results.update(zip(batch_keys, batch))
        if cache is not None:
            cache.write(batch_keys, batch)
    values = {c: table[c].to_numpy(dtype=np.float64, na_value=np.nan).copy() if c == "colour_share"
              else table[c].to_numpy(dtype=object, na_value=None).copy() for c in COLUMNS}
    for row, key in keyed:
        columns, reason = results[key]
        if reason:
            skipped[reason] += 1
            continue
        for column in COLUMNS:
            values[column][row] = columns[column]
    for column in COLUMNS:
        table[column] = pd.Series(values[column], index=table.index,
                                  dtype="float64" if column == "colour_share" else object)
    log.info("colour: %d photos, %d from the cache, %d computed", len(keyed), sum(k in known for _, k in keyed),
             len(keys))
    if skipped:
        log.warning("colour: %d of %d photos skipped (%s)", sum(skipped.values()), len(rows),
                    ", ".join(f"{n} {reason}" for reason, n in skipped.most_common()))
    return table


def colour_stage(items, ok, cache_dir=None) -> dict:
    """The colour stage as an item-table stage (:data:`fashion.pipeline.items.ITEM_TABLE_STAGES`):
    ``{column: values}`` of :data:`COLUMNS` for every row of ``items`` (``ok`` is not needed: a photo the
    network could not read is coloured or skipped on its own). ``cache_dir``: the run's cache."""
    table = add_colour_columns(items.drop(columns=[c for c in COLUMNS if c in items.columns]), cache_dir=cache_dir)
    return {column: table[column] for column in COLUMNS}


colour_stage.columns = COLUMNS  # what it adds (fashion.run.upgrade computes them for runs that lack them)
colour_stage.stage = "colour"  # its line in a run's timings (fashion.pipeline.items.stage_name)
