"""Neighbour lists updated in place of a rebuild: pure functions on arrays, equal to a full search.

A run's lists are ``Lists(query_ids (q,), ids (q, k), dist (q, k))`` in rank order (ids are item ids,
−1 pads a short list). Every distance comes from the one pair-distance function of
:mod:`fashion.neighbors` (bitwise the same for a pair whatever the batch), and ranks order by
(distance, id) as a fresh search does, so an updated list equals the rebuilt one (ties at the k-th
distance aside).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..neighbors.base import _drop_self

log = logging.getLogger(__name__)


@dataclass
class Lists:
    """Each query's k nearest gallery items: query_ids (q,), ids (q, k) int64, dist (q, k) float32."""

    query_ids: np.ndarray
    ids: np.ndarray
    dist: np.ndarray

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def take(self, rows: np.ndarray) -> "Lists":
        return Lists(self.query_ids[rows], self.ids[rows], self.dist[rows])

    @staticmethod
    def concat(parts: list["Lists"], k: int) -> "Lists":
        parts = [p for p in parts if len(p.query_ids)]
        if not parts:
            return Lists(np.zeros(0, np.int64), np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
        return Lists(np.concatenate([p.query_ids for p in parts]), np.concatenate([p.ids for p in parts]),
                     np.concatenate([p.dist for p in parts]))

    def sorted(self) -> "Lists":
        """By query id."""
        return self.take(np.argsort(self.query_ids, kind="stable"))


def from_table(table, k: int) -> Lists:
    """Lists from a run's neighbour table (query_id, rank, neighbor_id, distance; by query, rank)."""
    queries, first = np.unique(table["query_id"].to_numpy(np.int64), return_index=True)
    ids = np.full((len(queries), k), -1, np.int64)
    dist = np.full((len(queries), k), np.inf, np.float32)
    row = np.searchsorted(queries, table["query_id"].to_numpy(np.int64))
    col = table["rank"].to_numpy(np.int64) - 1
    ids[row, col] = table["neighbor_id"].to_numpy(np.int64)
    dist[row, col] = table["distance"].to_numpy(np.float32)
    return Lists(queries, ids, dist)


def _best(ids: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best (distance, then id) of its candidates; −1 / inf candidates last."""
    key_ids = np.where(ids < 0, np.iinfo(np.int64).max, ids)
    order = np.lexsort((key_ids, dist), axis=1)[:, :k]
    return np.take_along_axis(ids, order, 1), np.take_along_axis(dist, order, 1)


def search(index, gallery_ids: np.ndarray, vectors: np.ndarray, query_ids: np.ndarray, k: int,
           all_pairs: bool) -> Lists:
    """Fresh lists of ``query_ids`` (their ``vectors``) in ``index`` (rows → ``gallery_ids``); in an
    all-pairs run (the queries are gallery items) each query leaves itself out, as ``kneighbors(None)``
    does: by id, or the last candidate where a tied copy pushed it out."""
    query_ids = np.asarray(query_ids, np.int64)
    if not len(query_ids):
        return Lists.concat([], k)
    extra = int(bool(all_pairs))
    dist, rows = index.kneighbors(vectors, n_neighbors=min(k + extra, index.n_samples_fit_))
    ids = gallery_ids[rows]
    if extra:
        dist, ids = _drop_self(dist, ids, own=query_ids)
    ids, dist = _pad(ids[:, :k], dist[:, :k], k)
    return Lists(query_ids, ids, dist.astype(np.float32))


def _pad(ids: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    short = k - ids.shape[1]
    if short <= 0:
        return ids, dist
    return (np.pad(ids, ((0, 0), (0, short)), constant_values=-1),
            np.pad(dist, ((0, 0), (0, short)), constant_values=np.inf))


def merge_added(lists: Lists, query_vectors: np.ndarray, new_index, new_ids: np.ndarray) -> tuple[Lists, int]:
    """Existing lists after new gallery items arrive: one m × n search of the existing queries among the
    m new items (``new_index``, fitted on them; rows → ``new_ids``), each list merged with its new
    candidates. A list changes only where a new item comes closer than its k-th neighbour.
    Returns (lists, how many lists changed)."""
    k = lists.k
    if not len(lists.query_ids) or not len(new_ids):
        return lists, 0
    dist, rows = new_index.kneighbors(query_vectors, n_neighbors=min(k, len(new_ids)))
    ids, dist = _best(np.concatenate([lists.ids, new_ids[rows]], axis=1),
                      np.concatenate([lists.dist, dist.astype(np.float32)], axis=1), k)
    changed = int((ids != lists.ids).any(axis=1).sum())
    return Lists(lists.query_ids, ids, dist), changed


def drop_removed(lists: Lists, removed: np.ndarray) -> tuple[Lists, np.ndarray]:
    """Lists without the queries in ``removed``, and the ids of the queries whose list lost a member
    (they need a fresh search)."""
    removed = np.asarray(removed, np.int64)
    keep = ~np.isin(lists.query_ids, removed)
    kept = lists.take(np.flatnonzero(keep))
    lost = np.isin(kept.ids, removed).any(axis=1)
    return kept, kept.query_ids[lost]
