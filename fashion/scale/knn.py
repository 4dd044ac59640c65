"""Neighbours at scale: query every embedding shard against the built index, one output shard each.

``RUN/knn/part-*.parquet`` (query_id, rank, neighbor_id, distance; the query itself left out), one
per embedding shard and named after it, written atomically and skipped when present (a killed run
resumes), the shards queried by an executor (:mod:`.executors`). The pipeline's metrics stage tallies
them (:class:`fashion.metrics.RetrievalTally`) and its seal stage (:mod:`fashion.pipeline.seal`) turns the
work into a run of format 2 whose ``neighbors/`` links these shards.
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
from . import ivfpq, shards

KNN_DIR = "knn"  # the neighbour shards' work directory, linked into the run's neighbors/
INDEX_DIR = "index"  # the on-disk index's work directory, linked into the run's ivfpq/

log = logging.getLogger(__name__)

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

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be positive, got {self.k}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


def query_part(index: "ivfpq.ScaleIndex", part_path, keep: np.ndarray, out_path, k: int, nprobe=None,
               rerank=None) -> int:
    """Query one embedding shard's kept rows; writes ``out_path``; returns the number of queries."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(part_path, columns=["id", "vector"])
    if not keep.all():
        table = table.filter(pa.array(keep))
    from ..neighbors.base import drop_self, unit_rows

    qids = table.column("id").to_numpy().astype(np.int64)
    # queries at unit length as a served id query's (fashion.run.index.IvfpqIndex): the same distances, bit for bit
    queries = unit_rows(shards.vectors_of(table.column("vector")), keep_zero=True)
    dist, ids = index.search(queries, k + 1, nprobe=nprobe, rerank=rerank)
    dist, ids = drop_self(dist, ids, own=qids)  # (q, k + 1) → (q, k)
    shards.write_table(out_path, neighbors_table(qids, dist, ids))
    return len(qids)


def knn_run(config: KnnConfig, executor=None, query_ids: np.ndarray | None = None) -> dict:
    """Write the neighbours shards of a work directory; returns {k, parts (their paths), seconds, embeddings}
    (``executor``: None = the one ``config.engine`` names; ``query_ids``: query only these ids, None:
    every embedded one)."""
    from ..atomic import ensure_dir, write_json
    from . import executors

    start = time.perf_counter()
    run = Path(config.run_dir)
    emb = embed_stage.latest_embeddings(run)
    shard_set = shards.ShardSet(emb, only_ok=True).restrict(query_ids)
    most = max(1, len(shard_set) - 1)  # each vector's neighbours leave itself out
    if config.k > most and query_ids is None:
        log.warning("k=%d is more than the %d other vectors of the gallery: k=%d", config.k, len(shard_set), most)
        config = replace(config, k=most)
    out = ensure_dir(run / KNN_DIR)
    settings = {"k": config.k, "nprobe": config.nprobe, "rerank": config.rerank, "embeddings": emb.name,
                "index": (run / INDEX_DIR / ivfpq.INDEX_JSON).read_text(encoding="utf-8")
                if (run / INDEX_DIR / ivfpq.INDEX_JSON).is_file() else "",
                "queries": None if query_ids is None else shards.ids_digest(query_ids)}
    settings_file = out / SETTINGS_JSON
    if not settings_file.is_file() or json.loads(settings_file.read_text(encoding="utf-8")) != settings:
        for stale in shards.list_parts(out):  # shards of other settings (or an older index) are redone
            stale.unlink()
        write_json(settings_file, settings)
    shards.clean_torn(out)
    todo = [(str(p.path), p.keep, str(out / p.path.name), config.k, config.nprobe, config.rerank)
            for p in shard_set.parts if p.keep.any() and not (out / p.path.name).is_file()]
    log.info("%s: %d of %d shards to query (k=%d)", out, len(todo), len(shard_set.parts), config.k)
    executor = executors.of(config) if executor is None else executor
    worker = functools.partial(_KnnWorker, str(run / INDEX_DIR))
    list(executor.map(worker, todo))
    done = [out / p.path.name for p in shard_set.parts if (out / p.path.name).is_file()]
    result = {"k": config.k, "parts": [str(p) for p in done], "seconds": round(time.perf_counter() - start, 3),
              "embeddings": str(emb.name)}
    log.info("%s: %d neighbour shards (k=%d) in %.1f s", out, len(done), config.k, result["seconds"])
    return result


class _KnnWorker:
    """One opened on-disk index per process or actor; ``worker(*task)`` runs :func:`query_part`."""

    def __init__(self, index_dir: str):
        self.index = ivfpq.ScaleIndex(index_dir)

    def __call__(self, part_path, keep, out_path, k, nprobe, rerank) -> int:
        return query_part(self.index, part_path, keep, out_path, k, nprobe, rerank)


def grid_of(table, k: int):
    """A neighbour table (query_id, rank, neighbor_id …) → (query ids (q,), neighbour ids (q, k), -1 where
    a rank is missing)."""
    q = table.column("query_id").to_numpy()
    queries, row = np.unique(q, return_inverse=True)
    grid = np.full((len(queries), k), -1, dtype=np.int64)
    grid[row, table.column("rank").to_numpy() - 1] = table.column("neighbor_id").to_numpy()
    return queries, grid


def read_neighbors(run_dir) -> "object":
    """The whole neighbours table of a run's knn work as a DataFrame sorted by (query_id, rank) (small runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = shards.list_parts(Path(run_dir) / KNN_DIR)
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    return table.to_pandas().sort_values(["query_id", "rank"], kind="stable").reset_index(drop=True)
