"""The one orchestrator: :func:`measure` composes the stages for a run of any size, :func:`seal_work`
seals the work of the verbs (``fashion manifest → embed → index → knn``) with the same stages.

    read → embed (id-keyed shards, by the executor) → gather (embeddings.npy by id) → index (auto: by size
    and memory) → search (neighbors/) → metrics (one tally) → item-table stages → report, insight, seal

The run is a transaction (:mod:`fashion.rundir`): written into a staging directory beside
``output_dir`` and swapped into place in one step, so a failed or killed rerun leaves the previous run
as it was; the stages' resumable work stays in the cache (:mod:`fashion.pipeline.vectors`), so the rerun
embeds only the ids still missing and keeps a finished on-disk index and neighbour shards.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..run import listcache
from ..runresult import RunResult, Stopwatch
from . import index as index_mod
from . import read, search, seal, vectors

log = logging.getLogger(__name__)


def measure(config, executor=None) -> RunResult:
    """Run the whole retrieval measurement of ``config`` (:class:`~fashion.pipeline.config.MeasureConfig`)
    with ``executor`` (:mod:`fashion.scale.executors`; None: the one ``config.engine`` names); its files
    appear in ``output_dir`` together, in one step."""
    from .. import rundir
    from ..run import layout
    from ..scale import executors

    if config.output_dir is None:
        raise ConfigError("output_dir is required")
    if config.k < 1:
        raise ConfigError(f"k must be positive, got {config.k}")
    if config.size is not None:
        from ..runfiles import check_size

        check_size(config.size, "size")
    executor = executors.of(config) if executor is None else executor
    with rundir.transaction(config.output_dir, kind=layout.RUN_KIND) as txn:
        result = _measure(config, executor, txn)
    files = {name: txn.final(path) for name, path in result.files.items()}
    return RunResult(txn.target, result.metrics, files)


def _measure(config, executor, txn) -> RunResult:
    watch = Stopwatch()
    out = txn.path
    with watch.stage("load"):
        table, items = read.read_stage(config)
        work, embedder = vectors.work_dir(config, table, config.cache_dir or txn.target / "cache")
    with watch.stage("embed"):
        emb = vectors.embed_stage(config, work, executor)
        embedded, ok, reasons = vectors.gather(work, out, len(items))
    vectors.check_model_output(embedded, ok, reasons, embedder, items["path"].astype(str).to_numpy())
    query, gallery, mode = read.assign_roles(table, ok, config)
    k, all_pairs = search.clamp_k(config.k, query, gallery)
    with watch.stage("index"):
        name = index_mod.choose_index(config.index, int(gallery.sum()), embedded.shape[1], config.metric)
        built = index_mod.index_stage(name, embedded, gallery, config.metric, work, config.seed, executor)
    with watch.stage("search"):
        parts = search.search_stage(built, embedded, query, gallery, k, all_pairs, work, out, executor)
        quality = search.metrics_stage(parts, items, k)
    arguments = {**asdict(config), "input": table.root}
    skipped = [{"path": rel, "reason": "file not found (listed in the annotations)"} for rel in table.missing]
    skipped += [{"path": rel, "reason": reason} for rel, reason in table.refused]  # by the file gate at load time
    run = seal.Staged(out, txn.run_id, items, table.root, table.format, ok, reasons, query, gallery, mode, k,
                      config.k, config.metric, built, embedded, vectors.embedder_info(work), arguments, skipped,
                      {"n_embedded": emb.computed, "n_from_cache": emb.done_before, "executor": executor.name},
                      {f"neighbors/{p.name}": p for p in parts})
    # the lists are the sealed index's own search (its parameters): id queries may answer from them
    metrics = seal.seal_run(run, quality, watch, config.grids, config.seed, config.insight_config(),
                            {"work_dir": str(Path(work).absolute()), listcache.LISTS_KEY: listcache.marker(k)})
    log.debug("precision@%d = %.4f over %d queries (%s); %d images, %d skipped", k, metrics["precision_at_k"],
              metrics["n_queries"], mode, metrics["n_images"], metrics["n_skipped"])
    return RunResult(out, metrics, run.files)


def seal_work(run_dir, k: int, executor=None, nprobe=None, rerank=None, arguments: dict | None = None,
              insight=True) -> RunResult:
    """The verbs' last step (``fashion knn``): search, metrics and seal over a run directory whose
    manifest, embeddings and on-disk index the verbs wrote, with the stages :func:`measure` runs; the
    work sub-directories stay beside the run (outside its manifest) and resume."""
    from .. import rundir
    from ..insight.stage import InsightConfig
    from ..run import layout
    from ..scale import knn, manifest

    run_dir = Path(run_dir)
    watch = Stopwatch()
    info = manifest.Manifest.read(run_dir)
    items = manifest.to_frame(manifest.read_items(run_dir))
    if not np.array_equal(items["id"].to_numpy(), np.arange(info.count)):
        raise manifest.ManifestError(f"{run_dir}: the manifest's ids are not 0..{info.count - 1} in order")
    items = items.drop(columns="id")
    with rundir.transaction(run_dir, kind=layout.RUN_KIND, keep=layout.WORK_DIRS) as txn:
        out = txn.path
        with watch.stage("gather"):
            embedded, ok, reasons = vectors.gather(run_dir, out, len(items))
        k, _ = search.clamp_k(k, ok, ok)
        built = index_mod.Built("faiss-ivfpq", directory=run_dir / knn.INDEX_DIR)
        with watch.stage("search"):
            parts = search.search_stage(built, embedded, ok, ok, k, True, run_dir, out, executor, nprobe, rerank)
            quality = search.metrics_stage(parts, items, k)
        run = seal.Staged(out, txn.run_id, items, info.root, info.format, ok, reasons, ok, ok, "all-pairs", k, k,
                          "cosine", built, embedded, vectors.embedder_info(run_dir), arguments or {"k": k},
                          counts={"executor": getattr(executor, "name", "local")},
                          files={f"neighbors/{p.name}": p for p in parts})
        info = {"work_dir": str(run_dir.absolute())}
        if nprobe is None and rerank is None:  # searched as the served index searches: id queries may use them
            info[listcache.LISTS_KEY] = listcache.marker(k)
        metrics = seal.seal_run(run, quality, watch, 12, 0, InsightConfig() if insight else None, info)
    files = {name: txn.final(path) for name, path in run.files.items()}
    return RunResult(txn.target, metrics, files)
