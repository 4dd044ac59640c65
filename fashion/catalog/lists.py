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

With an approximate (IVF) index "a full search" is a search with the run's kept index, which visits
only the coarse lists its query probes: a list takes a new item only where that search reaches it
(``merge_added``'s ``allowed``, :func:`fashion.catalog.kept.reach`), and the lists whose search turns
from exact to bound or back are searched again (:func:`fashion.catalog.kept.thin_probes`,
:func:`~fashion.catalog.kept.grown_probes`, :func:`~fashion.catalog.kept.widened_probes`). With flat codes the lists then equal that search's; with PQ
codes no kept list can (its candidates are its lists' best ``rerank`` codes, which new codes displace and
no run stores): they hold what the search reaches, within a rebuild's recall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..neighbors.base import drop_self, unit_rows

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


def member(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``np.isin(values, ids)`` for item ids (−1 pads: never a member), by a lookup table of the largest
    id: O(len(values)), where isin sorts (100k lists × 20 entries: ~0.3 s of a removal on loaded cores).

    >>> member(np.array([[3, -1], [0, 7]]), np.array([7, 3])).tolist()
    [[True, False], [False, True]]
    """
    values, ids = np.asarray(values, np.int64), np.asarray(ids, np.int64)
    if not len(ids) or not values.size:
        return np.zeros(values.shape, bool)
    table = np.zeros(max(int(ids.max()), int(values.max())) + 2, bool)  # the last slot: index −1, never set
    table[ids[ids >= 0]] = True
    return table[values]


def from_table(table, k: int) -> Lists:
    """Lists from a run's neighbour table (query_id, rank, neighbor_id, distance), by query then rank as
    :func:`fashion.run.reader.read_neighbors` returns it (it sorts a table written in another order)."""
    column = table["query_id"].to_numpy(np.int64)
    queries = column[np.r_[True, column[1:] != column[:-1]][:len(column)]]  # each query's first row
    ids = np.full((len(queries), k), -1, np.int64)
    dist = np.full((len(queries), k), np.inf, np.float32)
    row = np.searchsorted(queries, column)
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
    ids = np.where(rows >= 0, gallery_ids[np.maximum(rows, 0)], -1)  # −1: an approximate search found fewer
    if extra:
        dist, ids = drop_self(dist, ids, own=query_ids)
    ids, dist = _pad(ids[:, :k], dist[:, :k], k)
    return Lists(query_ids, ids, dist.astype(np.float32))


def _pad(ids: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    short = k - ids.shape[1]
    if short <= 0:
        return ids, dist
    return (np.pad(ids, ((0, 0), (0, short)), constant_values=-1),
            np.pad(dist, ((0, 0), (0, short)), constant_values=np.inf))


MARGIN = 1e-4  # cosine: a float32 product of unit rows of d <= 4096 is within ~1e-6 of the exact cosine
BLOCK = 8192  # query rows per product block of :func:`reachable` (8192 x m float32 scores)
BF16_FROM = 1 << 24  # query rows x new items from which reachable's product runs in bf16 (where the CPU has it)


def _bf16_slack(d: int) -> float:
    """C of :mod:`fashion.neighbors.bf16`'s bound |q.x - s^| <= u |s^| + C for unit float32 rows of length
    ``d`` (norms within 1e-5 of 1: :func:`~fashion.neighbors.base.unit_rows`), whatever the rows: the
    inputs' rounding (||q - q^|| <= u ||q||) and the float32 sums (3 d 2^-24, as that module counts them)."""
    from ..neighbors.bf16 import U_BF16, U_FP32

    n = 1.0 + 1e-5
    h = (1.0 + U_BF16) * n
    return U_BF16 * n * n + h * U_BF16 * n + 3 * d * U_FP32 * h * h + 2.0**-40


def _use_bf16(precision: str | None, products: int) -> bool:
    if precision is not None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or None, got {precision!r}")
        return precision == "bf16"
    from ..neighbors.bf16 import native_bf16

    return products >= BF16_FROM and native_bf16()


def reachable(lists: Lists, query_vectors, new_vectors: np.ndarray, metric: str, unit_queries=None,
              precision: str | None = None) -> np.ndarray:
    """The rows of ``lists`` that one of the new items may enter: its cosine distance to the query is at
    most the row's last known entry's (plus :data:`MARGIN`), by one (q, m) product of unit rows, a
    block of rows at a time; every row with a known entry for another metric. A row that no new item
    reaches merges to itself (its known entries are still the nearest), so only these are searched.
    ``unit_queries``: the queries' rows already at unit length (an index's own copy), else normalised here.
    ``precision``: the product's, "fp32" or "bf16" (bf16 inputs, float32 sums: ~2x faster on a CPU with
    native bf16; each row's best score raised by the bound of :mod:`fashion.neighbors.bf16`, so the rows
    are a superset of the float32 product's, never missing one); None: bf16 from :data:`BF16_FROM`
    products where the CPU multiplies bf16 natively, else fp32.

    >>> x = np.eye(3, dtype=np.float32)
    >>> lists = Lists(np.array([0, 1]), np.array([[1], [0]]), np.array([[1.0], [0.0]], np.float32))
    >>> reachable(lists, x[:2], x[2:], "cosine").tolist()  # row 0's neighbour is at 1.0: item 2 ties it
    [0]
    """
    known = (lists.ids >= 0).sum(axis=1)
    rows = np.flatnonzero(known > 0)
    if metric != "cosine" or not len(rows) or not len(new_vectors):
        return rows
    worst = lists.dist[rows, known[rows] - 1].astype(np.float64)
    new = unit_rows(new_vectors, keep_zero=True)
    bf16 = _use_bf16(precision, len(rows) * len(new))
    if bf16:
        import torch

        from ..neighbors.bf16 import U_BF16

        new_bf16, slack = torch.from_numpy(new).to(torch.bfloat16), _bf16_slack(new.shape[1])
    hit = np.zeros(len(rows), bool)
    for start in range(0, len(rows), BLOCK):
        block = rows[start:start + BLOCK]
        rows_now = (unit_queries[block] if unit_queries is not None
                    else unit_rows(query_vectors[block], keep_zero=True))
        if bf16:
            with torch.no_grad():
                s = torch.mm(torch.from_numpy(np.ascontiguousarray(rows_now, np.float32)).to(torch.bfloat16),
                             new_bf16.T).amax(dim=1).float().numpy().astype(np.float64)
            best = s + U_BF16 * np.abs(s) + slack  # at least every pair's float32 score (the bound)
        else:
            best = (rows_now @ new.T).max(axis=1)
        hit[start:start + BLOCK] = 1.0 - best <= worst[start:start + BLOCK] + MARGIN
    return rows[hit]


def nearest_allowed(index, Q: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` nearest fitted rows of the exact ``index`` among the ones ``allowed`` for it ((q, n)
    bool): (distances float32 (q, k), rows int64 (q, k)) by distance, then row; inf / −1 where fewer are
    allowed. As the exact search ranks: candidates by float32 scores of one (q, n) product (the allowed
    rows only), distances from :func:`~fashion.neighbors.distances.pair_distances` (bitwise what every backend
    reports for the pair). ``Q``: raw query rows, normalised here for cosine as the index's own."""
    from ..neighbors.distances import pair_distances, sq_norms

    X = index.fitted_rows
    Q = unit_rows(Q, keep_zero=True) if index.metric == "cosine" else np.ascontiguousarray(Q, np.float32)
    k, n = min(int(k), len(X)), len(X)
    score = Q @ X.T  # larger is nearer: q.x, or 2 q.x - |x|^2 for euclidean (in place: one (q, n) array)
    if index.metric != "cosine":
        score *= 2.0
        score -= sq_norms(X).astype(np.float32)[None, :]
    np.copyto(score, -np.inf, where=~allowed)
    cand = (np.argpartition(score, n - k, axis=1)[:, n - k:] if k < n
            else np.broadcast_to(np.arange(n), score.shape).copy())
    dist = pair_distances(Q, X, cand, index.metric)
    ok = np.take_along_axis(allowed, cand, 1)
    ids, dist = _best(np.where(ok, cand, -1), np.where(ok, dist, np.inf), k)
    return dist.astype(np.float32), ids


def merge_added(lists: Lists, query_vectors: np.ndarray, new_index, new_ids: np.ndarray,
                k: int | None = None, new_vectors: np.ndarray | None = None,
                unit_queries=None, precision: str | None = None, allowed=None) -> tuple[Lists, int]:
    """Existing lists after new gallery items arrive: one m × n search of the existing queries among the
    m new items (``new_index``, fitted on them; rows → ``new_ids``), each list merged with its new
    candidates. A list changes only where a new item comes closer than its k-th neighbour. Wide lists
    (the first ``k`` columns shown, the rest a reserve, :func:`widen`) keep as many known entries per row
    as they had: the union of a row's v known entries and the new items holds the v nearest of the new
    gallery, nothing further. With ``new_vectors`` (the new items' rows), only the lists one of them may
    enter (:func:`reachable`: one product, no top-k; ``unit_queries`` and ``precision`` passed on) are searched and merged;
    the others are as they were. ``query_vectors``: anything indexed by row numbers (read when indexed).
    ``allowed``: None (every new item may enter every list), or a function of rows of ``lists`` → (rows, m)
    bool, the new items each of those lists may take (an approximate index's search reaches only some:
    :func:`fashion.catalog.kept.reach`), searched among those alone (:func:`nearest_allowed`), a block of
    :data:`BLOCK` lists at a time.
    Returns (lists, how many lists changed in their first ``k`` columns)."""
    width, k = lists.k, lists.k if k is None else k
    if not len(lists.query_ids) or not len(new_ids):
        return lists, 0
    rows = (np.arange(len(lists.query_ids)) if new_vectors is None
            else reachable(lists, query_vectors, new_vectors, new_index.metric, unit_queries, precision))
    if not len(rows):
        return lists, 0
    part = lists.take(rows)
    if allowed is None:
        dist, found = new_index.kneighbors(np.asarray(query_vectors[rows]), n_neighbors=min(width, len(new_ids)))
    else:
        found = np.full((len(rows), min(width, len(new_ids))), -1, np.int64)
        dist = np.full(found.shape, np.inf, np.float32)
        for start in range(0, len(rows), BLOCK):
            block = rows[start:start + BLOCK]
            dist[start:start + BLOCK], found[start:start + BLOCK] = nearest_allowed(
                new_index, np.asarray(query_vectors[block]), allowed(block), found.shape[1])
    found = np.where(found >= 0, new_ids[np.maximum(found, 0)], -1)
    ids, dist = _best(np.concatenate([part.ids, found], axis=1),
                      np.concatenate([part.dist, dist.astype(np.float32)], axis=1), width)
    unknown = np.arange(width)[None, :] >= (part.ids >= 0).sum(axis=1)[:, None]
    ids[unknown], dist[unknown] = -1, np.inf
    changed = int((ids[:, :k] != part.ids[:, :k]).any(axis=1).sum())
    all_ids, all_dist = lists.ids.copy(), lists.dist.copy()
    all_ids[rows], all_dist[rows] = ids, dist
    return Lists(lists.query_ids, all_ids, all_dist), changed


def drop_removed(lists: Lists, removed: np.ndarray, k: int | None = None) -> tuple[Lists, np.ndarray]:
    """Lists without the queries in ``removed`` and without the removed items (each row's known entries
    moved up), and the ids of the queries left with fewer than ``k`` known entries (default: the lists'
    width: every list that lost a member), which need a fresh search. A wide list (:func:`widen`) whose
    reserve covers its losses is exact as it is: its known entries were the nearest of the gallery (of
    the lists an approximate search visits, while they hold enough: see :func:`fashion.catalog.kept.thin_probes`)."""
    removed = np.asarray(removed, np.int64)
    k = lists.k if k is None else k
    keep = ~member(lists.query_ids, removed)
    kept = lists.take(np.flatnonzero(keep))
    gone = member(kept.ids, removed)
    if not gone.any():
        return kept, kept.query_ids[(kept.ids >= 0).sum(axis=1) < k]
    ids, dist = kept.ids.copy(), kept.dist.copy()
    ids[gone], dist[gone] = -1, np.inf
    hit = np.flatnonzero(gone.any(axis=1))
    ids[hit], dist[hit] = _best(ids[hit], dist[hit], lists.k)
    kept = Lists(kept.query_ids, ids, dist)
    return kept, kept.query_ids[(ids >= 0).sum(axis=1) < k]


def has_reserve(lists: Lists, reserve: "Lists | None", width: int) -> bool:
    """Whether ``reserve`` holds the next candidates of ``lists``' own queries, ``width`` columns with them."""
    return reserve is not None and np.array_equal(reserve.query_ids, lists.query_ids) and reserve.k >= width - lists.k


def widen(lists: Lists, reserve: "Lists | None", width: int) -> Lists:
    """``lists`` with its ``reserve`` (the next candidates of each query: the exact ranks k+1… of the
    gallery, −1 where unknown) beside it, ``width`` columns in all; unknown entries where the reserve is
    absent or belongs to other queries (:func:`has_reserve`)."""
    extra = width - lists.k
    if has_reserve(lists, reserve, width):
        ids = np.concatenate([lists.ids, reserve.ids[:, :extra]], axis=1)
        dist = np.concatenate([lists.dist, reserve.dist[:, :extra]], axis=1)
        return Lists(lists.query_ids, ids, dist)
    ids, dist = _pad(lists.ids, lists.dist, width)
    return Lists(lists.query_ids, ids, dist.astype(np.float32))


def split(wide: Lists, k: int) -> tuple[Lists, Lists]:
    """(the first ``k`` columns: the lists shown, the rest: the reserve) of wide lists."""
    return (Lists(wide.query_ids, wide.ids[:, :k], wide.dist[:, :k]),
            Lists(wide.query_ids, wide.ids[:, k:], wide.dist[:, k:]))
