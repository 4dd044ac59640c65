"""The sharded stages' last step: a finished work directory (manifest → embed → index → knn) turned into
a run of format 2 (:mod:`fashion.run.layout`), the same layout a small run has.

Called by ``fashion knn`` (the work directory is the run directory; its work sub-directories stay, outside
the manifest) and by ``measure_sim.py`` above ``shard_above`` items (the work is in the cache, the run in
the output directory). The large files are not copied: embeddings.npy is filled by id from the shards
into a memory map, the neighbour shards and the on-disk index are hard-linked (copied across file
systems). The insight stage runs when the run is small enough to hold its vectors (:data:`INSIGHT_MAX`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..run import layout, writer
from . import embed, ivfpq, manifest, shards

log = logging.getLogger(__name__)

KNN_DIR = "knn"  # the neighbour shards' work directory (``fashion knn``), linked into the run's neighbors/
INDEX_DIR = "index"  # the index's work directory (``fashion index``), linked into the run's ivfpq/
INSIGHT_MAX = 200_000  # items: above it the insight stage (all vectors and neighbours in memory) is left out


@dataclass
class SealOptions:
    """What the report of a sharded run needs besides the work: grids to draw, their seed, the insight
    stage (an :class:`~fashion.insight.stage.InsightConfig`, None: off), the arguments for run.json and
    counts and timings to add to metrics.json."""

    grids: int = 12
    seed: int = 0
    insight: object = None
    arguments: dict = field(default_factory=dict)
    extra_metrics: dict = field(default_factory=dict)


def _vectors_by_id(emb_dir: Path, n: int, ok: np.ndarray, reasons: list):
    """(ids, vectors) of every embedding shard's kept rows, recording ok and reason by id on the way."""
    for _, table in shards.ShardSet(emb_dir).iter_batches(["id", "vector", "ok", "reason"]):
        ids = table.column("id").to_numpy().astype(np.int64)
        good = table.column("ok").to_numpy(zero_copy_only=False).astype(bool)
        ok[ids] = good
        for i, r in zip(ids.tolist(), table.column("reason").to_pylist()):
            reasons[i] = r or ""
        yield ids[good], shards.vectors_of(table.column("vector"))[good]


def _dimension(emb_dir: Path) -> int:
    first = next(shards.ShardSet(emb_dir, only_ok=True).iter_batches(["vector"]), None)
    if first is None:
        raise ivfpq.IndexBuildError(f"{emb_dir}: no embedded vectors")
    return shards.vectors_of(first[1].column("vector")[:1]).shape[1]


def _grids(out: Path, items, table, ok_ids: np.ndarray, count: int, seed: int):
    """Neighbour grids of a seeded sample of queries, read from the run's neighbour table."""
    from ..report import draw_grids, pick_grid_queries

    picks = np.sort(ok_ids[pick_grid_queries(ok_ids, count, seed)])
    nb = table[table["query_id"].isin(picks)]
    if not len(nb):
        return []
    k = int(nb["rank"].max())
    full = nb.groupby("query_id").filter(lambda g: len(g) == k)
    qrows = full["query_id"].unique()
    return draw_grids(out, items, qrows, full["neighbor_id"].to_numpy().reshape(-1, k),
                      full["distance"].to_numpy().reshape(-1, k), np.arange(len(qrows)))


