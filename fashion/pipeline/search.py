"""The search stage (every query's top-K into the run's ``neighbors/``) and the metrics stage (one tally
over that table, whatever wrote it: :class:`fashion.metrics.RetrievalTally`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import DatasetError

log = logging.getLogger(__name__)

MEMORY_KNN_DIR = "memory-knn"  # the in-memory search's finished parts in the work directory


def clamp_k(k: int, query: np.ndarray, gallery: np.ndarray) -> tuple[int, bool]:
    """(k, all_pairs): ``k`` clamped to the neighbours that exist (a query leaves itself out in all-pairs)."""
    n_gallery, n_query = int(gallery.sum()), int(query.sum())
    all_pairs = bool(np.array_equal(query, gallery))
    possible = n_gallery - (1 if all_pairs else 0)
    if possible < 1 or n_query == 0:
        raise DatasetError(f"not enough usable images to search: {n_query} queries, {n_gallery} gallery images")
    if k > possible:
        log.warning("k=%d is more than the %d possible neighbours; using k=%d", k, possible, possible)
    return min(k, possible), all_pairs


def search_stage(built, vectors, query: np.ndarray, gallery: np.ndarray, k: int, all_pairs: bool, work,
                 executor, nprobe: int | None = None, rerank: int | None = None) -> list[Path]:
    """Every query's top-K (query_id, rank, neighbor_id, distance; the query itself left out) as finished
    parquet parts in the work directory, resumed: parts of the same index, k and queries are kept, so a
    rerun after this stage does not search again. In memory: one ``kneighbors`` over the queries
    (``vectors``: a callable giving the (n, d) vectors, called only when searching) into
    ``work/memory-knn/``; on disk: the embedding shards queried by the executor
    (:func:`fashion.scale.knn.knn_run`, resumable shard by shard; ``nprobe``, ``rerank``: its search
    options) into ``work/knn/``. The seal stage links the parts into the run's ``neighbors/``."""
    if built.directory is not None:
        from ..scale import knn

        done = knn.knn_run(knn.KnnConfig(str(work), k=k, nprobe=nprobe, rerank=rerank), executor=executor,
                           query_ids=None if all_pairs else np.flatnonzero(query))  # all-pairs: every embedded id
        return [Path(p) for p in done["parts"]]
    return _search_in_memory(built, vectors, query, gallery, k, all_pairs, work)


def _search_in_memory(built, vectors, query, gallery, k, all_pairs, work) -> list[Path]:
    import shutil

    from ..atomic import write_json
    from ..run import layout, writer
    from ..runfiles import read_json
    from ..scale.shards import ids_digest
    from .index import DONE_JSON

    directory = Path(work) / MEMORY_KNN_DIR
    query_rows, gallery_rows = np.flatnonzero(query), np.flatnonzero(gallery)
    key = {"index": built.key, "k": int(k), "all_pairs": all_pairs, "queries": ids_digest(query_rows)}
    done = directory / DONE_JSON
    if done.is_file() and read_json(done) == key:
        parts = sorted((directory / layout.NEIGHBORS_DIR).glob(layout.PART_GLOB))
        log.info("%s: the neighbours of these %d queries (k=%d) are kept", directory, len(query_rows), k)
        return parts
    shutil.rmtree(directory, ignore_errors=True)  # another search's parts: replaced
    dist, idx = kneighbors(built.fitted(), None if all_pairs else np.asarray(vectors()[query_rows]), k)
    neighbor_rows = np.where(idx >= 0, gallery_rows[np.maximum(idx, 0)], -1)
    parts = writer.write_neighbors(directory, query_rows, dist, neighbor_rows)
    write_json(done, key)  # last: the checkpoint is whole
    return parts


def kneighbors(index, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances float32, index rows) of the queries' top-K in a fitted in-memory backend (``queries``:
    None = all-pairs over the fitted vectors, each leaving itself out): the in-memory search's work."""
    dist, idx = index.kneighbors(queries, n_neighbors=k)
    return np.asarray(dist, dtype=np.float32), np.asarray(idx)


def metrics_stage(parts, items, k: int) -> dict:
    """precision@k, mAP@k, per label (and recall@k by item id where items have an ``item_id``) of the
    neighbour table in ``parts``, tallied part by part."""
    import pyarrow.parquet as pq

    from ..scale.knn import grid_of

    tally = _tally(items, k)
    for part in parts:
        tally.update(*grid_of(pq.read_table(part, columns=["query_id", "rank", "neighbor_id"]), k))
    return tally.result()


def compute_metrics(items, query_rows: np.ndarray, neighbor_rows: np.ndarray, k: int) -> dict:
    """The same metrics of a neighbours table held in memory (query_rows (q,), neighbor_rows (q, k))."""
    tally = _tally(items, k)
    tally.update(np.asarray(query_rows), np.asarray(neighbor_rows))
    out = tally.result()
    out.pop("n_queries")
    return out


def _tally(items, k: int):
    from ..metrics import RetrievalTally

    item_ids = items["item_id"].astype(str).to_numpy() if "item_id" in items.columns else None
    return RetrievalTally(items["label"].astype(str).to_numpy(), k, item_ids)
