"""A run's stored neighbour lists, read one item's list at a time: what an id query answers from.

A run's ``neighbors/`` parts hold each query item's top-K (the all-pairs lists of the search stage, or
the lists the live catalogue keeps equal to a rebuild). When they are what the run's own index search
returns (:func:`answers_as_index`), an id query with ``k <= K`` and no filter, text or colour mode is
answered from its item's list in O(k) instead of searching the index (at 1M on IVF-PQ, the search is
3-7 ms of CPU a query, most of it the inverted lists' scan and the exact re-rank of 100 candidates).

Reading one item's list out of 1M-row parquet parts would be a scan per query, so a server's first start
writes the lists as two dense arrays by item id, ``ids`` (n_items, K) int64 and ``dist`` (n_items, K)
float32, beside the run in ``RUN/cache/lists/`` (outside the manifest, as :mod:`.itemcache`'s table),
named by a digest of the parts' SHA-256 as the manifest records them, with a sampled fingerprint of each
file checked at every open; a row of an item with no list is :data:`NO_LIST` throughout, −1 pads a
short list. Rows are read with ``pread`` (:class:`fashion.rowreader.RowReader`: one 80-byte read per
file and query, no map of the file into the server's memory). A run directory that cannot be written
is answered by searching, as before.

When the lists answer as the index (:data:`LISTS_KEY` of run.json, written by the search stage and by
the live catalogue where it keeps them equal to a search of the index it seals): the search stage's
lists *are* a search of the sealed index, with the index's own parameters (nprobe, re-rank), K + 1
neighbours asked and the query itself left out, as the service's own id search does; a prefix of them is
what a search for fewer returns for the backends of :data:`PREFIX_INDEXES` (exact, IVF, IVF-PQ with its
re-rank width at least k + 1; not HNSW, whose search width grows with k).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_DIR = ("cache", "lists")  # under the run directory
VERSION = 1  # of this cache's layout: part of the key
NO_LIST = -2  # the ids of an item that has no stored list (not a query of the run)
LISTS_KEY = "neighbor_lists"  # run.json: {"k": K, "from": "index"} where the lists answer as the index search
FROM_INDEX = "index"
# backends whose top-k is the first k of their top-K (ties aside): the exact ones, IVF, IVF-PQ
PREFIX_INDEXES = ("exact", "kdtree", "balltree", "faiss-flat", "faiss-ivf", "faiss-ivfpq")


def marker(k: int) -> dict:
    """run.json's :data:`LISTS_KEY` value of lists that are the sealed index's own search of ``k``."""
    return {"k": int(k), "from": FROM_INDEX}


def answers_as_index(info: dict) -> bool:
    """Whether run.json ``info`` says its lists are its index's search (and the backend keeps prefixes)."""
    mark = info.get(LISTS_KEY)
    return (isinstance(mark, dict) and mark.get("from") == FROM_INDEX and isinstance(mark.get("k"), int)
            and info.get("index", {}).get("name") in PREFIX_INDEXES)


def cache_key(manifest: dict, parts: list[str]) -> str | None:
    """A digest of the neighbour table's parts and their SHA-256 in ``manifest`` (the item cache's key,
    :func:`.itemcache.cache_key`, with this cache's tag); None when one is not listed with its hash."""
    from .itemcache import cache_key as parts_key

    return parts_key(manifest, parts, f"lists-v{VERSION}")


class StoredLists:
    """Each item's stored list, read by id: ``get(i, k)`` → (ids (k',), distances (k',)) or None."""

    def __init__(self, ids_path: Path, dist_path: Path):
        from ..rowreader import RowReader

        self.ids, self.dist = RowReader(ids_path), RowReader(dist_path)
        if self.ids.shape != self.dist.shape or self.ids.dtype != np.int64 or self.dist.dtype != np.float32:
            raise ValueError(f"{ids_path.parent}: ids {self.ids.dtype} {self.ids.shape} and distances "
                             f"{self.dist.dtype} {self.dist.shape} do not pair")
        self.k = int(self.ids.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, item: int, k: int):
        """Item ``item``'s first ``k`` (≤ :attr:`k`) neighbours as stored, −1 pads kept; None where the item
        has no list or ``k`` is more than the lists hold."""
        if k > self.k or not 0 <= item < len(self.ids):
            return None
        ids = self.ids.read([item])[0]
        if ids[0] == NO_LIST:
            return None
        return ids[:k], self.dist.read([item])[0][:k]