def seal(work, out, run_id: str, quality: dict, options: SealOptions | None = None):
    """Write the run of the finished work directory ``work`` into ``out`` (a transaction's staging
    directory); ``quality``: what :func:`fashion.scale.knn.knn_run` returned. Returns a
    :class:`fashion.runresult.RunResult`."""
    from .. import provenance
    from ..atomic import write_json
    from ..report import write_gallery
    from ..run.reader import read_neighbors
    from ..runresult import RunResult

    options = options or SealOptions()
    start = time.perf_counter()
    work, out = Path(work), Path(out)
    info = manifest.Manifest.read(work)
    items = manifest.to_frame(manifest.read_items(work))
    if not np.array_equal(items["id"].to_numpy(), np.arange(info.count)):
        raise manifest.ManifestError(f"{work}: the manifest's ids are not 0..{info.count - 1} in order")
    items = items.drop(columns="id")
    n = len(items)
    emb_dir = embed.latest_embeddings(work)
    ok, reasons = np.zeros(n, dtype=bool), [""] * n
    files = {layout.EMBEDDINGS: writer.write_embeddings_by_id(out, n, _dimension(emb_dir),
                                                              _vectors_by_id(emb_dir, n, ok, reasons))}
    from ..pipeline.items import add_item_columns

    table = writer.item_table(add_item_columns(items, ok), ok, reasons, writer.roles(ok, ok, ok))  # all-pairs: every usable item both
    files.update({f"{layout.ITEMS_DIR}/{p.name}": p for p in writer.write_items(out, table)})
    params = json.loads((work / INDEX_DIR / ivfpq.INDEX_JSON).read_text(encoding="utf-8"))
    linked, ref = writer.link_ivfpq(out, work / INDEX_DIR, params["count"])
    files.update({p.relative_to(out).as_posix(): p for p in linked})
    parts = writer.link_neighbors(out, shards.list_parts(work / KNN_DIR))
    files.update({p.relative_to(out).as_posix(): p for p in parts})
    failed = np.flatnonzero(~ok)
    paths = items["path"].astype(str).to_numpy()
    k = int(quality["k"])
    metrics = {"k": k, "k_requested": int(options.arguments.get("k", k)), "metric": "cosine", "index": ref.name,
               "mode": "all-pairs", "engine": "scale", "precision_at_k": quality["precision_at_k"],
               "map_at_k": quality["map_at_k"], "per_label_precision": quality["per_label_precision"],
               "per_label_queries": quality["per_label_queries"], "n_images": n, "n_ok": int(ok.sum()),
               "n_skipped": len(failed), "n_queries": quality["queries"], "n_gallery": int(ok.sum()),
               **options.extra_metrics, "skipped": [{"path": paths[i], "reason": reasons[i]} for i in failed]}
    neighbors = read_neighbors(out) if n <= INSIGHT_MAX else None
    t = time.perf_counter()
    grids = _grids(out, items, neighbors if neighbors is not None else _picked(out, ok, options), np.flatnonzero(ok),
                   options.grids, options.seed)
    sections = []
    if options.insight is not None and neighbors is not None and len(neighbors):
        from ..insight.page import run_insight

        full = neighbors.groupby("query_id").filter(lambda g: len(g) == k)
        vectors = np.load(out / layout.EMBEDDINGS, mmap_mode="r")
        sections = run_insight(out, items, vectors, ok, full["query_id"].unique(),
                               full["neighbor_id"].to_numpy().reshape(-1, k), options.insight, metrics, files)
    elif options.insight is not None:
        log.info("%d items: more than %d, the insight stage is left out", n, INSIGHT_MAX)
    metrics["timing"] = {**options.extra_metrics.get("timing", {}), "report": round(time.perf_counter() - t, 3),
                         "seal": round(time.perf_counter() - start, 3)}
    body = {"arguments": options.arguments, "command": provenance.command_line(),
            "dataset": {"root": info.root, "format": info.format, "n_items": n},
            "embedder": json.loads((emb_dir / "embedder.json").read_text(encoding="utf-8"))
            if (emb_dir / "embedder.json").is_file() else {},
            "scale": {"work_dir": str(work.absolute()), "embeddings": emb_dir.name},
            "versions": provenance.versions(), "git": provenance.git_revision(), "created": provenance.created()}
    body["backbone"], body["model_checksum"] = body["embedder"].get("arch"), body["embedder"].get("checksum")
    files[layout.RUN_JSON] = writer.write_run_json(out, run_id, ref, n, body)
    files[layout.METRICS_JSON] = out / layout.METRICS_JSON  # written once, below (the gallery only links it)
    files[layout.GALLERY] = write_gallery(out, metrics, grids, [files[layout.RUN_JSON], files[layout.METRICS_JSON]],
                                          title=f"Similar-clothes search: {Path(info.root).name}", sections=sections)
    write_json(out / layout.METRICS_JSON, metrics)
    files.update({f"{layout.GRIDS_DIR}/{path.name}": path for path, _ in grids})
    log.info("sealed the sharded run: %d items, %d neighbour shards, index %s", n, len(parts), ref.path)
    return RunResult(out, metrics, files)


def _picked(out: Path, ok: np.ndarray, options: SealOptions):
    """The neighbour rows of the grids' queries only (a large run's table is never read whole)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..report import pick_grid_queries
    from ..run.reader import parts

    ok_ids = np.flatnonzero(ok)
    picks = pa.array(np.sort(ok_ids[pick_grid_queries(ok_ids, options.grids, options.seed)]))
    rows = [t.filter(pc.is_in(t.column("query_id"), value_set=picks))
            for t in (pq.read_table(p) for p in parts(out, layout.NEIGHBORS_DIR))]
    return pa.concat_tables(rows).to_pandas() if rows else pd.DataFrame(columns=list(layout.NEIGHBOR_COLUMNS))
