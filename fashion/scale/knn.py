"""Neighbours at scale: query every embedding shard against the built index, one output shard each.

``RUN/knn/part-*.parquet`` (query_id, rank, neighbor_id, distance; the query itself left out), one
per embedding shard and named after it, written atomically and skipped when present (a killed run
resumes); then (``KnnConfig.seal``) the run directory is sealed as a run of format 2
(:mod:`fashion.scale.seal`), whose ``neighbors/`` links these shards. Metrics are accumulated shard by shard from the manifest's labels (never the whole table in
memory): precision@k and mAP@k overall and per label, as :func:`fashion.retrieval.compute_metrics`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..options import ENGINES, default
from ..run.writer import neighbors_table
from . import embed as embed_stage
from . import ivfpq, manifest, shards
from .seal import INDEX_DIR, KNN_DIR, SealOptions, seal

log = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
SETTINGS_JSON = "knn.json"


@dataclass
class KnnConfig:
    """Options of ``fashion knn``."""

    run_dir: str
    k: int = default("k")
    engine: str = default("engine")
    nprobe: int | None = default("nprobe")
    rerank: int | None = default("rerank")
    address: str | None = default("address")
    actors: int = default("actors")
    cpus_per_actor: float = default("cpus_per_actor")
    seal: bool = True  # end by sealing run_dir as a run of format 2 (measure_sim seals its own output instead)

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be positive, got {self.k}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


def drop_self(query_ids: np.ndarray, dist: np.ndarray, ids: np.ndarray, k: int):
    """Leave each query out of its own list and keep ``k`` columns ((q, k+1) → (q, k)).

    >>> d, i = drop_self(np.array([5, 7]), np.array([[0., .1, .2], [0., .3, .4]]), np.array([[5, 1, 2], [3, 7, 4]]), 2)
    >>> i.tolist(), d.tolist()
    ([[1, 2], [3, 4]], [[0.1, 0.2], [0.0, 0.4]])
    """
    keep = ids != query_ids[:, None]
    # rows where the query was not found lose their last column instead
    extra = keep.sum(1) > k
    keep[extra, -1] = False
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)


def query_part(index: "ivfpq.ScaleIndex", part_path, keep: np.ndarray, out_path, k: int, nprobe=None,
               rerank=None) -> int:
    """Query one embedding shard's kept rows; writes ``out_path``; returns the number of queries."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(part_path, columns=["id", "vector"])
    if not keep.all():
        table = table.filter(pa.array(keep))
    qids = table.column("id").to_numpy().astype(np.int64)
    dist, ids = index.search(shards.vectors_of(table.column("vector")), k + 1, nprobe=nprobe, rerank=rerank)
    dist, ids = drop_self(qids, dist, ids, k)
    shards.write_table(out_path, neighbors_table(qids, dist, ids))
    return len(qids)


class StreamingMetrics:
    """precision@k and mAP@k (overall and per label) accumulated one neighbours shard at a time."""

    def __init__(self, labels: np.ndarray, k: int):
        self.labels, self.k = labels, k
        self.names, self.codes = np.unique(labels, return_inverse=True)
        n = len(self.names)
        self.p_sum, self.ap_sum, self.count = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)

    def update(self, table) -> None:
        from .. import metrics as M

        q = table.column("query_id").to_numpy()
        nb = table.column("neighbor_id").to_numpy()
        rank = table.column("rank").to_numpy()
        queries, row = np.unique(q, return_inverse=True)
        grid = np.full((len(queries), self.k), -1, dtype=np.int64)
        grid[row, rank - 1] = nb
        q_lab = self.labels[queries]
        n_lab = np.where(grid >= 0, self.labels[np.maximum(grid, 0)], "\x00none")
        hits = (n_lab == q_lab[:, None]).mean(1)
        ap = M.average_precision_at_k(q_lab, n_lab, self.k)
        codes = self.codes[queries]
        np.add.at(self.p_sum, codes, hits)
        np.add.at(self.ap_sum, codes, ap)
        np.add.at(self.count, codes, 1)

    def result(self) -> dict:
        n = max(1, int(self.count.sum()))
        used = self.count > 0
        return {"k": self.k, "queries": int(self.count.sum()),
                "precision_at_k": float(self.p_sum.sum() / n), "map_at_k": float(self.ap_sum.sum() / n),
                "per_label_precision": {str(name): float(p / c) for name, p, c in
                                        zip(self.names[used], self.p_sum[used], self.count[used])},
                "per_label_queries": {str(name): int(c) for name, c in zip(self.names[used], self.count[used])}}


