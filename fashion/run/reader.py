"""The one reader of a run directory (layout: :mod:`fashion.run.layout`): :func:`open_run` → :class:`Run`.

``fashion search``, ``fashion serve``'s :class:`~fashion.service.SimilarityService`, the insight pages and
the report open a run through here only, whatever its size and index. Every file read is listed in the
run's manifest (size and SHA-256), every value answered from is checked for its type at open, and a run
is refused with one line naming the file at fault (:class:`~fashion.rundir.RunDirError`).

What open costs, and the trade-off of the check (``full_check``): by default every file is checked
for its size, and hashed whole when it is at most :data:`fashion.rundir.SAMPLE_ABOVE` (64 MiB); a
larger one (embeddings.npy: 2 GB at 1M × 512; the IVF-PQ's float16 vectors and inverted lists) is
checked by the sampled fingerprint its manifest records (:func:`fashion.rundir.sample_sha256`: the
size and 64 blocks of 64 KiB, 4 MiB read whatever the size) instead of hashing 3 GB at every start
(1M × 512 run: open_run 0.9–1.6 s on the shared cores, most of it the 1M-row item table). What that misses: a change confined
to the unsampled bytes of a large file (a few flipped bits inside embeddings.npy) is not seen at open;
a truncated, extended, replaced or swapped file, a rewritten header and any change to a small file
(run.json, the tables, index.faiss) still are. Beyond the manifest, :func:`fashion.run.index.load`
searches a sample of gallery items, each of which must find itself at distance ~0, so embeddings
from another run or in another order are refused at open too. ``full_check=True`` hashes every file
whole (what ``fashion.rundir.verify(run_dir)`` does), for an explicit check of a copied or archived
run; a manifest without sampled fingerprints (a run sealed before them) is hashed whole.

Nothing large is read whole at open: embeddings.npy is memory-mapped (its header is read), the item
table is read memory-mapped from its parquet parts, and the IVF-PQ index maps its inverted lists and
float16 re-rank vectors (:class:`fashion.scale.ivfpq.ScaleIndex`). A run of the
older layout (items.csv, neighbors.csv; no ``format_version``) is refused with the line that says how to
upgrade it (rerun into the same directory: the embedding cache makes that cheap).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..rundir import RunDirError
from . import layout
from .checks import check_columns, check_metrics, dataset_root, read_table

log = logging.getLogger(__name__)

OLD_LAYOUT = ("items.csv", "neighbors.csv")


@dataclass
class Run:
    """A finished run, read and cross-checked by :func:`open_run`.

    info: run.json; items: the item table (DataFrame, row i = item id i); metrics: metrics.json;
    embeddings: (n_items, d) float32, memory-mapped (:class:`~fashion.run.segments.Segments` where the live
    catalogue appended segments); index: its saved index
    (:mod:`fashion.run.index`: ``search(vectors, k) -> (distances, ids)``), None until loaded;
    insight: the insight tables by file name (absent files left out); lists: the stored neighbour lists
    read by item id (:class:`fashion.run.listcache.StoredLists`) where they answer as the index and were
    asked for (``open_run(stored_lists=True)``), else None.
    """

    path: Path
    info: dict
    items: Any
    metrics: dict
    embeddings: np.ndarray
    index: Any = None
    insight: dict = field(default_factory=dict)
    _rows: Any = field(default=None, repr=False, compare=False)
    lists: Any = field(default=None, repr=False, compare=False)

    @property
    def index_ref(self) -> layout.IndexRef:
        return layout.IndexRef(**self.info["index"])

    @functools.cached_property
    def gallery_ids(self) -> np.ndarray:
        """Sorted ids of the items the index holds (role both or gallery); computed once (open_run,
        index.load and the service each ask; an isin over the 1M-row role column is not free), read-only."""
        ids = np.flatnonzero(self.items["role"].isin(layout.GALLERY_ROLES).to_numpy()).astype(np.int64)
        ids.flags.writeable = False
        return ids

    def vectors(self, ids) -> np.ndarray:
        """float32 (len(ids), d): the embedding rows ``ids``, read with pread (:class:`fashion.rowreader.RowReader`),
        not through the map, so a server answering random ids does not map the file into its memory."""
        if self._rows is None:
            from .segments import segment_reader

            self._rows = segment_reader(self.path, self.info)
        return self._rows.take(ids)

    def neighbors(self):
        """The neighbour lists (DataFrame query_id, rank, neighbor_id, distance; by query, then rank)."""
        return read_neighbors(self.path)


def upgrade_hint(run_dir) -> str:
    return (f"{run_dir} is a run of an older layout (items.csv and neighbors.csv, no format_version): rerun "
            "measure_sim.py / `fashion neighbors` with the same --output-dir to rebuild it in format "
            f"{layout.FORMAT_VERSION} (its embedding cache is reused), or convert it in place with "
            f"`fashion upgrade {run_dir}`")


def parts(run_dir, name: str) -> list[Path]:
    """The parquet parts of the ``name`` table (items, neighbors) in order ([] when absent)."""
    directory = Path(run_dir) / name
    return sorted(directory.glob(layout.PART_GLOB)) if directory.is_dir() else []


def _read_parts(run_dir, name: str, columns: tuple[str, ...]):
    """The parts of table ``name`` as one DataFrame (None: no parts); each part must hold ``columns``."""
    table = _read_arrow(run_dir, name, columns)
    return table.to_pandas() if table is not None else None


def _read_arrow(run_dir, name: str, columns: tuple[str, ...]):
    """The parts of table ``name`` as one pyarrow Table (None: no parts); each part must hold ``columns``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in parts(run_dir, name):
        try:
            table = pq.read_table(path, memory_map=True)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise RunDirError(f"{path}: not a readable table ({str(exc).splitlines()[0][:200]})") from None
        absent = [c for c in columns if c not in table.column_names]
        if absent:
            raise RunDirError(f"{path}: column {absent[0]!r} is missing (columns: {', '.join(table.column_names)})")
        tables.append(table)
    try:
        return pa.concat_tables(tables) if tables else None
    except (ValueError, pa.ArrowException) as exc:
        raise RunDirError(f"{Path(run_dir) / name}: parts of different schemas ({str(exc).splitlines()[0][:200]})"
                          ) from None


