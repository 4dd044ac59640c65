"""The search stage (every query's top-K into the run's ``neighbors/``) and the metrics stage (one tally
over that table, whatever wrote it: :class:`fashion.metrics.RetrievalTally`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import DatasetError

log = logging.getLogger(__name__)


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


def search_stage(built, vectors, query: np.ndarray, gallery: np.ndarray, k: int, all_pairs: bool, work, out,
                 executor, nprobe: int | None = None, rerank: int | None = None) -> list[Path]:
    """Write ``out/neighbors/part-*.parquet`` (query_id, rank, neighbor_id, distance; the query itself left
    out); returns the parts. In memory: one ``kneighbors`` over the queries; on disk: the embedding
    shards queried by the executor (:func:`fashion.scale.knn.knn_run`, resumable; ``nprobe``, ``rerank``:
    its search options), linked in."""
    from ..run import writer

    if built.directory is not None:
        from ..scale import knn

        done = knn.knn_run(knn.KnnConfig(str(work), k=k, nprobe=nprobe, rerank=rerank), executor=executor,
                           query_ids=None if all_pairs else np.flatnonzero(query))  # all-pairs: every embedded id
        return writer.link_neighbors(out, done["parts"])
    query_rows, gallery_rows = np.flatnonzero(query), np.flatnonzero(gallery)
    dist, idx = built.index.kneighbors(None if all_pairs else np.asarray(vectors[query_rows]), n_neighbors=k)
    idx = np.asarray(idx)
    neighbor_rows = np.where(idx >= 0, gallery_rows[np.maximum(idx, 0)], -1)
    return writer.write_neighbors(out, query_rows, np.asarray(dist, dtype=np.float32), neighbor_rows)


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
