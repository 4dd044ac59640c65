"""The last stages of every run: the item table (with the item-table stages' columns), the saved index,
the report (metrics, neighbour grids), the insight stage, run.json and the gallery, written into a
transaction's staging directory (:func:`fashion.rundir.transaction` seals it with its manifest).

Large files are never copied: embeddings.npy was filled by id (:func:`fashion.pipeline.vectors.gather`),
neighbour shards and the on-disk index are hard-linked from the work directory. The insight stage runs
when the run is small enough to hold its neighbour table (:data:`INSIGHT_MAX`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..run import layout, writer

log = logging.getLogger(__name__)

INSIGHT_MAX = 200_000  # items: above it the insight stage (all vectors and neighbours in memory) is left out


@dataclass
class Staged:
    """What the stages before the seal produced: the run in ``out`` (staging) under ``run_id``.

    items: the item frame (row i = item i); root/format: the dataset's; ok/reasons per item; query/gallery
    masks and the mode; k (clamped) and k_requested; metric; built: the index
    (:class:`fashion.pipeline.index.Built`); vectors: embeddings.npy opened; embedder: its description
    (run.json's block); arguments: run.json's; skipped: unreadable items the table left out (missing,
    refused: path, reason); counts: extra metrics (n_embedded, n_from_cache …); files: written so far.
    """

    out: Path
    run_id: str
    items: object
    root: str
    format: str
    ok: np.ndarray
    reasons: list
    query: np.ndarray
    gallery: np.ndarray
    mode: str
    k: int
    k_requested: int
    metric: str
    built: object
    vectors: object
    embedder: dict
    arguments: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    index_ref: object = None  # run.json's index block (fashion.run.layout.IndexRef), set by write_tables


def item_columns(run: Staged, watch=None):
    """The run's items with the item-table stages' columns (:data:`fashion.pipeline.items.ITEM_TABLE_STAGES`),
    each stage timed on ``watch`` on its own line (the colour stage: ``colour``)."""
    from ..staging import target_of
    from .items import add_item_columns

    cache = target_of(run.out) / "cache"  # the run's carried-over work (the colour stage's cache)
    return add_item_columns(run.items, run.ok, cache_dir=cache, watch=watch)


def write_tables(run: Staged, items) -> None:
    """items/ (``items``: the run's items with the item-table stages' columns, :func:`item_columns`) and the
    saved index, linked in from the index stage's work (index.npz with its ids, or the on-disk ivfpq/)."""
    import json

    table = writer.item_table(items, run.ok, run.reasons, writer.roles(run.ok, run.query, run.gallery))
    run.files.update({f"{layout.ITEMS_DIR}/{p.name}": p for p in writer.write_items(run.out, table)})
    if run.built.directory is None:  # the index stage's checkpoint (index.npz with its ids), linked in
        run.files[layout.INDEX_NPZ] = writer.link_or_copy(run.built.npz, run.out / layout.INDEX_NPZ)
        ref = layout.IndexRef("npz", layout.INDEX_NPZ, run.built.name, run.built.metric, int(run.gallery.sum()))
    else:
        count = json.loads((run.built.directory / "index.json").read_text(encoding="utf-8"))["count"]
        linked, ref = writer.link_ivfpq(run.out, run.built.directory, count)
        run.files.update({p.relative_to(run.out).as_posix(): p for p in linked})
    run.index_ref = ref


def metrics_of(run: Staged, quality: dict, timing: dict) -> dict:
    """metrics.json's body: the quality figures, counts, timings and the skipped images."""
    failed = np.flatnonzero(~run.ok)
    paths = run.items["path"].astype(str).to_numpy()
    skipped = [{"path": paths[i], "reason": run.reasons[i]} for i in failed] + list(run.skipped)
    quality = dict(quality)
    return {"k": run.k, "k_requested": run.k_requested, "metric": run.metric, "index": run.index_ref.name,
            "mode": run.mode, "layer": run.embedder.get("layer"), "precision_at_k": quality.pop("precision_at_k"),
            "map_at_k": quality.pop("map_at_k"), "n_images": len(run.items) + len(run.skipped),
            "n_ok": int(run.ok.sum()), "n_skipped": len(skipped), "n_queries": quality.pop("n_queries"),
            "n_gallery": int(run.gallery.sum()), **run.counts, **quality, "timing": timing, "skipped": skipped}


def report(run: Staged, grids: int, seed: int) -> list:
    """The neighbour grids of a seeded sample of queries (read from the run's neighbour table)."""
    from ..report import draw_grids, pick_grid_queries

    query_rows = np.flatnonzero(run.query)
    picks = query_rows[pick_grid_queries(query_rows, grids, seed)]
    nb = _neighbors_of(run.out, picks)
    full = nb.groupby("query_id").filter(lambda g: len(g) == run.k)
    if not len(full):
        return []
    qrows = full["query_id"].unique()
    return draw_grids(run.out, run.items, qrows, full["neighbor_id"].to_numpy().reshape(-1, run.k),
                      full["distance"].to_numpy().reshape(-1, run.k), np.arange(len(qrows)))


def insight(run: Staged, config, metrics: dict) -> list[str]:
    """The insight stage (duplicates, suspects, map) when the run is small enough; its gallery sections."""
    from ..insight.page import run_insight
    from ..run.reader import read_neighbors

    if config is None:
        return []
    if len(run.items) > INSIGHT_MAX:
        log.info("%d items: more than %d, the insight stage is left out", len(run.items), INSIGHT_MAX)
        return []
    table = read_neighbors(run.out)
    full = table.groupby("query_id").filter(lambda g: len(g) == run.k)
    if not len(full):
        return []
    return run_insight(run.out, run.items, run.vectors, run.ok, full["query_id"].unique(),
                       full["neighbor_id"].to_numpy().reshape(-1, run.k), config, metrics, run.files)


def finish(run: Staged, metrics: dict, grids: list, sections: list, info: dict) -> dict:
    """run.json, the gallery and metrics.json (written last, with the final timings); returns the files."""
    from .. import provenance
    from ..atomic import write_json
    from ..report import write_gallery

    body = {"arguments": run.arguments, "command": provenance.command_line(),
            "dataset": {"root": run.root, "format": run.format, "n_items": len(run.items)},
            "backbone": run.embedder.get("arch"), "model_checksum": run.embedder.get("checksum"),
            "embedder": run.embedder, **info, "versions": provenance.versions(), "git": provenance.git_revision(),
            "created": provenance.created()}
    run.files[layout.RUN_JSON] = writer.write_run_json(run.out, run.run_id, run.index_ref, len(run.items), body)
    run.files[layout.METRICS_JSON] = run.out / layout.METRICS_JSON  # written last, below (the gallery links it)
    run.files[layout.GALLERY] = write_gallery(run.out, metrics, grids, list(run.files.values()),
                                              title=f"Similar-clothes search: {Path(run.root).name}",
                                              sections=sections)
    write_json(run.out / layout.METRICS_JSON, metrics)
    run.files.update({f"{layout.GRIDS_DIR}/{path.name}": path for path, _ in grids})
    return run.files


def seal_run(run: Staged, quality: dict, watch, grids: int, seed: int, insight_config, info: dict) -> dict:
    """The seal stages in order, timed on ``watch`` (a :class:`fashion.runresult.Stopwatch`): tables and
    index, metrics, grids, insight, run.json, gallery, metrics.json last; returns the metrics."""
    from ..atomic import write_json

    run.files[layout.EMBEDDINGS] = run.out / layout.EMBEDDINGS  # filled by id before the index stage
    items = item_columns(run, watch)  # one timing line per item-table stage ("colour"), not inside "report"
    with watch.stage("report"):
        write_tables(run, items)
        metrics = metrics_of(run, quality, watch.timing)
        drawn = report(run, grids, seed)
    with watch.stage("insight"):
        sections = insight(run, insight_config, metrics)
    with watch.stage("gallery"):
        metrics["timing"] = watch.timing
        finish(run, metrics, drawn, sections, info)
    metrics["timing"] = {**watch.timing, "total": watch.total()}
    write_json(run.out / layout.METRICS_JSON, metrics)
    return metrics


def _neighbors_of(out: Path, picks: np.ndarray):
    """The neighbour rows of the queries ``picks`` only (a large run's table is never read whole)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..run.reader import parts

    value_set = pa.array(np.asarray(picks, np.int64))
    rows = [t.filter(pc.is_in(t.column("query_id"), value_set=value_set))
            for t in (pq.read_table(p) for p in parts(out, layout.NEIGHBORS_DIR))]
    if not rows:
        return pd.DataFrame(columns=list(layout.NEIGHBOR_COLUMNS))
    return pa.concat_tables(rows).to_pandas().sort_values(["query_id", "rank"], kind="stable")
