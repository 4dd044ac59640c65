"""``measure_sim.py`` above :data:`SCALE_THRESHOLD` items: the same command on the sharded stages.

One process, the local engine: manifest → embed (parquet shards, resumable) → IVF index → knn, all in
OUTPUT_DIR (``manifest/``, ``embeddings/``, ``index/``, ``neighbors/part-*.parquet``) instead of the
one-machine files (``embeddings.npy``, ``neighbors.csv``, whose size grows with n). ``metrics.json``,
``run.json``, the grids (drawn from a seeded sample of queries) and ``index.html`` are written as on the
one-machine path. All-pairs retrieval only (a ``--query-split`` or In-shop run stays on the one-machine
path, said in the log).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCALE_THRESHOLD = 500_000  # items; below it the one-machine path (exact search, CSV outputs) is faster


def applies(config, items) -> bool:
    """True when a retrieval run of ``items`` should use the sharded stages (and log why)."""
    if len(items) < SCALE_THRESHOLD:
        return False
    if config.query_split or "item_id" in items.columns:
        log.info("%d items: above the scale threshold (%d), but query/gallery splits need the one-machine path",
                 len(items), SCALE_THRESHOLD)
        return False
    log.info("%d items: above the scale threshold (%d): sharded stages, parquet outputs in %s", len(items),
             SCALE_THRESHOLD, config.output_dir)
    return True


def run(config, table, out=None):
    """The scaled retrieval run of ``table`` (a :class:`fashion.datasets.ItemTable`) into ``out`` (the
    staging directory of :func:`fashion.retrieval.run`'s transaction; None: ``config.output_dir``);
    returns :class:`fashion.retrieval.RunResult`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .. import retrieval
    from ..atomic import write_json
    from ..report import write_gallery
    from . import embed, ivfpq, knn, manifest, shards

    start = time.perf_counter()
    items = table.frame
    out = Path(out if out is not None else config.output_dir)
    timing = {}
    t = time.perf_counter()
    manifest.write_manifest(table, out)
    emb = embed.embed_run(embed.EmbedConfig(str(out), model=config.model, arch=config.arch, layer=config.layer,
                                            size=config.size, runtime=config.runtime, batch_size=config.batch_size,
                                            num_workers=config.num_workers))
    timing["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    ivfpq.build(emb.directory, out / knn.INDEX_DIR, id_space=len(items), seed=config.seed)
    timing["index"] = time.perf_counter() - t
    t = time.perf_counter()
    quality = knn.knn_run(knn.KnnConfig(str(out), k=config.k))
    timing["search"] = time.perf_counter() - t
    every = shards.ShardSet(emb.directory)
    failed = []
    for _, table in every.iter_batches(["id", "ok", "reason"]):
        bad = ~table.column("ok").to_numpy(zero_copy_only=False)
        failed += list(zip(table.column("id").to_numpy()[bad].tolist(),
                           np.asarray(table.column("reason").to_pylist(), dtype=object)[bad].tolist()))
    paths = items["path"].astype(str).to_numpy()
    skipped = [{"path": paths[i], "reason": r} for i, r in failed]
    metrics = {"k": config.k, "k_requested": config.k, "metric": "cosine", "index": "ivfpq (fashion.scale)",
               "mode": "all-pairs", "engine": "scale-local", "precision_at_k": quality["precision_at_k"],
               "map_at_k": quality["map_at_k"], "per_label_precision": quality["per_label_precision"],
               "per_label_queries": quality["per_label_queries"], "n_images": len(items),
               "n_ok": len(items) - len(failed), "n_skipped": len(failed), "n_queries": quality["queries"],
               "n_embedded": emb.computed, "skipped": skipped}
    # grids from a seeded sample of queries, read from the neighbour shards
    t = time.perf_counter()
    ok_ids = shards.ShardSet(emb.directory, only_ok=True).ids
    picks = np.sort(ok_ids[retrieval.pick_grid_queries(ok_ids, config.grids, config.seed)])
    rows = []
    for part in shards.list_parts(out / knn.NEIGHBORS_DIR):
        table = pq.read_table(part)
        rows.append(table.filter(pc.is_in(table.column("query_id"), value_set=pa.array(picks))))

    grids = []
    if rows and len(picks):
        nb = pa.concat_tables(rows).to_pandas().sort_values(["query_id", "rank"])
        k = int(nb["rank"].max())
        full = nb.groupby("query_id").filter(lambda g: len(g) == k)
        qrows = full["query_id"].unique()
        grids = retrieval._draw_grids(out, items, qrows, full["neighbor_id"].to_numpy().reshape(-1, k),
                                      full["distance"].to_numpy().reshape(-1, k), np.arange(len(qrows)))
    timing["report"] = time.perf_counter() - t
    metrics["timing"] = {**{k: round(v, 3) for k, v in timing.items()}, "total": round(time.perf_counter() - start, 3)}
    run_info = {"arguments": {k: getattr(config, k) for k in config.__dataclass_fields__}, "scale": True,
                "embedder": json.loads((Path(emb.directory) / "embedder.json").read_text(encoding="utf-8")),
                "versions": retrieval.versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    files = {"run.json": write_json(out / "run.json", run_info), "metrics.json": out / "metrics.json",
             "neighbors": out / knn.NEIGHBORS_DIR, "manifest.json": out / manifest.MANIFEST_JSON}
    files["index.html"] = write_gallery(out, metrics, grids, [p for p in files.values() if p.is_file()],
                                        title=f"Similar-clothes search: {Path(table.root).name}")
    write_json(out / "metrics.json", metrics)
    files.update({f"grids/{path.name}": path for path, _ in grids})
    log.info("precision@%d = %.4f over %d queries (sharded stages); %d images, %d skipped", config.k,
             metrics["precision_at_k"], metrics["n_queries"], len(items), len(failed))
    return retrieval.RunResult(out, metrics, files)