def _paths(run_dir, key: str) -> tuple[Path, Path, Path]:
    folder = Path(run_dir).joinpath(*CACHE_DIR)
    return folder / f"{key}.ids.npy", folder / f"{key}.dist.npy", folder / f"{key}.json"


def dense(table_parts, n_items: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n_items, k) int64, dist (n_items, k) float32) of the neighbour parts: row i is item i's list
    by rank, −1 / inf pads, :data:`NO_LIST` / nan for an item without one."""
    import pyarrow.parquet as pq

    ids = np.full((n_items, k), NO_LIST, np.int64)
    dist = np.full((n_items, k), np.nan, np.float32)
    for part in table_parts:
        t = pq.read_table(part, columns=["query_id", "rank", "neighbor_id", "distance"], memory_map=True)
        q = t.column("query_id").to_numpy().astype(np.int64)
        rank = t.column("rank").to_numpy().astype(np.int64) - 1
        if len(q) and (q.min() < 0 or q.max() >= n_items or rank.min() < 0 or rank.max() >= k):
            raise ValueError(f"{part}: a query id or rank outside 0..{n_items - 1} / 1..{k}")
        fresh = np.unique(q)
        ids[fresh], dist[fresh] = -1, np.inf
        ids[q, rank] = t.column("neighbor_id").to_numpy().astype(np.int64)
        dist[q, rank] = t.column("distance").to_numpy().astype(np.float32)
    return ids, dist


def load(run_dir, key: str) -> StoredLists | None:
    """The cached lists of ``key``, or None: none, a failed fingerprint, or unreadable."""
    from ..rundir import sample_sha256

    ids_path, dist_path, meta = _paths(run_dir, key)
    if not (ids_path.is_file() and dist_path.is_file() and meta.is_file()):
        return None
    try:
        recorded = json.loads(meta.read_text())
        if (recorded.get("ids_sha256") != sample_sha256(ids_path)
                or recorded.get("dist_sha256") != sample_sha256(dist_path)):
            log.warning("%s: does not match its fingerprint; the lists are written again", ids_path.parent)
            return None
        lists = StoredLists(ids_path, dist_path)
        if len(lists) != recorded.get("rows") or lists.k != recorded.get("k"):
            return None
        return lists
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); the lists are written again", ids_path.parent, str(exc)[:200])
        return None


def save(run_dir, key: str, ids: np.ndarray, dist: np.ndarray) -> StoredLists | None:
    """Write the dense lists as the cache of ``key``, drop other keys' files; the opened lists, or None
    (logged) where the run directory cannot take them."""
    from ..atomic import atomic_write
    from ..errors import FashionError
    from ..rundir import sample_sha256

    ids_path, dist_path, meta = _paths(run_dir, key)
    try:
        for path, array in ((ids_path, ids), (dist_path, dist)):
            with atomic_write(path) as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        with atomic_write(meta, "w") as f:
            json.dump({"version": VERSION, "rows": int(len(ids)), "k": int(ids.shape[1]),
                       "ids_sha256": sample_sha256(ids_path), "dist_sha256": sample_sha256(dist_path)}, f)
        for old in ids_path.parent.iterdir():  # earlier versions' lists: a live catalogue makes one per change
            if not old.name.startswith((key, ".")):
                old.unlink(missing_ok=True)
        return StoredLists(ids_path, dist_path)
    except (OSError, ValueError, FashionError) as exc:
        log.info("%s: the lists are not cached (%s)", ids_path.parent, str(exc).splitlines()[0][:200])
        return None


def open_lists(run_dir, info: dict, manifest: dict, parts: list[str], n_items: int) -> StoredLists | None:
    """The stored lists of a verified run that answer as its index (:func:`answers_as_index`), from
    the cache of their key, written first where there is none; None where they do not answer as the index
    or cannot be cached (the service then searches)."""
    if not answers_as_index(info) or not parts:
        return None
    key = cache_key(manifest, parts)
    if key is None:
        return None
    lists = load(run_dir, key)
    if lists is not None and len(lists) == n_items:
        return lists
    k = int(info[LISTS_KEY]["k"])
    try:
        ids, dist = dense([Path(run_dir) / p for p in parts], n_items, k)
    except (OSError, ValueError) as exc:
        log.warning("%s: the neighbour lists do not read as %d x %d (%s); id queries search the index",
                    run_dir, n_items, k, str(exc)[:200])
        return None
    return save(run_dir, key, ids, dist)
