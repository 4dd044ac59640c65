"""``measure_sim.py`` at or above ``MeasureConfig.shard_above`` items: the same command on the sharded stages.

One process, the local engine: manifest → embed (parquet shards) → IVF-PQ index → knn, the very stage
functions ``fashion manifest / embed / index / knn`` run, then :func:`fashion.scale.seal.seal` writes the
run (format 2, the layout of every run) into the output directory's staging directory. The stages work in
a cache directory that outlives the run (``CACHE/scale/<dataset fingerprint>-<embedder tag>/``, CACHE
being ``--cache-dir`` or ``OUTPUT_DIR/cache`` as for the one-machine embedding cache), so a run killed
at any point resumes: the rerun embeds only the missing ids, keeps the finished index shards and
neighbour shards. All-pairs retrieval only (a ``--query-split`` or In-shop run stays on the one-machine
path, said in the log).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path


log = logging.getLogger(__name__)

SCALE_CACHE = "scale"  # sub-directory of the cache holding the stages' resumable work
SHARD_ROWS = 4096  # ids per embedding shard: what a kill can lose


def applies(config, items) -> bool:
    """True when a retrieval run of ``items`` should use the sharded stages: at least ``config.shard_above``
    items and all-pairs retrieval (logs why)."""
    if len(items) < config.shard_above:
        return False
    if config.query_split or "item_id" in items.columns:
        log.info("%d items: above the scale threshold (%d), but query/gallery splits need the one-machine path",
                 len(items), config.shard_above)
        return False
    log.info("%d items: above the scale threshold (%d): sharded stages into %s", len(items), config.shard_above,
             config.output_dir)
    return True


def work_dir(cache, embedder, crop: bool, fp: str) -> Path:
    """``CACHE/scale/<fingerprint[:16]>-<embedder tag>``: one per dataset and embedder, as the
    one-machine embedding cache is one per embedder."""
    return Path(cache) / SCALE_CACHE / f"{fp[:16]}-{embedder.cache_path('', crop).name}"


def _fresh_index_dir(index_dir: Path, settings: dict) -> None:
    """Remove an index (finished or not) that was built with other settings; record the current ones."""
    from ..atomic import ensure_dir, write_json

    marker = index_dir / "settings.json"
    if index_dir.is_dir() and (not marker.is_file()
                               or json.loads(marker.read_text(encoding="utf-8")) != settings):
        shutil.rmtree(index_dir)
    if not marker.is_file():
        write_json(ensure_dir(index_dir) / marker.name, settings)


def run(config, table, out, run_id: str, cache=None):
    """The sharded retrieval run of ``table`` (a :class:`fashion.datasets.ItemTable`) into ``out`` (the
    staging directory of :func:`fashion.retrieval.run`'s transaction, whose run id is ``run_id``), its
    resumable work in ``cache`` (None: ``config.cache_dir`` or ``OUTPUT_DIR/cache``); returns
    :class:`fashion.runresult.RunResult`."""
    from ..insight.stage import InsightConfig
    from . import embed, ivfpq, knn, manifest
    from .seal import INDEX_DIR, SealOptions, seal

    start = time.perf_counter()
    items = table.frame
    cache = Path(cache if cache is not None else config.cache_dir or Path(config.output_dir) / "cache")
    timing = {}
    fp = manifest.fingerprint(items)
    econfig = embed.EmbedConfig(str(cache), model=config.model, arch=config.arch, layer=config.layer, size=config.size,
                                runtime=config.runtime, batch_size=config.batch_size, num_workers=config.num_workers,
                                shard_rows=SHARD_ROWS)
    spec, embedder = embed.resolve_spec(econfig, len(items))
    work = work_dir(cache, embedder, spec.crop, fp)
    log.info("%s: the sharded stages' work (resumed by a rerun)", work)
    manifest.write_manifest(table, work, fp=fp)
    emb = embed.embed_run(dataclasses.replace(econfig, run_dir=str(work)))
    timing["embed"] = round(time.perf_counter() - start, 3)
    t = time.perf_counter()
    _fresh_index_dir(work / INDEX_DIR, {"seed": config.seed, "embeddings": Path(emb.directory).name})
    ivfpq.build(emb.directory, work / INDEX_DIR, id_space=len(items), seed=config.seed)
    timing["index"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    quality = knn.knn_run(knn.KnnConfig(str(work), k=config.k, seal=False))
    timing["search"] = round(time.perf_counter() - t, 3)
    insight = (InsightConfig(threshold=config.duplicate_threshold, map_method=config.map_method, seed=config.seed)
               if config.insight else None)
    options = SealOptions(grids=config.grids, seed=config.seed, insight=insight,
                          arguments={**dataclasses.asdict(config), "input": table.root},
                          extra_metrics={"n_embedded": emb.computed, "n_from_cache": emb.done_before, "timing": timing})
    result = seal(work, out, run_id, quality, options)
    result.metrics["timing"]["total"] = round(time.perf_counter() - start, 3)
    from ..atomic import write_json

    write_json(Path(out) / "metrics.json", result.metrics)
    log.info("precision@%d = %.4f over %d queries (sharded stages); %d images, %d skipped", quality["k"],
             result.metrics["precision_at_k"], result.metrics["n_queries"], len(items), result.metrics["n_skipped"])
    return result
