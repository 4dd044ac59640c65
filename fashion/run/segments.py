"""A run's embeddings: one ``embeddings.npy``, or an append-only list of ``.npy`` segments.

A run made by ``measure_sim.py`` holds every vector in ``embeddings.npy`` (row i = item i), and its
run.json has no :data:`KEY`. A run changed by the live catalogue (:mod:`fashion.catalog`) keeps the
segments it had and adds one per ``fashion add``: ``segments/embeddings-<first id>.npy``, the new rows
only; run.json's :data:`KEY` lists them in id order (``embeddings.npy`` first). A new version
hard-links the segments it shares with the previous one (no file is ever changed in place: the old
version stays whole), so an add writes its own rows and a removal writes no vector at all (a removed
item keeps its row; the item table's role says it is out of every index, list and metric). Past
:data:`MAX_SEGMENTS` the catalogue writes them as one ``embeddings.npy`` again (compaction).

:class:`Segments` reads them as one (n, d) float32 array: ``shape``, ``len``, slices and id arrays
(copies); :func:`segment_reader` makes them read rows by id with pread (:class:`fashion.rowreader.RowReader`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..rowreader import RowReader
from ..rundir import RunDirError
from . import layout

KEY = "embedding_segments"  # run.json: the segments' paths in id order (absent: embeddings.npy alone)
DIR = "segments"
MAX_SEGMENTS = 16  # more are compacted into one embeddings.npy by the next change


def names(info: dict) -> list[str]:
    """The segments' paths (relative to the run) that run.json ``info`` lists, in id order."""
    listed = info.get(KEY)
    if listed is None:
        return [layout.EMBEDDINGS]
    if (not isinstance(listed, list) or not listed or not all(isinstance(n, str) for n in listed)
            or any(n.startswith("/") or ".." in n.split("/") for n in listed)):
        raise RunDirError(f"run.json: key {KEY!r} must be a list of paths inside the run, got {str(listed)[:80]!r}")
    return listed


def segment_name(first_id: int) -> str:
    """The path of a segment whose first row is item ``first_id``."""
    return f"{DIR}/embeddings-{int(first_id):09d}.npy"


