"""A run read into memory for a change, and written back as a new sealed run in one transaction.

:func:`load` reads a finished run (through :func:`fashion.run.reader.open_run`: verified, whole) into a
:class:`Catalog`; :func:`commit` recomputes what depends on the changed items — the roles, the index
(refitted on the gallery vectors: a store of the rows for ``exact``; an IVF-PQ, in memory or on disk, keeps
its training and the codes of the items that stay, :mod:`.kept`), the neighbour lists (incrementally,
:mod:`.lists`) and the metrics (:func:`fashion.retrieval.compute_metrics`, a pure function of the lists) —
and writes the new run with :mod:`fashion.run.writer` inside a :func:`fashion.catalog.versions.transaction`
(the next sealed version; the previous one kept in ``RUN.versions``): a kill at any moment leaves the
previous run whole and readable. The callers hold the run's writer lock from :func:`load` to :func:`commit`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import DatasetError
from ..neighbors import EXACT_INDEXES
from ..run import layout, listcache, segments
from . import kept
from .lists import RESERVE, Lists, drop_removed, from_table, has_reserve, member, merge_added, search, split, widen

log = logging.getLogger(__name__)

REMOVED = "removed"  # the role and reason of a removed item's tombstone row
HASH = layout.HASH_COLUMN  # the item table's column of file contents (photos already in the run are skipped)
SIZE = layout.SIZE_COLUMN  # the item table's column of file sizes (bytes): only files of a new photo's size are hashed


@dataclass
class Catalog:
    """A run in memory: items (DataFrame, row = id, tombstones included), vectors (n, d) float32 (the
    run's embedding segments, memory-mapped, and the rows appended since), info (run.json), metrics (metrics.json), lists (the neighbour lists), stats (this change's counts)."""

    path: Path
    items: object
    vectors: object  # (n, d) float32 rows: fashion.run.segments.Segments (or one array)
    info: dict
    metrics: dict
    lists: Lists
    stats: dict = field(default_factory=dict)
    index: object = None  # the run's index where its training is kept rather than refitted (.kept)
    reserve: Lists | None = None  # each query's next candidates after its k-th (reserve.npz; lists.RESERVE)
    index_ids: np.ndarray | None = None  # the item ids ``index`` holds, in its row order

    @property
    def live(self) -> np.ndarray:
        """Rows that are not removed."""
        return (self.items["role"] != REMOVED).to_numpy()


def load(run_dir) -> Catalog:
    """The run at ``run_dir``, verified and read (the vectors memory-mapped: no file is ever changed; the
    commit links the unchanged ones into the new version)."""
    from ..run.reader import open_run

    run = open_run(run_dir, load_index=False)
    lists = from_table(run.neighbors(), int(run.metrics["k"]))
    index, index_ids = kept.load(run)  # a trained IVF-PQ (in memory or on disk) encodes the new vectors
    vectors = run.embeddings  # memory-mapped segments, linked (not copied) into the next version
    if not isinstance(vectors, segments.Segments):
        vectors = segments.Segments([vectors], segments.names(run.info), vectors.shape[1])
    return Catalog(run.path, run.items.reset_index(drop=True), vectors, run.info, run.metrics, lists, index=index,
                   reserve=read_reserve(run.path), index_ids=index_ids)


def read_reserve(run_dir) -> Lists | None:
    """The run's reserve (``reserve.npz``, sealed with it), or None: a run written by measure_sim has
    none, and a list then holds only its k (the first change's searches start the reserve)."""
    from ..rundir import read_manifest

    path = Path(run_dir) / layout.RESERVE
    if layout.RESERVE not in read_manifest(run_dir)["files"]:
        return None
    with np.load(path, allow_pickle=False) as data:
        query_ids, ids, dist = data["query_ids"], data["ids"], data["dist"]
    if ids.ndim != 2 or ids.shape != dist.shape or len(query_ids) != len(ids):
        raise DatasetError(f"{path}: arrays of mismatched shapes {query_ids.shape}, {ids.shape}, {dist.shape}")
    return Lists(query_ids.astype(np.int64), ids.astype(np.int64), dist.astype(np.float32))


def row_kept(cat: Catalog) -> bool:
    """Whether the run's index is kept as its rows (index-rows.npy: exact), not fitted and saved."""
    return cat.index is None and cat.info["index"]["name"] in layout.ROW_INDEXES


def fit_index(cat: Catalog, gallery_ids: np.ndarray):
    """The index over the gallery: a kept one (:mod:`.kept`: ``faiss-ivfpq`` in memory or the on-disk
    IVF-PQ) keeps its trained quantiser and codebooks and the codes of the items that stay, encodes only
    the new ones and drops the leavers (the new vectors' coarse drift measured, :mod:`.drift`); the
    other backends are fitted again (``exact``: a store of the rows)."""
    from ..neighbors import build_index

    ref = cat.info["index"]
    if cat.index is None:
        return build_index(ref["name"], metric=ref["metric"]).fit(cat.vectors[gallery_ids])
    return kept.changed(cat.index, cat.index_ids, gallery_ids, cat.vectors, cat.stats)


def append(cat: Catalog, frame, vectors: np.ndarray, ok: np.ndarray, reasons) -> np.ndarray:
    """Append ``frame``'s rows (path, relpath, label, split, …) as new items with the next ids; their
    vectors (zeros where not ``ok``). Returns the new ids; roles are assigned by :func:`commit`."""
    import pandas as pd

    n = len(cat.items)
    ids = np.arange(n, n + len(frame), dtype=np.int64)
    rows = frame.reset_index(drop=True).copy()
    rows.insert(0, "id", ids)
    rows["ok"] = np.asarray(ok, bool)
    rows["reason"] = [str(r) for r in reasons]
    rows["role"] = ""
    for column in rows.columns.intersection(cat.items.columns):  # the run's arrow strings stay arrow strings
        dtype = cat.items[column].dtype  # (a text column of str cells only; anything else as before)
        if isinstance(dtype, pd.StringDtype) and pd.api.types.infer_dtype(rows[column], skipna=False) == "string":
            rows[column] = rows[column].astype(dtype)
    items = pd.concat([cat.items, rows], ignore_index=True) if len(cat.items) else rows
    items["ok"] = items["ok"].astype(bool)
    text = [c for c in items.columns if items[c].dtype == object or pd.api.types.is_string_dtype(items[c].dtype)]
    items[text] = items[text].fillna("")  # typed shop metadata (numbers, booleans, dates) keeps its nulls
    cat.items = items
    vectors = np.array(vectors, dtype=np.float32)
    vectors[~np.asarray(ok, bool)] = 0.0
    cat.vectors = segments.as_segments(cat.vectors).appended(vectors)  # one new segment; the others linked
    return ids


def tombstone(cat: Catalog, ids: np.ndarray) -> None:
    """Mark items removed: their rows stay (ids are never reused), out of every index, list and metric;
    their vectors stay in the embedding segments, which the new version shares with the previous one."""
    ids = np.asarray(ids, np.int64)
    for column, value in (("role", REMOVED), ("reason", REMOVED), ("ok", False)):
        cat.items.loc[ids, column] = value  # in the column's own dtype (arrow strings stay arrow: fast to write)


def _roles(cat: Catalog) -> tuple[np.ndarray, np.ndarray, str]:
    """(query, gallery, mode) over every row, as a fresh run over the live items would assign them."""
    from ..retrieval import assign_roles

    live = cat.live
    ok = cat.items["ok"].to_numpy(bool) & live
    frame = cat.items[[c for c in ("split", "item_id") if c in cat.items.columns]][live]  # what assign_roles reads
    query, gallery = np.zeros(len(live), bool), np.zeros(len(live), bool)
    q, g, mode = assign_roles(SimpleNamespace(frame=frame, format=cat.info["dataset"].get("format")), ok[live],
                        _config(cat.info))
    query[live], gallery[live] = q, g
    return query, gallery, mode


def _config(info: dict):
    from dataclasses import fields

    from ..retrieval import MeasureConfig

    names = {f.name for f in fields(MeasureConfig)}
    return MeasureConfig(**{key: value for key, value in info["arguments"].items() if key in names})


def role_column(cat: Catalog, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    from ..run.writer import roles

    role = roles(cat.items["ok"].to_numpy(bool), query, gallery)
    role[~cat.live] = REMOVED
    return role


def update_lists(cat: Catalog, added: np.ndarray, removed: np.ndarray, timer, full: bool = False) -> tuple:
    """The new roles, index and lists after ``added`` ids arrived and ``removed`` ids left.

    Existing lists are merged with the new gallery items (one search of the existing queries among the m
    new items; IVF-PQ: among those in the lists each query's search probes, :func:`~.kept.reach`) and the
    lists that lost a member (or, IVF-PQ, whose probed lists removals thinned, :func:`~.kept.thin_probes`,
    or adds filled again, :func:`~.kept.grown_probes`, or, at a run's first change, whose search goes exact
    at the reserve's width, :func:`~.kept.widened_probes`) are searched again; when the roles of the kept items or
    k itself change (k was clamped to a smaller gallery), or ``full``, every list is searched again. Returns
    (query, gallery, mode, index, k, lists); index is None where it is kept as its rows (:func:`row_kept`)
    and no list was searched."""
    from ..neighbors import build_index

    query, gallery, mode = _roles(cat)
    query_ids, gallery_ids = np.flatnonzero(query), np.flatnonzero(gallery)
    all_pairs = bool(np.array_equal(query, gallery))
    possible = len(gallery_ids) - int(all_pairs)
    if possible < 1 or not len(query_ids):
        raise DatasetError(f"{cat.path}: not enough usable images left to search: {len(query_ids)} queries, "
                           f"{len(gallery_ids)} gallery images")
    requested = int(cat.metrics.get("k_requested", cat.lists.k))
    k = min(requested, possible)
    ref = cat.info["index"]
    width = k * (1 + RESERVE)  # the lists and their reserve are searched and merged together
    old_query = np.zeros(len(query), bool)  # masks over every id: the kept items' roles before and now
    old_query[cat.lists.query_ids] = True
    old_gallery = np.array(cat.items["role"].isin(layout.GALLERY_ROLES).to_numpy(bool))
    now_query, now_gallery = query.copy(), gallery.copy()
    for mask in (old_query, old_gallery, now_query, now_gallery):
        mask[removed] = mask[added] = False
    same_roles = np.array_equal(old_query, now_query) and np.array_equal(old_gallery, now_gallery)
    index = None
    before, before_ids = cat.index, cat.index_ids  # the kept index before the change (the cells removals thin)

    def fitted():  # an exact index is its rows (index-rows.npy): fitted only when a list is searched
        nonlocal index
        if index is None:
            with timer("index"):
                index = fit_index(cat, gallery_ids)
                if cat.index is not None:
                    cat.index, cat.index_ids = index, gallery_ids
        return index

    if not row_kept(cat):
        fitted()
    with timer("search"):
        if full or k != cat.lists.k or not same_roles:
            log.info("k (%d → %d) or the roles changed: searching all %d lists again", cat.lists.k, k, len(query_ids))
            wide = search(fitted(), gallery_ids, cat.vectors[query_ids], query_ids, width, all_pairs)
            cat.stats["lists_searched"] = len(query_ids)
            lists, cat.reserve = split(wide, k)
            return query, gallery, mode, index, k, lists
        had_reserve = has_reserve(cat.lists, cat.reserve, width)
        held, lost = drop_removed(widen(cat.lists, cat.reserve, width), removed, k)
        need = width + int(all_pairs)  # what each list's search asks its index for
        if not had_reserve and before is not None:  # lists searched k wide: where the wider search goes exact
            lost = np.union1d(lost, kept.widened_probes(before, cat.vectors, held.query_ids,
                                                        cat.lists.k + int(all_pairs), need))
        if len(removed) and index is not None:  # approximate: searched exactly where removals thinned its lists
            lost = np.union1d(lost, kept.thin_probes(index, cat.vectors, held.query_ids, need,
                                                     kept.lost_cells(before, before_ids, removed)))
        new_gallery = np.sort(added[gallery[added]])
        if len(new_gallery) and index is not None:  # and where adds filled the lists of an exact search again
            lost = np.union1d(lost, kept.grown_probes(before, index, cat.vectors, held.query_ids, need))
        held = held.take(np.flatnonzero(~member(held.query_ids, lost)))
        changed = 0
        fresh = np.union1d(lost, added[query[added]])
        searched = fitted() if len(fresh) else None
        if len(new_gallery):
            with timer("merge"):  # the existing lists a new item may enter (part of "search")
                small = build_index("exact", metric=ref["metric"]).fit(cat.vectors[new_gallery])
                reach = None if index is None else kept.reach(index, cat.vectors,
                                                               np.searchsorted(gallery_ids, new_gallery), need)
                allowed = None if reach is None else (lambda rows, ids=held.query_ids: reach(ids[rows]))
                held, changed = merge_added(held, _ByRow(cat.vectors, held.query_ids), small, new_gallery, k,
                                            new_vectors=cat.vectors[new_gallery],
                                            unit_queries=_unit_rows(searched, gallery_ids, held.query_ids),
                                            allowed=allowed)
        with timer("new_lists"):  # the new items' lists and the refills (part of "search")
            found = search(searched, gallery_ids, cat.vectors[fresh], fresh, width, all_pairs)
        wide = Lists.concat([held, found], width).sorted()
        lists, cat.reserve = split(wide, k)
    if not np.array_equal(lists.query_ids, query_ids):  # a broken invariant, never a user error
        raise RuntimeError("the updated lists do not cover the queries")
    cat.stats.update(lists_changed=changed, lists_searched=len(fresh))
    log.info("neighbour lists: %d existing lists changed by new items, %d searched (lost a member or new)",
             changed, len(fresh))
    return query, gallery, mode, index, k, lists


class _ByRow:
    """The rows ``ids`` of ``vectors`` by row number, read when indexed (no copy of every query's row)."""

    def __init__(self, vectors, ids: np.ndarray):
        self.vectors, self.ids = vectors, np.asarray(ids, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, rows) -> np.ndarray:
        return np.asarray(self.vectors[self.ids[rows]])


def _unit_rows(index, gallery_ids: np.ndarray, ids: np.ndarray):
    """The cosine ``index``'s own unit rows of the items ``ids`` when all are in its gallery (all-pairs:
    the existing queries), a view where they are consecutive rows; None otherwise."""
    if index is None or index.metric != "cosine" or not len(ids) or not hasattr(index, "fitted_rows"):
        return None  # (the on-disk index holds no float32 rows)
    pos = np.minimum(np.searchsorted(gallery_ids, ids), len(gallery_ids) - 1)
    if not np.array_equal(gallery_ids[pos], ids):
        return None
    rows = index.fitted_rows
    if pos[-1] - pos[0] + 1 == len(pos) and (np.diff(pos) == 1).all():
        return rows[pos[0]:pos[-1] + 1]
    return _ByRow(rows, pos)


def _metrics(cat: Catalog, gallery, mode, index, k, lists: Lists, embedded, timing) -> dict:
    from ..retrieval import compute_metrics

    quality = compute_metrics(cat.items, lists.query_ids, lists.ids, k)
    live = cat.live
    removed_paths = set(cat.items["path"].astype(str)[~live])
    skipped = [s for s in cat.metrics.get("skipped", []) if s.get("path") not in removed_paths]
    skipped += embedded.get("skipped", [])
    return {**cat.metrics, "k": k, "k_requested": int(cat.metrics.get("k_requested", k)), "index": cat.info["index"]["name"],
            "mode": mode, **quality,
            "n_images": int(cat.metrics.get("n_images", 0)) + embedded.get("n_images", 0) - embedded.get("n_removed", 0),
            "n_ok": int((cat.items["ok"].to_numpy(bool) & live).sum()), "n_skipped": len(skipped),
            "n_queries": int(len(lists.query_ids)), "n_gallery": int(gallery.sum()),
            "n_embedded": embedded.get("n_embedded", 0), "n_from_cache": embedded.get("n_from_cache", 0),
            "timing": timing, "skipped": skipped}


def _report(cat: Catalog, out: Path, lists: Lists, metrics: dict, files: list) -> None:
    """The run's grids and gallery page (index.html), drawn again from the changed lists."""
    from ..report import draw_grids, pick_grid_queries, write_gallery

    args = cat.info.get("arguments", {})
    picks = pick_grid_queries(lists.query_ids, int(args.get("grids") or 0), int(args.get("seed") or 0))
    grids = draw_grids(out, cat.items, lists.query_ids, lists.ids, lists.dist, picks)
    title = f"Similar-clothes search: {Path(str(cat.info['dataset'].get('root', cat.path))).name}"
    write_gallery(out, metrics, grids, files, title=title)


def write_reserve(out, reserve: Lists) -> Path:
    """``reserve.npz`` of the run being written in ``out``."""
    from ..atomic import atomic_write

    with atomic_write(Path(out) / layout.RESERVE) as f:
        np.savez(f, query_ids=reserve.query_ids, ids=reserve.ids, dist=reserve.dist)
    return Path(out) / layout.RESERVE


class _Timer:
    def __init__(self):
        self.timing, self.start = {}, time.perf_counter()

    def __call__(self, stage: str):
        import contextlib

        @contextlib.contextmanager
        def block():
            t = time.perf_counter()
            yield
            self.timing[stage] = round(self.timing.get(stage, 0.0) + time.perf_counter() - t, 4)
        return block()


def commit(cat: Catalog, operation: dict, added=(), removed=(), embedded: dict | None = None,
           full: bool = False) -> Path:
    """Recompute roles, index, lists and metrics after the change and write the new run in one transaction;
    ``full``: search every list again (what a rebuild from the stored vectors does)."""
    from ..run import writer
    from . import insight, versions

    timer = _Timer()
    added, removed = np.asarray(added, np.int64), np.asarray(removed, np.int64)
    query, gallery, mode, index, k, lists = update_lists(cat, added, removed, timer, full=full)
    cat.items["role"] = role_column(cat, query, gallery)
    timing = {**timer.timing, "total": round(time.perf_counter() - timer.start, 4)}
    with timer("metrics"):
        metrics = _metrics(cat, gallery, mode, index, k, lists, embedded or {}, timing)
    body = {key: value for key, value in cat.info.items()
            if key not in ("format_version", "run_id", "index", "n_items", segments.KEY)}
    body = versions.stamp(body, {**operation, **cat.stats})
    body.pop(listcache.LISTS_KEY, None)
    if cat.info["index"]["name"] in EXACT_INDEXES:  # exact lists kept equal to a search (.lists): id queries use them
        body[listcache.LISTS_KEY] = listcache.marker(k)
    if "insight" in metrics:
        metrics["insight"] = insight.summary(metrics["insight"], versions.version_of(cat.info))
    started = time.perf_counter()
    with versions.transaction(cat.path, kind=layout.RUN_KIND) as txn:  # the previous version is kept
        out = txn.path
        files = writer.write_items(out, cat.items)
        written, listed = segments.write(out, cat.vectors, previous=cat.path)  # unchanged segments: linked
        files += written
        if listed is not None:
            body[segments.KEY] = listed
        files += writer.write_neighbors(out, lists.query_ids, lists.dist, lists.ids)
        if cat.reserve is not None:
            files.append(write_reserve(out, cat.reserve))
        if row_kept(cat):
            path, ref = writer.write_index_rows(out, cat.info["index"]["name"], cat.info["index"]["metric"],
                                                np.flatnonzero(gallery))
        elif isinstance(index, kept.OnDisk):
            path, ref = kept.write(out, index)
        else:
            path, ref = writer.write_index_npz(out, index, np.flatnonzero(gallery))
        files += path if isinstance(path, list) else [path]
        files.append(writer.write_run_json(out, txn.run_id, ref, len(cat.items), body))
        from ..atomic import write_json

        files.append(write_json(out / layout.METRICS_JSON, metrics))
        files += insight.carry(cat.path, out, cat.live)  # without the removed items (fashion.catalog.insight)
        _report(cat, out, lists, metrics, files)
        written = time.perf_counter()
    cat.stats["timing"] = {**timer.timing, "write": round(written - started, 4),  # seal: manifest, swap, retire
                           "seal": round(time.perf_counter() - written, 4)}
    cat.metrics, cat.lists = metrics, lists
    return txn.target
