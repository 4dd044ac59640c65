"""The colour stage of a run: the colour columns (:data:`COLUMNS`) of every item of an item table.

:func:`add_colour_columns` fills ``colour`` (a palette family or ``multicolour``), ``colour_2`` (the
runner-up family), ``colour_hex`` and ``colour_share`` for every row with
:func:`fashion.colour.table.photo_colour` (the function a query photo's colour comes from too), so that
``colour=blue`` works as a filter and a facet through :mod:`fashion.filters` like any other column.
Removed items (role ``removed``) are left empty. ``fashion add`` runs the stage on its new photos only.

Cache: one directory per method, ``<cache>/colour-<tag>/`` (``tag``: :func:`method_tag`, a digest of
everything that shapes a colour: the palette, the segmentation and clustering constants, the size, the
fitted decision's weights),
holding ``chunk_NNNNN-<token>.parquet`` files of (key, the four columns, reason) (:class:`ColourCache`, on
the one chunked-cache mechanism of :mod:`fashion.chunkstore`), the key being the photo's SHA-256 and its
bounding box: a renamed or copied photo hits the cache, an edited one misses it, and a change to the
method misses it as a whole. Chunks are written atomically as the work goes, so a killed run resumes
where it stopped.

Work: a photo's SHA-256 comes from the item table's ``sha256`` column where it has one (``fashion add``
stores it); the others are hashed by the job that colours them, so hashing runs in the worker processes
too, and a job whose key the cache holds stops after the hash. Jobs run in a process pool (``spawn``:
no state of the parent is inherited) when more than ``POOL_ABOVE`` more jobs than the cache holds
entries wait (at least that many miss, unless photos repeat) and more than one core is free; on the
bundled sample one photo costs ~7 ms of CPU (hash, decode and colour, measured on two loaded cores; ~23 ms
before the colour was computed at 96 px from a reduced decode with a shipped table of named Lab colours),
so the pool's start (~2 s for two workers that import scikit-image, measured with the slower code) pays
from several hundred photos; ``POOL_ABOVE`` was set for the slower code and has not been re-measured.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..chunkstore import ChunkStore, settings_tag
from ..errors import Cancelled
from ..run import layout
from . import constancy, dominant, features, garment, model, palette
from .table import COLUMNS, photo_colour

log = logging.getLogger(__name__)

METHOD_VERSION = 6  # 6: the hex of a family no cluster is of, from the nearest cluster; 5: the family from the fitted decision (model); 4: the light read from the background (constancy); bump when the colour code changes in a way its constants do not show
POOL_ABOVE = 256  # photos to colour before a process pool pays for its start
CHUNK = 256  # photos per cache chunk (a killed run loses at most one chunk's work)
HASH_COLUMN = layout.HASH_COLUMN  # an item table's column of file contents (fashion.catalog), reused when present
TEXT_COLUMNS = ("colour", "colour_2", "colour_hex")


def feature_settings() -> dict:
    """The constants (upper-case numbers, strings, tuples) of the modules that turn a photo into its colour
    features: the mask (garment), the light correction (constancy), the clusters (dominant), the features."""
    return {module.__name__: {name: value for name, value in vars(module).items()
                              if name.isupper() and isinstance(value, (int, float, str, tuple))}
            for module in (garment, constancy, dominant, features)}


def method_tag() -> str:
    """12 hex digits of SHA-256 over everything that shapes a photo's colour columns."""
    return settings_tag(version=METHOD_VERSION, palette=[tuple(vars(s).values()) for s in palette.PALETTE],
                        cell=palette.CELL, constants=feature_settings(), model=model.shipped().digest)