class Segments:
    """(n, d) float32 rows held in several arrays (memory-mapped segments, pread row readers, or rows not
    yet written), read as one: ``shape``, ``len``, ``rows[a:b]``, ``rows[ids]`` and ``np.asarray(rows)``
    return copies (``np.asarray`` of memory-mapped or in-memory arrays only).
    ``names``: each array's path in the run it was read from (None: not written yet)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, arrays, names=None, d: int | None = None):
        arrays = [a if isinstance(a, (np.memmap, RowReader)) else np.asarray(a) for a in arrays]
        names = list(names) if names is not None else [None] * len(arrays)
        if d is None:
            d = int(arrays[0].shape[1]) if arrays else 0
        kept = [(a, n) for a, n in zip(arrays, names) if len(a)]
        self.arrays = [a for a, _ in kept]
        self.names = [n for _, n in kept]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays]).astype(np.int64)
        self.shape = (int(self.starts[-1]), int(d))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                seg = int(np.searchsorted(self.starts, start, side="right") - 1) if start < stop else -1
                if seg >= 0 and stop <= self.starts[seg + 1]:  # within one segment: one slice of it
                    return np.array(self.arrays[seg][start - self.starts[seg]:stop - self.starts[seg]],
                                    dtype=np.float32)
            return self.take(np.arange(start, stop, step))
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([int(key)]))[0]
        key = np.asarray(key)
        return self.take(np.flatnonzero(key) if key.dtype == bool else key)

    def take(self, ids) -> np.ndarray:
        """float32 (len(ids), d): the rows ``ids`` (any order, repeats allowed)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.empty((len(ids), self.shape[1]), dtype=np.float32)
        if not len(ids):
            return out
        if ids.min() < 0 or ids.max() >= len(self):
            raise IndexError(f"row ids out of range 0..{len(self) - 1}")
        if (ids[1:] > ids[:-1]).all():  # ascending (a gallery, the queries): each segment one run of rows
            bounds = np.searchsorted(ids, self.starts)
            for s, array in enumerate(self.arrays):
                lo, hi = int(bounds[s]), int(bounds[s + 1])
                if lo < hi:
                    local = ids[lo:hi] - self.starts[s]
                    whole = local[-1] - local[0] + 1 == hi - lo  # consecutive rows: one slice read
                    out[lo:hi] = array[local[0]:local[-1] + 1] if whole else array[local]
            return out
        seg = np.searchsorted(self.starts, ids, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            out[where] = self.arrays[s][ids[where] - self.starts[s]]
        return out

    def __array__(self, dtype=None, copy=None):
        dtype = np.float32 if dtype is None else dtype  # one copy of the rows, in the dtype asked for
        return np.concatenate(self.arrays, dtype=dtype) if self.arrays else np.zeros(self.shape, dtype)

    def appended(self, rows: np.ndarray) -> "Segments":
        """These rows and then ``rows`` (not written yet)."""
        return Segments(self.arrays + [np.asarray(rows, dtype=np.float32)], self.names + [None], self.shape[1])


def as_segments(vectors) -> Segments:
    """``vectors`` (a Segments, or one (n, d) array) as Segments."""
    if isinstance(vectors, Segments):
        return vectors
    vectors = np.asarray(vectors, dtype=np.float32)
    return Segments([vectors], [None], vectors.shape[1] if vectors.ndim == 2 else 0)


def read(run_dir, info: dict, n: int):
    """The run's embeddings: the memory-mapped ``embeddings.npy`` (one segment), or :class:`Segments` of
    the listed ones; RunDirError naming the file when one is unreadable or the rows do not add up to
    the ``n`` items."""
    run_dir = Path(run_dir)
    arrays, d = [], None
    for name in names(info):
        npy = run_dir / name
        try:
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise RunDirError(f"{npy}: not a readable .npy array ({exc}); the run is incomplete or damaged") from None
        if array.ndim != 2 or array.dtype != np.float32 or (d is not None and array.shape[1] != d):
            raise RunDirError(f"{npy}: expected float32 (rows, {d or 'd'}), got {array.dtype} {array.shape}")
        d = array.shape[1]
        arrays.append(array)
    total = sum(len(a) for a in arrays)
    if total != n:
        where = run_dir / (names(info)[0] if len(arrays) == 1 else layout.RUN_JSON)
        raise RunDirError(f"{where}: expected float32 ({n}, d) for the {n} items of {layout.ITEMS_DIR}/, "
                          f"got {total} rows" + (f" in {len(arrays)} segments" if len(arrays) > 1 else
                                                f": {arrays[0].dtype} {arrays[0].shape}"))
    if len(arrays) == 1:
        return arrays[0]
    return Segments(arrays, names(info), d)


def segment_reader(run_dir, info: dict) -> Segments:
    """The run's embeddings as :class:`Segments` of :class:`fashion.rowreader.RowReader`: ``take(ids)``
    reads the rows by id with pread from each segment, not through a memory map."""
    readers = [RowReader(Path(run_dir) / name) for name in names(info)]
    return Segments(readers, names(info), readers[0].shape[1])


def write(out, rows, previous=None) -> tuple[list[Path], list[str] | None]:
    """Write ``rows`` (:class:`Segments` or an array) as the embeddings of the run staged in ``out``: each
    segment read from ``previous`` (the run being replaced) hard-linked from it, each new one saved; all
    as one ``embeddings.npy`` when there would be more than :data:`MAX_SEGMENTS` (or a single one not
    yet written). Returns (paths written, the run.json :data:`KEY` value: None for embeddings.npy alone)."""
    from .writer import link_or_copy, write_embeddings

    rows = as_segments(rows)
    out = Path(out)
    if len(rows.arrays) > MAX_SEGMENTS or not rows.arrays or (len(rows.arrays) == 1 and rows.names[0] is None):
        return [write_embeddings(out, np.asarray(rows))], None
    from ..atomic import save_npy

    paths, listed = [], []
    for array, name, start in zip(rows.arrays, rows.names, rows.starts):
        if name is not None and previous is not None and os.path.isfile(Path(previous) / name):
            paths.append(link_or_copy(Path(previous) / name, out / name))
        else:
            name = layout.EMBEDDINGS if start == 0 else segment_name(int(start))
            paths.append(save_npy(out / name, np.asarray(array, dtype=np.float32)))
        listed.append(name)
    return paths, (None if listed == [layout.EMBEDDINGS] else listed)
