"""The one writer of a run's files (layout: :mod:`fashion.run.layout`), for small runs and sharded ones.

Every function writes under ``out`` (a :func:`fashion.rundir.transaction`'s staging directory) and
returns the paths it wrote, atomically each; the transaction's manifest seals them all at the end.
Small runs hand over whole arrays; sharded runs hand over batches (vectors by id into a pre-allocated
memory-mapped ``embeddings.npy``) and hard-link the finished work files (neighbour shards, the on-disk
index) instead of copying them.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from . import layout

log = logging.getLogger(__name__)

ITEM_ROWS_PER_PART = 1_000_000  # item rows per parquet part
NEIGHBOR_ROWS_PER_PART = 4_000_000  # (query, rank) rows per parquet part of a small run


def roles(ok: np.ndarray, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """The ``role`` column: both / query / gallery for usable rows, skipped where ``ok`` is False.

    >>> roles(np.array([1, 1, 1, 0], bool), np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)).tolist()
    ['both', 'query', 'gallery', 'skipped']
    """
    return np.select([query & gallery, query, gallery], ["both", "query", "gallery"],
                     default=np.where(ok, "", "skipped")).astype(object)


def item_table(frame, ok: np.ndarray, reasons, role: np.ndarray):
    """The run's item table: ``frame`` (a dataset's item frame, row i = item i) with id, ok, reason, role."""
    table = frame.copy()
    table.insert(0, "id", np.arange(len(table), dtype=np.int64))
    table["ok"] = np.asarray(ok, dtype=bool)
    table["reason"] = [str(r) for r in reasons]
    table["role"] = role
    return table


def _text(values):
    """``values`` as an object array (or pandas' own arrow array) when every cell is a ``str`` (then
    ``str(v)`` is ``v`` and no cell is missing: the column converts as it is, in C), else None (the
    per-cell conversions below)."""
    import pandas as pd
    import pyarrow as pa

    if (isinstance(getattr(values, "dtype", None), pd.StringDtype) and values.dtype.storage == "pyarrow"
            and not values.isna().any()):  # pandas' arrow strings (as read from parquet): the arrow array itself
        return pa.array(values).cast(pa.string())
    cells = values.to_numpy(dtype=object) if hasattr(values, "to_numpy") else np.asarray(values, dtype=object)
    return cells if cells.ndim == 1 and pd.api.types.infer_dtype(cells, skipna=False) == "string" else None


def _arrow_column(name: str, values, own: bool = False):
    """One item-table column as an arrow array; ``own``: a layout or dataset column (text, ``str`` of each
    cell), else shop metadata (typed, missing cells null)."""
    import pyarrow as pa

    from ..datasets import bbox_or_none

    if name == "id":
        return pa.array(np.asarray(values, dtype=np.int64))
    if name == "ok":
        return pa.array(np.asarray(values, dtype=bool))
    if name == "bbox":  # "x1 y1 x2 y2", "" where none (as the dataset's list file spells it)
        return pa.array(["" if bbox_or_none(b) is None else " ".join(map(str, b)) for b in values], pa.string())
    text = _text(values)
    if text is not None:  # 100k rows: 5 s of per-cell str() on loaded cores before, ~0.1 s now
        if isinstance(text, pa.ChunkedArray):  # a column appended to (fashion add: two chunks): joined in C;
            return text.combine_chunks()  # pa.array() of it walks its cells in Python (0.16 s / 100k rows, loaded)
        return text if isinstance(text, pa.Array) else pa.array(text, pa.string())
    if own:
        return pa.array([str(v) for v in values.tolist()], pa.string())
    if typed(values):  # shop metadata: numbers, booleans, dates (nulls kept)
        return pa.Array.from_pandas(values)
    if hasattr(values, "isna"):  # a text column: missing cells stay null
        import pandas as pd

        cells, missing = values.to_numpy(dtype=object), values.isna().to_numpy(dtype=bool)
        kind = pd.api.types.infer_dtype(cells, skipna=True)
        if kind == "string":  # text and nulls: converted in C
            return pa.array(np.where(missing, None, cells), pa.string(), mask=missing)
        if kind == "boolean":  # a boolean column with missing cells, as pandas reads one back (object): kept boolean
            return pa.array(np.where(missing, None, cells), pa.bool_(), mask=missing)
        return pa.array([None if missing else str(v) for v, missing in zip(values, values.isna())], pa.string())
    return pa.array([str(v) for v in values], pa.string())


def typed(values) -> bool:
    """Whether a column (a pandas Series) holds numbers, booleans or dates rather than text."""
    import pandas as pd

    return hasattr(values, "dtype") and (pd.api.types.is_numeric_dtype(values.dtype)
                                         or pd.api.types.is_bool_dtype(values.dtype)
                                         or pd.api.types.is_datetime64_any_dtype(values.dtype))


def write_items(out, table, rows_per_part: int = ITEM_ROWS_PER_PART) -> list[Path]:
    """``items/part-*.parquet`` from an item table with every :data:`~fashion.run.layout.ITEM_COLUMNS`
    (ids 0..n-1 in order); the dataset's other columns (item_id, bbox …) are kept as strings, any
    further one (shop metadata, the item-table stages' columns) typed: numbers, booleans, dates, text (empty cells null)."""
    import pyarrow as pa

    from ..datasets.table import COLUMNS as DATASET_COLUMNS
    from ..scale.shards import write_table

    absent = [c for c in layout.ITEM_COLUMNS if c not in table.columns]
    if absent:
        raise ValueError(f"item table lacks the columns {absent}")
    if not np.array_equal(table["id"].to_numpy(), np.arange(len(table))):
        raise ValueError("item ids must be 0..n-1 in order")
    columns = list(layout.ITEM_COLUMNS) + [c for c in table.columns if c not in layout.ITEM_COLUMNS]
    own = set(layout.ITEM_COLUMNS) | set(DATASET_COLUMNS)
    paths = []
    for number, start in enumerate(range(0, max(len(table), 1), rows_per_part)):
        part = table.iloc[start:start + rows_per_part]
        # the dataset's own columns as text (as before); shop metadata typed (fashion.catalog.metadata)
        arrow = pa.table({c: _arrow_column(c, part[c], c in own) for c in columns})
        paths.append(write_table(Path(out) / layout.ITEMS_DIR / layout.part_name(number), arrow))
    return paths


def neighbors_table(query_ids: np.ndarray, dist: np.ndarray, ids: np.ndarray):
    """The neighbours as a long ``pyarrow.Table``: one row per (query, rank), rank from 1; missing
    neighbours (id −1) dropped. query_ids (q,), dist and ids (q, k) in rank order."""
    import pyarrow as pa

    q, k = ids.shape
    valid = ids.reshape(-1) >= 0
    return pa.table({"query_id": pa.array(np.repeat(np.asarray(query_ids, np.int64), k)[valid]),
                     "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), q)[valid]),
                     "neighbor_id": pa.array(np.asarray(ids, np.int64).reshape(-1)[valid]),
                     "distance": pa.array(np.asarray(dist).reshape(-1)[valid].astype(np.float32))})


def write_neighbors(out, query_ids: np.ndarray, dist: np.ndarray, ids: np.ndarray,
                    rows_per_part: int = NEIGHBOR_ROWS_PER_PART) -> list[Path]:
    """``neighbors/part-*.parquet`` of a small run's whole neighbour lists (queries in order)."""
    from ..scale.shards import write_table

    k = max(1, ids.shape[1])
    step = max(1, rows_per_part // k)
    return [write_table(Path(out) / layout.NEIGHBORS_DIR / layout.part_name(n),
                        neighbors_table(query_ids[s:s + step], dist[s:s + step], ids[s:s + step]))
            for n, s in enumerate(range(0, max(len(query_ids), 1), step))]


def write_embeddings(out, vectors: np.ndarray) -> Path:
    """``embeddings.npy`` of a small run: float32 (n, d), row i = item i."""
    from ..atomic import save_npy

    return save_npy(Path(out) / layout.EMBEDDINGS, np.asarray(vectors, dtype=np.float32))


def write_embeddings_by_id(out, n: int, d: int, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Path:
    """``embeddings.npy`` of a sharded run: a pre-allocated (n, d) float32 memory map (zeros), filled by
    id from ``batches`` of (ids, vectors) one at a time, never whole in memory."""
    from ..atomic import atomic_path

    path = Path(out) / layout.EMBEDDINGS
    with atomic_path(path) as tmp:
        matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(int(n), int(d)))
        for ids, vectors in batches:
            matrix[np.asarray(ids, np.int64)] = vectors
        matrix.flush()
        del matrix
    return path


def write_index_npz(out, index, ids: np.ndarray) -> tuple[Path, layout.IndexRef]:
    """``index.npz``: a fitted fashion.neighbors index plus its ``ids`` (index row → item id)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) != index.n_samples_fit_:
        raise ValueError(f"{len(ids)} ids for an index of {index.n_samples_fit_} vectors")
    path = index.save(Path(out) / layout.INDEX_NPZ, ids=ids)
    return path, layout.IndexRef("npz", layout.INDEX_NPZ, index.name, index.metric, len(ids))


def write_index_rows(out, name: str, metric: str, ids: np.ndarray) -> tuple[Path, layout.IndexRef]:
    """``index-rows.npy``: an ``exact`` index kept as the ids of its embedding rows (index row → item id),
    fitted on those rows at open (:func:`fashion.run.index.load`) instead of saved as a second copy."""
    from ..atomic import save_npy

    if name not in layout.ROW_INDEXES:
        raise ValueError(f"an index kept as rows must be one of {layout.ROW_INDEXES}, not {name!r}")
    ids = np.asarray(ids, dtype=np.int64)
    path = save_npy(Path(out) / layout.INDEX_ROWS, ids)
    return path, layout.IndexRef("rows", layout.INDEX_ROWS, name, metric, len(ids))


def link_or_copy(src, dest) -> Path:
    """Put a finished work file into the run: a hard link (no copy of a large file), or a copy across
    file systems. The work's writers replace files by rename, so the run's link keeps its content."""
    from ..atomic import ensure_dir

    src, dest = Path(src), Path(dest)
    ensure_dir(dest.parent)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return dest


def link_ivfpq(out, index_dir, count: int) -> tuple[list[Path], layout.IndexRef]:
    """``ivfpq/``: the finished on-disk IVF-PQ index of ``index_dir`` (fashion.scale.ivfpq), linked in."""
    paths = [link_or_copy(Path(index_dir) / name, Path(out) / layout.IVFPQ_DIR / name) for name in layout.IVFPQ_FILES]
    return paths, layout.IndexRef("ivfpq", layout.IVFPQ_DIR, "faiss-ivfpq", "cosine", int(count))


def link_neighbors(out, parts) -> list[Path]:
    """``neighbors/``: the finished neighbour shards of a sharded run, linked in under their names."""
    return [link_or_copy(p, Path(out) / layout.NEIGHBORS_DIR / Path(p).name) for p in parts]


def write_run_json(out, run_id: str, index: layout.IndexRef, n_items: int, body: dict) -> Path:
    """``run.json``: format_version, run_id, the index block and the item count, then ``body``
    (arguments, dataset, embedder, versions …)."""
    from ..atomic import write_json

    return write_json(Path(out) / layout.RUN_JSON, {"format_version": layout.FORMAT_VERSION, "run_id": run_id,
                                                    "index": index.to_json(), "n_items": int(n_items), **body})