def _bbox(value) -> tuple | None:
    """A bbox cell (a tuple from a dataset, "x1 y1 x2 y2" or "" from a run's parquet) as a tuple or None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return tuple(float(v) for v in value.split()) or None
    return tuple(value) or None


def _key(sha: str, bbox) -> str:
    return sha if bbox is None else f"{sha}@{','.join(str(int(round(float(v)))) for v in bbox)}"


class ColourCache(ChunkStore):
    """``chunk_NNNNN-<token>.parquet`` files of one method's directory: key → (the colour columns, reason)."""

    suffix = ".parquet"

    def read_chunk(self, path):
        import pyarrow.parquet as pq

        return [(row["key"], ({c: row[c] for c in COLUMNS}, row["reason"])) for row in pq.read_table(path).to_pylist()]

    def write_chunk(self, file, keys, results) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"key": pa.array(keys, pa.string()),
                                 **{c: pa.array([r[c] for r, _ in results], pa.string()) for c in TEXT_COLUMNS},
                                 "colour_share": pa.array([r["colour_share"] for r, _ in results], pa.float64()),
                                 "reason": pa.array([reason for _, reason in results], pa.string())}), file)


def _colour_job(job: tuple[str, tuple | None]) -> tuple[dict, str]:
    return photo_colour(job[0], job[1])


def _row_job(job: tuple[str, tuple | None, str | None], known) -> tuple[str | None, tuple[dict, str] | None, str]:
    """One photo (path, bbox, its SHA-256 or None): (its cache key, its (columns, reason) when coloured
    here, None when ``known`` holds the key, ""), or (None, None, why it cannot be read)."""
    path, bbox, sha = job
    if sha is None:
        from ..rundir import file_sha256

        try:
            sha = file_sha256(path)
        except OSError as exc:
            return None, None, f"cannot read the file ({exc.strerror or type(exc).__name__})"
    key = _key(sha, bbox)
    return key, (None if key in known else _colour_job((path, bbox))), ""


_KNOWN: frozenset = frozenset()  # a pool worker's copy of the cache's keys (_start_worker)


def _start_worker(known: frozenset) -> None:
    global _KNOWN
    _KNOWN = known


def _pool_job(job):
    return _row_job(job, _KNOWN)


def _workers(workers: int | None) -> int:
    if workers is not None:
        return max(1, int(workers))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _checked(results, stop):
    """The items of ``results``, raising :class:`~fashion.errors.Cancelled` before each once ``stop`` is set."""
    for result in results:
        if stop is not None and stop.is_set():
            raise Cancelled("the colour stage was cancelled")
        yield result


def _compute(jobs: list, known, workers: int, pool_above: int, apart: bool = False, stop=None):
    """Each job's :func:`_row_job`, in order, one chunk at a time (a generator of lists). A job with its
    SHA-256 is a sure miss of the cache (only new contents are queued); one without may hit it.
    ``apart``: a pool even of one worker (the caller's process is busy with other work). ``stop``: a
    ``threading.Event``, checked after each photo: once set, :class:`~fashion.errors.Cancelled` is raised,
    the pool's queued photos are cancelled (``Executor.map``'s iterator, closed) and the pool shut down."""
    unhashed = sum(job[2] is None for job in jobs)
    misses = len(jobs) - unhashed + max(0, unhashed - len(known))
    if (workers > 1 or apart) and misses > pool_above:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shared = frozenset(known) if unhashed else frozenset()  # only a job without its hash looks the key up
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(shared,)) as pool:
            for start in range(0, len(jobs), CHUNK):
                with contextlib.closing(pool.map(_pool_job, jobs[start:start + CHUNK], chunksize=8)) as results:
                    yield list(_checked(results, stop))
        return
    for start in range(0, len(jobs), CHUNK):
        yield list(_checked((_row_job(job, known) for job in jobs[start:start + CHUNK]), stop))