def read_items(run_dir, cache_key: str | None = None):
    """The item table of a run (DataFrame, ids 0..n-1 in order, every layout column typed); unverified.

    ``cache_key`` (:func:`fashion.run.itemcache.cache_key` of the verified manifest): read the table from
    its memory-mapped Arrow copy under ``RUN/cache/items/`` when there is one of that key, else from the
    parquet parts, then leave the copy for the next start (:mod:`fashion.run.itemcache`)."""
    from . import itemcache

    where = Path(run_dir) / layout.ITEMS_DIR
    table = itemcache.load(run_dir, cache_key) if cache_key else None
    if table is None:
        table = _read_arrow(run_dir, layout.ITEMS_DIR, layout.ITEM_COLUMNS)
        if table is None:
            raise RunDirError(f"{where}: no item table parts")
        if cache_key:
            table = itemcache.widened(table)
            itemcache.save(run_dir, cache_key, table)
    items = table.to_pandas()
    check_columns(items, {"id": "int", "ok": "bool", **{c: "str" for c in layout.ITEM_COLUMNS[1:] if c != "ok"}},
                  where)
    if not np.array_equal(items["id"].to_numpy(), np.arange(len(items))):
        raise RunDirError(f"{where}: the id column is not 0..{len(items) - 1} in order")
    bad = ~items["role"].isin(layout.ROLES)
    if bad.any():
        raise RunDirError(f"{where}: item {int(items['id'][bad].iat[0])} has an unknown role "
                          f"{str(items['role'][bad].iat[0])[:40]!r}")
    return items.set_index(items["id"].to_numpy())


def read_neighbors(run_dir):
    """The neighbour lists of a run (DataFrame query_id, rank, neighbor_id, distance; by query, rank)."""
    table = _read_parts(run_dir, layout.NEIGHBORS_DIR, layout.NEIGHBOR_COLUMNS)
    if table is None:
        import pandas as pd

        return pd.DataFrame({c: [] for c in layout.NEIGHBOR_COLUMNS})
    check_columns(table, {"query_id": "int", "rank": "int", "neighbor_id": "int", "distance": "float"},
                  Path(run_dir) / layout.NEIGHBORS_DIR)
    q, rank = table["query_id"].to_numpy(), table["rank"].to_numpy()
    if len(q) and ((q[1:] > q[:-1]) | ((q[1:] == q[:-1]) & (rank[1:] > rank[:-1]))).all():
        return table  # written in this order (every writer's): a check, not a sort of 1M rows
    return table.sort_values(["query_id", "rank"], kind="stable").reset_index(drop=True)


def _run_json(run_dir: Path) -> dict:
    from ..runfiles import RunFileError, need, read_run_json

    path = run_dir / layout.RUN_JSON
    try:
        info = read_run_json(path)
    except RunFileError as exc:
        raise RunDirError(str(exc)) from None
    if info.get("format_version") != layout.FORMAT_VERSION:
        if "format_version" not in info:
            raise RunDirError(upgrade_hint(run_dir))
        raise RunDirError(f"{path}: format_version {info['format_version']!r}, this version reads "
                          f"{layout.FORMAT_VERSION}: rerun to rebuild the run")
    block = need(info, "index", dict, path)
    for key, kinds in (("kind", str), ("path", str), ("name", str), ("metric", str), ("count", int)):
        need(block, key, kinds, path, "index.")
    if "delta" in block:
        need(block, "delta", bool, path, "index.")
    unknown = sorted(set(block) - {f.name for f in fields(layout.IndexRef)})
    if unknown:
        raise RunDirError(f"{path}: key 'index' has an unknown key {unknown[0]!r}")
    if layout.INDEX_KINDS.get(block["kind"]) != block["path"]:
        raise RunDirError(f"{path}: key 'index' names {block['kind']!r} at {block['path']!r}; expected one of "
                          f"{layout.INDEX_KINDS}")
    return info


