"""The index stage: which index a run gets (``--index auto``: by size and memory) and its build, in
memory (a :mod:`fashion.neighbors` backend fitted on the gallery's vectors) or on disk (the IVF-PQ of
:mod:`fashion.scale.ivfpq`, built shard by shard from the embedding shards, resumable).

``auto``: the in-memory exact index (tiled GEMM, the floor for small runs) while the gallery's float32
vectors fit comfortably in the memory available now (at most :data:`MEMORY_SHARE` of it, measured with
psutil) and it has at most :data:`fashion.neighbors.AUTO_EXACT_MAX` vectors; the in-memory
``faiss-ivfpq`` (compressed codes, exact re-rank) above that count; the on-disk IVF-PQ
(:data:`ON_DISK`) when the vectors do not fit.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)

ON_DISK = "ivfpq-disk"  # the --index choice of the on-disk IVF-PQ index (fashion.scale.ivfpq)
MEMORY_SHARE = 0.25  # the gallery's float32 vectors may take this share of the available memory in memory
INDEX_DIR = "index"  # the on-disk index's work directory


def available_memory() -> int:
    """Bytes of memory available now (psutil)."""
    import psutil

    return int(psutil.virtual_memory().available)


def choose_index(requested: str, n_gallery: int, d: int, metric: str = "cosine") -> str:
    """The index a run gets: ``requested`` unless it is ``auto`` (see the module doc)."""
    from ..neighbors import auto_index_name

    if requested != "auto":
        return requested
    need, have = 4 * int(n_gallery) * int(d), available_memory()
    if need > MEMORY_SHARE * have and metric == "cosine":
        log.info("auto index: %d vectors of d=%d (%.1f GB) do not fit in %.0f%% of the %.1f GB available: %s",
                 n_gallery, d, need / 1e9, 100 * MEMORY_SHARE, have / 1e9, ON_DISK)
        return ON_DISK
    name = auto_index_name(n_gallery)
    log.info("auto index: %d vectors of d=%d (%.2f GB, %.1f GB available): %s", n_gallery, d, need / 1e9,
             have / 1e9, name)
    return name


@dataclass
class Built:
    """A built index: ``index`` (a fitted in-memory backend) or ``directory`` (the on-disk one)."""

    name: str
    index: object = None
    directory: Path | None = None


def index_stage(name: str, vectors, gallery: np.ndarray, metric: str, work, seed: int, executor) -> Built:
    """Build index ``name`` of the gallery rows: in memory on ``vectors[gallery]``, or on disk in
    ``work/index`` from the embedding shards (a finished build of the same gallery is kept)."""
    from ..neighbors import build_index

    if name != ON_DISK:
        return Built(name, index=build_index(name, metric=metric).fit(np.asarray(vectors[gallery])))
    if metric != "cosine":
        raise ConfigError(f"--index {ON_DISK} measures cosine distance only, got --metric {metric}")
    from ..scale import embed, ivfpq, shards

    emb_dir = embed.latest_embeddings(work)
    ids = np.flatnonzero(gallery)
    directory = Path(work) / INDEX_DIR
    _fresh_index_dir(directory, {"seed": seed, "embeddings": emb_dir.name, "gallery": shards.ids_digest(ids)})
    ivfpq.build(emb_dir, directory, id_space=len(gallery), seed=seed, executor=executor, ids=ids)
    return Built(name, directory=directory)


def _fresh_index_dir(index_dir: Path, settings: dict) -> None:
    """Remove an index (finished or not) that was built with other settings; record the current ones."""
    from ..atomic import ensure_dir, write_json

    marker = index_dir / "settings.json"
    if index_dir.is_dir() and (not marker.is_file()
                               or json.loads(marker.read_text(encoding="utf-8")) != settings):
        shutil.rmtree(index_dir)
    if not marker.is_file():
        write_json(ensure_dir(index_dir) / marker.name, settings)
