"""``measure_sim.py`` above :data:`SCALE_THRESHOLD` items: the same command on the sharded stages.

One process, the local engine: manifest → embed (parquet shards) → IVF index → knn. The stages work in
a cache directory that outlives the run (``CACHE/scale/<dataset fingerprint>-<embedder tag>/``, CACHE
being ``--cache-dir`` or ``OUTPUT_DIR/cache`` as for the one-machine embedding cache), so a run killed
at any point resumes: the rerun embeds only the missing ids, keeps the finished index shards and
neighbour shards. The run's staging directory receives the finished outputs only: ``items/part-*.parquet``
(id, path, relpath, label, split: the id space of the neighbours) and ``neighbors/part-*.parquet``
(hard links to the cache's files where the file system allows, copies elsewhere) instead of the
one-machine files (``items.csv``, ``embeddings.npy``, ``neighbors.csv``, whose size grows with n), plus
``metrics.json``, ``run.json`` (it names the cache directory holding the embeddings and the index), the
grids (drawn from a seeded sample of queries) and ``index.html``. All-pairs retrieval only (a
``--query-split`` or In-shop run stays on the one-machine path, said in the log).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCALE_THRESHOLD = 500_000  # items; below it the one-machine path (exact search, CSV outputs) is faster
SCALE_CACHE = "scale"  # sub-directory of the cache holding the stages' resumable work
ITEMS_DIR = "items"  # the run's item table (the manifest's shards) in the output directory
SHARD_ROWS = 4096  # ids per embedding shard: what a kill can lose


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


def work_dir(cache, embedder, crop: bool, fp: str) -> Path:
    """``CACHE/scale/<fingerprint[:16]>-<embedder tag>``: one per dataset and embedder, as the
    one-machine embedding cache is one per embedder."""
    return Path(cache) / SCALE_CACHE / f"{fp[:16]}-{embedder.cache_path('', crop).name}"


def _link_or_copy(src: Path, dest: Path) -> Path:
    """Put a finished cache file into the run: a hard link (no copy of a large file), or a copy across
    file systems. The cache's writers replace files by rename, so the run's link keeps its content."""
    from ..atomic import ensure_dir

    ensure_dir(dest.parent)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return dest


def _fresh_index_dir(index_dir: Path, settings: dict) -> None:
    """Remove an index (finished or not) that was built with other settings; record the current ones."""
    from ..atomic import ensure_dir, write_json

    marker = index_dir / "settings.json"
    if index_dir.is_dir() and (not marker.is_file()
                               or json.loads(marker.read_text(encoding="utf-8")) != settings):
        shutil.rmtree(index_dir)
    if not marker.is_file():
        write_json(ensure_dir(index_dir) / marker.name, settings)


def run(config, table, out=None, cache=None):
    """The scaled retrieval run of ``table`` (a :class:`fashion.datasets.ItemTable`) into ``out`` (the
    staging directory of :func:`fashion.retrieval.run`'s transaction; None: ``config.output_dir``), its
    resumable work in ``cache`` (None: ``config.cache_dir`` or ``OUTPUT_DIR/cache``); returns :class:`fashion.runresult.RunResult`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .. import provenance
    from ..atomic import write_json
    from ..report import draw_grids, pick_grid_queries, write_gallery
    from ..runresult import RunResult
    from . import embed, ivfpq, knn, manifest, shards

    start = time.perf_counter()
    items = table.frame
    out = Path(out if out is not None else config.output_dir)
    cache = Path(cache if cache is not None else config.cache_dir or Path(config.output_dir) / "cache")
    timing = {}
    t = time.perf_counter()
    fp = manifest.fingerprint(items)
    econfig = embed.EmbedConfig(str(cache), model=config.model, arch=config.arch, layer=config.layer, size=config.size,
                                runtime=config.runtime, batch_size=config.batch_size, num_workers=config.num_workers,
                                shard_rows=SHARD_ROWS)
    spec, embedder = embed.resolve_spec(econfig, len(items))
    work = work_dir(cache, embedder, spec.crop, fp)
    log.info("%s: the sharded stages' work (resumed by a rerun)", work)
    manifest.write_manifest(table, work, fp=fp)
    emb = embed.embed_run(dataclasses.replace(econfig, run_dir=str(work)))
    timing["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    _fresh_index_dir(work / knn.INDEX_DIR, {"seed": config.seed, "embeddings": Path(emb.directory).name})
    ivfpq.build(emb.directory, work / knn.INDEX_DIR, id_space=len(items), seed=config.seed)
    timing["index"] = time.perf_counter() - t
    t = time.perf_counter()
    quality = knn.knn_run(knn.KnnConfig(str(work), k=config.k))
    neighbor_parts = [_link_or_copy(p, out / knn.NEIGHBORS_DIR / p.name)
                      for p in shards.list_parts(work / knn.NEIGHBORS_DIR)]
    for part in map(Path, manifest.shard_paths(work)):
        _link_or_copy(part, out / ITEMS_DIR / part.name)
    timing["search"] = time.perf_counter() - t
    every = shards.ShardSet(emb.directory)
    failed = []
    for _, batch in every.iter_batches(["id", "ok", "reason"]):
        bad = ~batch.column("ok").to_numpy(zero_copy_only=False)
        failed += list(zip(batch.column("id").to_numpy()[bad].tolist(),
                           np.asarray(batch.column("reason").to_pylist(), dtype=object)[bad].tolist()))
    paths = items["path"].astype(str).to_numpy()
    skipped = [{"path": paths[i], "reason": r} for i, r in failed]
    metrics = {"k": config.k, "k_requested": config.k, "metric": "cosine", "index": "ivfpq (fashion.scale)",
               "mode": "all-pairs", "engine": "scale-local", "precision_at_k": quality["precision_at_k"],
               "map_at_k": quality["map_at_k"], "per_label_precision": quality["per_label_precision"],
               "per_label_queries": quality["per_label_queries"], "n_images": len(items),
               "n_ok": len(items) - len(failed), "n_skipped": len(failed), "n_queries": quality["queries"],
               "n_embedded": emb.computed, "n_from_cache": emb.done_before, "skipped": skipped}
    # grids from a seeded sample of queries, read from the neighbour shards
    t = time.perf_counter()
    ok_ids = shards.ShardSet(emb.directory, only_ok=True).ids
    picks = np.sort(ok_ids[pick_grid_queries(ok_ids, config.grids, config.seed)])
    rows = []
    for part in neighbor_parts:
        part_rows = pq.read_table(part)
        rows.append(part_rows.filter(pc.is_in(part_rows.column("query_id"), value_set=pa.array(picks))))

    grids = []
    if rows and len(picks):
        nb = pa.concat_tables(rows).to_pandas().sort_values(["query_id", "rank"])
        k = int(nb["rank"].max())
        full = nb.groupby("query_id").filter(lambda g: len(g) == k)
        qrows = full["query_id"].unique()
        grids = draw_grids(out, items, qrows, full["neighbor_id"].to_numpy().reshape(-1, k),
                                      full["distance"].to_numpy().reshape(-1, k), np.arange(len(qrows)))
    timing["report"] = time.perf_counter() - t
    metrics["timing"] = {**{k: round(v, 3) for k, v in timing.items()}, "total": round(time.perf_counter() - start, 3)}
    run_info = {"arguments": {k: getattr(config, k) for k in config.__dataclass_fields__},
                "scale": {"work_dir": str(work.absolute()), "embeddings": str(Path(emb.directory).absolute()),
                          "index": str((work / knn.INDEX_DIR).absolute())},
                "embedder": json.loads((Path(emb.directory) / "embedder.json").read_text(encoding="utf-8")),
                "versions": provenance.versions(), "command": provenance.command_line(),
                "git": provenance.git_revision(), "created": provenance.created()}
    files = {"run.json": write_json(out / "run.json", run_info), "metrics.json": out / "metrics.json",
             "neighbors": out / knn.NEIGHBORS_DIR, "items": out / ITEMS_DIR}
    files["index.html"] = write_gallery(out, metrics, grids, [p for p in files.values() if p.is_file()],
                                        title=f"Similar-clothes search: {Path(table.root).name}")
    write_json(out / "metrics.json", metrics)
    files.update({f"grids/{path.name}": path for path, _ in grids})
    log.info("precision@%d = %.4f over %d queries (sharded stages); %d images, %d skipped", config.k,
             metrics["precision_at_k"], metrics["n_queries"], len(items), len(failed))
    return RunResult(out, metrics, files)