def _is_old(path: Path) -> bool:
    """Whether run.json parses as an object without ``format_version`` (a run of the older layout)."""
    from ..errors import FashionError
    from ..runfiles import read_json

    try:
        info = read_json(path)
    except FashionError:
        return False  # refused later, naming the file
    return isinstance(info, dict) and "format_version" not in info


def open_run(run_dir, load_index: bool = True, full_check: bool = False, cache_items: bool = False,
             stored_lists: bool = False) -> Run:
    """Read a finished run directory, refusing a missing, half-written, inconsistent or old one.

    Every check of a run directory lives here (one place to add a manifest check); ``load_index=False``
    leaves ``index`` None (:func:`fashion.run.index.load` loads it later, e.g. beside the model);
    ``full_check`` hashes every file whole instead of large files by their samples (module docstring);
    ``cache_items``: read the item table from, or leave, its memory-mapped copy (:mod:`.itemcache`: a
    server's start; a one-off reader need not write it); ``stored_lists``: read each item's stored list by id
    where the lists answer as the index (:mod:`.listcache`, written at the first such open). Raises
    FileNotFoundError (no such directory, or a file missing: "is not a finished run") or
    :class:`RunDirError` (one line naming the file at fault, or saying how to upgrade an old run).
    """
    from ..rundir import verify

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    has_info = (run_dir / layout.RUN_JSON).is_file()
    if not has_info and any((run_dir / n).is_file() for n in OLD_LAYOUT):
        raise RunDirError(upgrade_hint(run_dir))
    if has_info and _is_old(run_dir / layout.RUN_JSON):  # refused with the upgrade line before anything else
        raise RunDirError(upgrade_hint(run_dir))
    absent = [n for n in (layout.RUN_JSON, layout.METRICS_JSON, layout.EMBEDDINGS) if not (run_dir / n).is_file()]
    absent += [f"{name}/" for name in (layout.ITEMS_DIR, layout.NEIGHBORS_DIR) if not parts(run_dir, name)]
    if absent:
        raise FileNotFoundError(f"{run_dir} is not a finished run of `fashion neighbors` / measure_sim.py or of "
                                f"`fashion knn`: missing {', '.join(absent)}")
    present = tuple(name for name in layout.INSIGHT_FILES if os.path.lexists(run_dir / name))
    tables = tuple(p.relative_to(run_dir).as_posix()
                   for name in (layout.ITEMS_DIR, layout.NEIGHBORS_DIR) for p in parts(run_dir, name))
    # the manifest: one complete run, no file changed or taken from another run, and every file read here in it
    manifest = verify(run_dir, hashes=True if full_check else "sampled", require=(layout.RUN_JSON, layout.METRICS_JSON, layout.EMBEDDINGS) + tables + present)
    info = _run_json(run_dir)
    from . import segments

    unlisted = [name for name in layout.IndexRef(**info["index"]).files() + tuple(segments.names(info))
                if name not in manifest["files"]]
    if unlisted:
        raise RunDirError(f"{run_dir}: manifest.json does not list {', '.join(unlisted)}: it does not cover the run "
                          "(rerun to rebuild it)")
    from ..rundir import read_json_object

    metrics = read_json_object(run_dir / layout.METRICS_JSON)
    if not isinstance(info.get("embedder"), dict) or "checksum" not in info["embedder"]:
        raise RunDirError(f"{run_dir / layout.RUN_JSON}: no embedder description (not written by this version?)")
    from ..embedding.spec import locate_model

    info["embedder"] = locate_model(info["embedder"], run_dir / layout.RUN_JSON)  # the bundled model of another install
    dataset_root(info, run_dir / layout.RUN_JSON)  # recorded, never guessed: refuse an old run now, not per request
    check_metrics(metrics, run_dir / layout.METRICS_JSON)
    key = None
    if cache_items:
        from .itemcache import cache_key

        key = cache_key(manifest, [name for name in tables if name.startswith(f"{layout.ITEMS_DIR}/")])
    items = read_items(run_dir, key)
    embeddings = segments.read(run_dir, info, len(items))
    insight = {name: read_table(run_dir / name, layout.INSIGHT_FILES[name]) for name in present}
    run = Run(run_dir, info, items, metrics, embeddings, None, insight)
    if not len(run.gallery_ids):
        raise RunDirError(f"{run_dir / layout.ITEMS_DIR}: no item is in the index (role both or gallery)")
    if stored_lists:  # after every refusal: a first open writes the lists' cache
        from .listcache import open_lists

        run.lists = open_lists(run_dir, info, manifest, [name for name in tables
                                                          if name.startswith(f"{layout.NEIGHBORS_DIR}/")], len(items))
    if load_index:
        from .index import load

        run.index = load(run)
    return run


@contextlib.contextmanager
def pinned(run_dir):
    """Refuse (:class:`RunDirError`) when ``run_dir`` was replaced while the block read it: a rerun's
    transaction swaps the whole directory in one rename, so an unchanged inode means one version."""
    def identity():
        try:
            st = os.stat(run_dir)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    before = identity()
    yield
    if identity() != before:
        raise RunDirError(f"{run_dir}: the run directory was replaced while it was read (a rerun finished); "
                          "open it again")
