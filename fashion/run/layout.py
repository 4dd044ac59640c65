"""The on-disk format of a run (format_version 2): one id-keyed layout for every size.

A 240-photo run and a 10M-photo run differ in their shard counts and their index, not in their layout::

    run.json              format_version, run_id, index {kind, path, name, metric, count}, dataset, embedder,
                          arguments, versions …
    items/part-*.parquet  id (0..n-1), path, relpath, label, split, [item_id, bbox …], ok, reason, role
                          (role: both / query / gallery / skipped / removed; the index holds the gallery and
                          both rows; a removed item keeps its row, ok False, and its vector (shared with the
                          previous version's file): ids are never reused)
    embeddings.npy        float32 (n, d): row i is item i (zeros where ok is False); opened memory-mapped
    segments/embeddings-<first id>.npy   (runs changed by fashion add only) the rows each add appended, listed
                          in run.json's ``embedding_segments`` after embeddings.npy (fashion.run.segments)
    index.npz             in-memory backends (fashion.neighbors): the fitted index plus an ``ids`` member
                          (index row → item id)
    index-rows.npy        or (exact index of a run changed by fashion add/remove) only the ids (index row →
                          item id): the exact index is its rows of the embeddings, fitted at open, never saved twice
    ivfpq/                or the on-disk IVF-PQ index (fashion.scale.ivfpq: index.json, index.faiss,
                          index.ivfdata, vectors.f16.npy), which returns item ids itself; a run changed by
                          fashion add/remove links that base unchanged and adds ivfpq/delta.npz (run.json
                          ``index.delta`` true): the added items' codes and the removed ids (fashion.scale.delta)
    neighbors/part-*.parquet   query_id, rank (from 1), neighbor_id, distance (float32)
    reserve.npz           (runs changed by fashion add/remove only) query_ids, ids, dist: each query's next
                          candidates after its k-th, −1 where unknown (fashion.catalog.lists)
    metrics.json          precision@k, mAP@k, per label, recall@k by item id, counts, skipped, timing
    duplicates.csv, suspects.csv, map.csv, map.png   the insight stage's tables (ids are item ids)
    grids/*.png, index.html                          the report
    manifest.json         written last (fashion.rundir): every file above with its size and SHA-256

Beside the run, ``RUN.versions/`` (:func:`versions_dir`) holds the live catalogue's history
(:mod:`fashion.catalog.versions`): earlier versions as ordinary runs ``<n>-<run id>/``, the writer's
lock file and ``uploads/`` (photos added over HTTP, named by their SHA-256).

Work directories of the resumable stages (``manifest/``, ``embeddings/``, ``index/``, ``knn/``,
``memory-index/``, ``memory-knn/``, ``cache/``: :mod:`fashion.pipeline.measure`) may sit beside these
files; they are outside the manifest (:data:`WORK_DIRS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FORMAT_VERSION = 2
RUN_KIND = "neighbors"  # the rundir manifest's kind of a retrieval run

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
EMBEDDINGS = "embeddings.npy"
ITEMS_DIR = "items"
NEIGHBORS_DIR = "neighbors"
INDEX_NPZ = "index.npz"
INDEX_ROWS = "index-rows.npy"  # an exact index kept as the ids of its embedding rows (fashion add/remove)
IVFPQ_DIR = "ivfpq"
PART_GLOB = "part-*.parquet"
GRIDS_DIR = "grids"
RESERVE = "reserve.npz"  # a run changed by the catalogue: each query's next candidates (fashion.catalog.lists)
GALLERY = "index.html"
# the resumable stages' work (fashion.scale) and the embedding cache: carried between runs, never sealed
WORK_DIRS = ("cache", "manifest", "embeddings", "index", "knn", "memory-index", "memory-knn")

# the columns every reader needs (a dataset's own columns, e.g. item_id or bbox, follow them)
ITEM_COLUMNS = ("id", "path", "relpath", "label", "split", "ok", "reason", "role")
# the live catalogue's own columns of a run's files (fashion.catalog): contents and size, for its duplicate check
HASH_COLUMN = "sha256"
SIZE_COLUMN = "file_size"
NEIGHBOR_COLUMNS = ("query_id", "rank", "neighbor_id", "distance")
GALLERY_ROLES = ("both", "gallery")  # the rows the index holds
# "": readable but neither (a query split's leftovers); removed: a tombstone of `fashion remove` (ids stay stable)
ROLES = ("both", "query", "gallery", "skipped", "removed", "")

# the insight stage's tables (optional: --no-insight leaves them out): column -> "int" | "float" | "str"
VERSIONS_SUFFIX = ".versions"  # RUN.versions/ beside RUN: earlier versions, writer.lock, uploads/
UPLOADS_DIR = "uploads"

INSIGHT_FILES = {
    "duplicates.csv": {"cluster": "int", "a": "int", "b": "int", "a_split": "str", "b_split": "str",
                       "distance": "float", "method": "str"},
    "map.csv": {"id": "int", "x": "float", "y": "float"},
    "suspects.csv": {"id": "int", "label": "str", "own_share": "float", "neighbor_label": "str",
                     "neighbor_share": "float"},
}

# the index kinds run.json's ``index.kind`` names: a fashion.neighbors .npz, or fashion.scale's directory
INDEX_KINDS = {"npz": INDEX_NPZ, "ivfpq": IVFPQ_DIR, "rows": INDEX_ROWS}
ROW_INDEXES = ("exact",)  # the backends an index-rows.npy may name: fitted from the rows, nothing learnt
IVFPQ_FILES = ("index.json", "index.faiss", "index.ivfdata", "vectors.f16.npy")
IVFPQ_DELTA = "delta.npz"  # a live run's changes beside its on-disk base (fashion.scale.delta)


@dataclass
class IndexRef:
    """run.json's ``index`` block: which saved index the run has and where.

    kind: "npz" (index.npz of a fashion.neighbors backend, with an ``ids`` member), "rows" (index-rows.npy:
    the ids of the embedding rows an ``exact`` index is fitted on at open) or "ivfpq" (the on-disk IVF-PQ
    directory); path: relative to the run; name: the backend (e.g. "exact", "faiss-ivfpq");
    metric: "cosine" or "euclidean"; count: vectors in the index (the gallery); delta: (kind "ivfpq") the
    live catalogue's ``delta.npz`` beside the base (written to run.json only when true).
    """

    kind: str
    path: str
    name: str
    metric: str
    count: int
    delta: bool = False

    def to_json(self) -> dict:
        out = asdict(self)
        if not self.delta:
            del out["delta"]
        return out

    def files(self) -> tuple[str, ...]:
        """The index's files, relative to the run (what the manifest must list)."""
        if self.kind == "ivfpq":
            return tuple(f"{self.path}/{name}" for name in IVFPQ_FILES + ((IVFPQ_DELTA,) if self.delta else ()))
        return (self.path,)


def part_name(number: int) -> str:
    """The file name of a table's ``number``-th part (sorted order is id order)."""
    return f"part-{int(number):06d}.parquet"


def versions_dir(run_dir) -> "Path":
    """``RUN.versions`` beside the run directory ``RUN`` (absolute)."""
    from pathlib import Path

    run_dir = Path(run_dir).absolute()
    return run_dir.with_name(run_dir.name + VERSIONS_SUFFIX)


def uploads_dir(run_dir) -> "Path":
    """Where photos added over HTTP are stored: ``RUN.versions/uploads/<sha256>.<ext>``."""
    return versions_dir(run_dir) / UPLOADS_DIR