def add_colour_columns(items, cache_dir: os.PathLike | str | None = None, workers: int | None = None,
                       pool_above: int = POOL_ABOVE, apart: bool = False, stop=None):
    """``items`` (an item table: ``path``, optionally ``bbox``, ``role``, ``sha256``) with the colour columns
    of every row (a new frame; colour columns it had are replaced), removed items left empty.
    ``cache_dir``: the run's cache directory (None: no cache); ``workers``: processes (default: the
    usable cores); ``apart``: in a pool of processes even with one worker (from ``pool_above`` jobs);
    ``stop``: a ``threading.Event`` that cancels the work once set (:func:`_compute`)."""
    import pandas as pd

    table = items.drop(columns=[c for c in COLUMNS if c in items.columns])
    rows = (np.flatnonzero(table["role"].astype(str).to_numpy() != "removed") if "role" in table.columns
            else np.arange(len(table)))
    paths = table["path"].astype(str).to_numpy()
    boxes = table["bbox"].to_numpy(dtype=object) if "bbox" in table.columns else np.full(len(table), None, object)
    hashes = table[HASH_COLUMN].to_numpy(dtype=object) if HASH_COLUMN in table.columns else None
    cache = ColourCache(Path(cache_dir) / f"colour-{method_tag()}") if cache_dir is not None else None
    known = cache.entries if cache is not None else {}
    keys: dict[int, str] = {}  # row → its cache key, where known
    jobs, job_rows, queued = [], [], set()
    for row in rows:
        sha = hashes[row] if hashes is not None and isinstance(hashes[row], str) and hashes[row] else None
        box = _bbox(boxes[row])
        if sha is not None:  # its key is known here: a job only for a new content
            keys[row] = key = _key(sha, box)
            if key in known or key in queued:
                continue
            queued.add(key)
        jobs.append((paths[row], box, sha))
        job_rows.append(row)
    skipped: Counter = Counter()
    results: dict[str, tuple[dict, str]] = {}
    done = 0
    # closed on an error here too (a failed cache write): its process pool shuts down at once, not whenever
    # the traceback that holds the suspended generator is collected
    with contextlib.closing(_compute(jobs, known, _workers(workers), pool_above, apart, stop)) as batches:
        for batch in batches:
            fresh = {}
            for row, (key, colour, reason) in zip(job_rows[done:done + len(batch)], batch):
                if key is None:
                    skipped[reason] += 1
                    continue
                keys[row] = key
                if colour is not None:
                    fresh[key] = colour
            done += len(batch)
            results.update(fresh)
            if cache is not None and fresh:
                cache.write(list(fresh), list(fresh.values()))
    values = {c: np.full(len(table), np.nan) if c == "colour_share" else np.full(len(table), None, dtype=object)
              for c in COLUMNS}
    for row, key in keys.items():
        columns, reason = results[key] if key in results else known[key]
        if reason:
            skipped[reason] += 1
            continue
        for column in COLUMNS:
            values[column][row] = columns[column]
    for column in COLUMNS:
        table[column] = pd.Series(values[column], index=table.index,
                                  dtype="float64" if column == "colour_share" else object)
    log.info("colour: %d photos, %d from the cache, %d computed", len(keys), sum(k in known for k in keys.values()),
             len(results))
    if skipped:
        log.warning("colour: %d of %d photos skipped (%s)", sum(skipped.values()), len(rows),
                    ", ".join(f"{n} {reason}" for reason, n in skipped.most_common()))
    return table


def colour_stage(items, ok, cache_dir=None, beside: bool = False, stop=None) -> dict:
    """The colour stage as an item-table stage (:data:`fashion.pipeline.items.ITEM_TABLE_STAGES`):
    ``{column: values}`` of :data:`COLUMNS` for every row of ``items`` (``ok`` is not needed: a photo the
    network could not read is coloured or skipped on its own). ``cache_dir``: the run's cache.
    ``beside``: started beside the embedding (``fashion add``): a pool of one process fewer than the usable
    cores, even of one (the network's build, its imports and weights, holds this process's interpreter
    and leaves one core idle; then its run takes every core, where more workers would only slow it and
    each pays its own start, ~0.7 s of CPU). ``stop``: a ``threading.Event`` that cancels it once set (raising
    :class:`~fashion.errors.Cancelled`; ``fashion add`` sets it when the network fails)."""
    workers = max(1, _workers(None) - 1) if beside else None
    table = add_colour_columns(items, cache_dir=cache_dir, workers=workers, apart=beside, stop=stop)
    return {column: table[column] for column in COLUMNS}


colour_stage.columns = COLUMNS  # what it adds (fashion.run.upgrade computes them for runs that lack them)
colour_stage.stage = "colour"  # its line in a run's timings (fashion.pipeline.items.stage_name)
colour_stage.reads_ok = False  # may run before the embedding, beside it (fashion.pipeline.items.start_item_columns)
