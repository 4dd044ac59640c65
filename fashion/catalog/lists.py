"""Neighbour lists updated in place of a rebuild: pure functions on arrays, equal to a full search.

A run's lists are ``Lists(query_ids (q,), ids (q, k), dist (q, k))`` in rank order (ids are item ids,
−1 pads a short list). Every distance comes from the one pair-distance function of
:mod:`fashion.neighbors` (bitwise the same for a pair whatever the batch), and ranks order by
(distance, id) as a fresh search does, so an updated list equals the rebuilt one (ties at the k-th
distance aside).

A run changed by the catalogue also keeps a **reserve** (``reserve.npz``): each query's next
:data:`RESERVE` × k candidates after its k-th, as exact as the lists (−1 where unknown). A removal takes
a list's lost members' places from its reserve; only a list whose reserve runs out is searched again
(a full m × n search of those lists), which is what made removals slow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..neighbors.base import _drop_self

log = logging.getLogger(__name__)

RESERVE = 1  # reserve width, in multiples of k (2k candidates known per query)


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


def merge_added(lists: Lists, query_vectors: np.ndarray, new_index, new_ids: np.ndarray,
                k: int | None = None) -> tuple[Lists, int]:
    """Existing lists after new gallery items arrive: one m × n search of the existing queries among the
    m new items (``new_index``, fitted on them; rows → ``new_ids``), each list merged with its new
    candidates. A list changes only where a new item comes closer than its k-th neighbour. Wide lists
    (the first ``k`` columns shown, the rest a reserve, :func:`widen`) keep as many known entries per row
    as they had: the union of a row's v known entries and the new items holds the v nearest of the new
    gallery, nothing further. Returns (lists, how many lists changed in their first ``k`` columns)."""
    width, k = lists.k, lists.k if k is None else k
    if not len(lists.query_ids) or not len(new_ids):
        return lists, 0
    dist, rows = new_index.kneighbors(query_vectors, n_neighbors=min(width, len(new_ids)))
    ids, dist = _best(np.concatenate([lists.ids, new_ids[rows]], axis=1),
                      np.concatenate([lists.dist, dist.astype(np.float32)], axis=1), width)
    unknown = np.arange(width)[None, :] >= (lists.ids >= 0).sum(axis=1)[:, None]
    ids[unknown], dist[unknown] = -1, np.inf
    changed = int((ids[:, :k] != lists.ids[:, :k]).any(axis=1).sum())
    return Lists(lists.query_ids, ids, dist), changed


def drop_removed(lists: Lists, removed: np.ndarray, k: int | None = None) -> tuple[Lists, np.ndarray]:
    """Lists without the queries in ``removed`` and without the removed items (each row's known entries
    moved up), and the ids of the queries left with fewer than ``k`` known entries (default: the lists'
    width: every list that lost a member), which need a fresh search. A wide list (:func:`widen`) whose
    reserve covers its losses is exact as it is: its known entries were the nearest of the gallery."""
    removed = np.asarray(removed, np.int64)
    k = lists.k if k is None else k
    keep = ~np.isin(lists.query_ids, removed)
    kept = lists.take(np.flatnonzero(keep))
    gone = np.isin(kept.ids, removed)
    if not gone.any():
        return kept, kept.query_ids[(kept.ids >= 0).sum(axis=1) < k]
    ids, dist = kept.ids.copy(), kept.dist.copy()
    ids[gone], dist[gone] = -1, np.inf
    hit = np.flatnonzero(gone.any(axis=1))
    ids[hit], dist[hit] = _best(ids[hit], dist[hit], lists.k)
    kept = Lists(kept.query_ids, ids, dist)
    return kept, kept.query_ids[(ids >= 0).sum(axis=1) < k]


def widen(lists: Lists, reserve: "Lists | None", width: int) -> Lists:
    """``lists`` with its ``reserve`` (the next candidates of each query: the exact ranks k+1… of the
    gallery, −1 where unknown) beside it, ``width`` columns in all; unknown entries where the reserve is
    absent or belongs to other queries."""
    extra = width - lists.k
    if reserve is not None and np.array_equal(reserve.query_ids, lists.query_ids) and reserve.k >= extra:
        ids = np.concatenate([lists.ids, reserve.ids[:, :extra]], axis=1)
        dist = np.concatenate([lists.dist, reserve.dist[:, :extra]], axis=1)
        return Lists(lists.query_ids, ids, dist)
    ids, dist = _pad(lists.ids, lists.dist, width)
    return Lists(lists.query_ids, ids, dist.astype(np.float32))


def split(wide: Lists, k: int) -> tuple[Lists, Lists]:
    """(the first ``k`` columns: the lists shown, the rest: the reserve) of wide lists."""
    return (Lists(wide.query_ids, wide.ids[:, :k], wide.dist[:, :k]),
            Lists(wide.query_ids, wide.ids[:, k:], wide.dist[:, k:]))
