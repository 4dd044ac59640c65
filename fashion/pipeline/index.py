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
MEMORY_INDEX_DIR = "memory-index"  # the in-memory index's checkpoint (index.npz) in the work directory
DONE_JSON = "done.json"  # a checkpoint's settings, written last


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
    """A built index, checkpointed in the work directory: the in-memory one as ``npz`` (index.npz with its
    ids; ``index``: the fitted backend when this process built it, else loaded on first use) or the on-disk
    one in ``directory``. ``key``: the settings it was built with (what a later stage's checkpoint names);
    ``params``: the on-disk build's (:class:`fashion.neighbors.ivfpq.IndexParams`)."""

    name: str
    index: object = None
    directory: Path | None = None
    npz: Path | None = None
    metric: str = "cosine"
    count: int = 0
    key: dict | None = None
    params: object = None

    def fitted(self):
        """The in-memory backend (loaded from the checkpoint when another process built it)."""
        if self.index is None and self.npz is not None:
            from ..neighbors import load_index

            self.index = load_index(self.npz)
        return self.index


def index_key(name: str, metric: str, work, gallery: np.ndarray, seed: int) -> dict:
    """The settings an index of ``work``'s embeddings is built with: a finished build with the same ones is
    kept (checkpointed by content: the embedder's shards and the gallery's ids)."""
    from ..scale import embed, shards

    ids = np.flatnonzero(gallery)
    key = {"seed": seed, "embeddings": embed.latest_embeddings(work).name, "gallery": shards.ids_digest(ids)}
    if name != ON_DISK:  # an in-memory build is not seeded; its backend and metric name it
        key = {"name": name, "metric": metric, "embeddings": key["embeddings"], "gallery": key["gallery"]}
    return key


def index_stage(name: str, vectors, gallery: np.ndarray, metric: str, work, seed: int, executor,
                factory: str = "auto", memory: str = "4G") -> Built:
    """Build index ``name`` of the gallery rows, or keep the finished build of the same settings
    (:func:`index_key`): in memory on ``vectors()[gallery]`` (``vectors``: a callable, called only when
    the index is built), saved as ``work/memory-index/index.npz``; or on disk in ``work/index`` from the
    embedding shards (resumable shard by shard; ``factory``, ``memory``: its faiss settings)."""
    if name != ON_DISK:
        found = finished_index(name, metric, work, gallery, seed)
        if found is not None:
            log.info("%s: the %s index of these %d vectors is kept", found.npz.parent, name, found.count)
            return found
        return _build_in_memory(name, metric, vectors, gallery, work, seed)
    if metric != "cosine":
        raise ConfigError(f"--index {ON_DISK} measures cosine distance only, got --metric {metric}")
    from ..scale import embed, ivfpq

    ids = np.flatnonzero(gallery)
    directory = Path(work) / INDEX_DIR
    key = index_key(name, metric, work, gallery, seed)
    _fresh_index_dir(directory, key)
    try:
        params = ivfpq.build(embed.latest_embeddings(work), directory, id_space=len(gallery), factory=factory,
                             memory=memory, seed=seed, executor=executor, ids=ids)
    except BaseException:
        if [p.name for p in directory.iterdir()] == ["settings.json"]:  # refused before any work: no empty index
            shutil.rmtree(directory)
        raise
    return Built(name, directory=directory, count=int(params.count), key=key, params=params)


def build_in_memory(name: str, metric: str, gallery_vectors: np.ndarray):
    """A fitted :mod:`fashion.neighbors` backend of the gallery's vectors (the in-memory index stage's work)."""
    from ..neighbors import build_index

    return build_index(name, metric=metric).fit(gallery_vectors)


def _build_in_memory(name, metric, vectors, gallery, work, seed) -> Built:
    from ..atomic import write_json
    from ..run import writer

    directory, key = Path(work) / MEMORY_INDEX_DIR, index_key(name, metric, work, gallery, seed)
    shutil.rmtree(directory, ignore_errors=True)  # another build's checkpoint: replaced
    ids = np.flatnonzero(gallery)
    index = build_in_memory(name, metric, np.asarray(vectors()[gallery]))
    path, _ = writer.write_index_npz(directory, index, ids)
    write_json(directory / DONE_JSON, key)  # last: the checkpoint is whole
    return Built(name, index=index, npz=path, metric=metric, count=len(ids), key=key)


def finished_index(name: str, metric: str, work, gallery: np.ndarray, seed: int) -> Built | None:
    """The finished index ``name`` (``auto``: whichever finished one there is, on disk first) of this
    gallery in ``work``, or None: what a stage range that starts after the index stage searches with."""
    from ..runfiles import read_json
    from ..scale import ivfpq

    if name in ("auto", ON_DISK):
        directory = Path(work) / INDEX_DIR
        marker = directory / "settings.json"
        key = index_key(ON_DISK, "cosine", work, gallery, seed)
        # an index built by `fashion index` of an older release has no settings marker: taken as it is
        if (directory / ivfpq.INDEX_JSON).is_file() and (not marker.is_file() or _same_key(read_json(marker), key)):
            count = int(read_json(directory / ivfpq.INDEX_JSON)["count"])
            return Built(ON_DISK, directory=directory, count=count, key=key)
        if name == ON_DISK:
            return None
    directory = Path(work) / MEMORY_INDEX_DIR
    if not (directory / DONE_JSON).is_file():
        return None
    done = read_json(directory / DONE_JSON)
    wanted = done.get("name") if name == "auto" else name
    if done != index_key(wanted or "", metric, work, gallery, seed):
        return None
    return Built(wanted, npz=directory / "index.npz", metric=metric, count=int(gallery.sum()), key=done)


def _same_key(found: dict, key: dict) -> bool:
    """Whether an on-disk index's settings marker names these embeddings and gallery (the seed aside when
    the index was not built by the pipeline: a `fashion index --seed` build is kept for any run seed)."""
    return {k: v for k, v in found.items() if k != "seed"} == {k: v for k, v in key.items() if k != "seed"}


def _fresh_index_dir(index_dir: Path, settings: dict) -> None:
    """Remove an index (finished or not) that was built with other settings; record the current ones."""
    from ..atomic import ensure_dir, write_json

    marker = index_dir / "settings.json"
    if index_dir.is_dir() and (not marker.is_file()
                               or json.loads(marker.read_text(encoding="utf-8")) != settings):
        shutil.rmtree(index_dir)
    if not marker.is_file():
        write_json(ensure_dir(index_dir) / marker.name, settings)