def knn_run(config: KnnConfig) -> dict:
    """Write the neighbours shards of a run and its ``neighbors/metrics.json``; returns the metrics."""
    from ..atomic import ensure_dir, write_json

    start = time.perf_counter()
    run = Path(config.run_dir)
    emb = embed_stage.latest_embeddings(run)
    shard_set = shards.ShardSet(emb, only_ok=True)
    most = max(1, len(shard_set) - 1)  # each vector's neighbours leave itself out
    if config.k > most:
        log.warning("k=%d is more than the %d other vectors of the gallery: k=%d", config.k, len(shard_set), most)
        config = replace(config, k=most)
    out = ensure_dir(run / KNN_DIR)
    settings = {"k": config.k, "nprobe": config.nprobe, "rerank": config.rerank, "embeddings": emb.name,
                "index": (run / INDEX_DIR / ivfpq.INDEX_JSON).read_text(encoding="utf-8")
                if (run / INDEX_DIR / ivfpq.INDEX_JSON).is_file() else ""}
    settings_file = out / SETTINGS_JSON
    if not settings_file.is_file() or json.loads(settings_file.read_text(encoding="utf-8")) != settings:
        for stale in shards.list_parts(out):  # shards of other settings (or an older index) are redone
            stale.unlink()
        write_json(settings_file, settings)
    shards.clean_torn(out)
    todo = [(p, out / p.path.name) for p in shard_set.parts if p.keep.any() and not (out / p.path.name).is_file()]
    log.info("%s: %d of %d shards to query (k=%d, engine %s)", out, len(todo), len(shard_set.parts), config.k,
             config.engine)
    if todo and config.engine == "ray":
        from . import engine_ray

        engine_ray.knn(config, functools.partial(ivfpq.ScaleIndex, str(run / INDEX_DIR)), query_part, todo)
    elif todo:
        index = ivfpq.ScaleIndex(run / INDEX_DIR)
        for part, target in todo:
            query_part(index, part.path, part.keep, target, config.k, config.nprobe, config.rerank)
    labels = np.asarray(manifest.read_items(run, columns=["label"]).column("label").to_pylist(), dtype=object)
    labels = labels.astype(str)
    stream = StreamingMetrics(labels, config.k)
    import pyarrow.parquet as pq

    for part in shard_set.parts:
        path = out / part.path.name
        if path.is_file():
            stream.update(pq.read_table(path))
    metrics = {**stream.result(), "seconds": round(time.perf_counter() - start, 3), "engine": config.engine,
               "embeddings": str(emb.name)}
    write_json(out / METRICS_JSON, metrics)
    log.info("%s: precision@%d %.4f over %d queries", out, config.k, metrics["precision_at_k"], metrics["queries"])
    if config.seal:
        from .. import rundir
        from ..insight.stage import InsightConfig
        from ..run import layout

        # the run directory becomes a run of format 2; the stages' work directories stay (outside the manifest)
        with rundir.transaction(run, kind=layout.RUN_KIND, keep=layout.WORK_DIRS) as txn:
            seal(run, txn.path, txn.run_id, metrics, SealOptions(insight=InsightConfig(), arguments={
                "k": config.k, "nprobe": config.nprobe, "rerank": config.rerank, "engine": config.engine}))
    return metrics


def read_neighbors(run_dir) -> "object":
    """The whole neighbours table of a run's knn work as a DataFrame sorted by (query_id, rank) (small runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = shards.list_parts(Path(run_dir) / KNN_DIR)
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    return table.to_pandas().sort_values(["query_id", "rank"], kind="stable").reset_index(drop=True)
