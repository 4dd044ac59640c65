"""The embedding stage: manifest rows → ``RUN/embeddings/<tag>/part-*.parquet`` (id, vector, ok, reason).

:func:`embed_run` resolves the embedder once (model, layer, size, precision, runtime: the cache tag),
anti-joins the manifest's ids with the ids already in finished shards (torn files deleted first) and
hands only the missing ids, in chunks of ``shard_rows``, to an executor (:mod:`.executors`: local, the
default, or Ray) as tasks of one :class:`EmbedWorker` per process or actor: read the chunk's manifest
rows, decode them in threads, run the network batch by batch, write one shard. A chunk is the same task
under every executor, so a row's vector does not depend on the executor. The OpenVINO runtime is batch-invariant, so its vectors are bitwise equal across engines,
batch sizes and resumes. The torch runtime measured the same here (``benchmarks/scale.py drift``: 200
photos, bf16, Ray with 1 and 2 actors and the local engine at batch 7, all bitwise equal to the local
engine at batch 32, on an AVX-512-BF16 CPU); :func:`drift` measures it on another machine.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import FashionError
from ..options import ENGINES, default
from . import manifest as manifest_mod
from . import shards

log = logging.getLogger(__name__)

EMBEDDINGS_DIR = "embeddings"
DEFAULT_SHARD_ROWS = default("embed_shard_rows")


@dataclass
class EmbedConfig:
    """Options of ``fashion embed``."""

    run_dir: str
    engine: str = default("engine")
    model: str | None = default("model")  # neither model nor arch: the bundled clothing model
    arch: str | None = default("arch")
    layer: str = default("layer")
    size: int | None = default("size")
    precision: str = default("precision")
    runtime: str = default("runtime")
    batch_size: int = default("batch_size")
    shard_rows: int = DEFAULT_SHARD_ROWS
    crop: bool | None = None
    num_workers: int | None = default("num_workers")  # local: decoding threads
    address: str | None = default("address")  # ray: cluster address ("auto", "ray://…"); None starts a local Ray
    actors: int = default("actors")  # ray: embedding actors (one model each)
    cpus_per_actor: float = default("cpus_per_actor")
    gpus_per_actor: float = default("gpus_per_actor")

    def __post_init__(self):
        from ..embedding.spec import resolve_model

        self.model, self.arch = resolve_model(self.model, self.arch)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        for name in ("batch_size", "shard_rows", "actors"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class EmbedResult:
    """What one :func:`embed_run` did."""

    directory: str
    total: int
    done_before: int
    computed: int
    failed: int
    torn_removed: int
    seconds: float

    def summary(self) -> str:
        return (f"{self.directory}: {self.total} ids, {self.done_before} already done, {self.computed} embedded, "
                f"{self.failed} failed images, {self.torn_removed} torn files removed, {self.seconds:.1f} s")


_BUILT: dict = {}  # this process's last embedder, by its resolved spec: one model in memory, built once


def _key(spec) -> str:
    return json.dumps(replace(spec, crop=False).to_json(), sort_keys=True, default=str)


def _built(spec):
    """The embedder of a resolved spec, built once per process (a worker's model; the driver's own
    embedder when the worker runs in the driver)."""
    from ..embedding import Embedder

    if _key(spec) not in _BUILT:
        _BUILT.clear()
        _BUILT[_key(spec)] = Embedder.from_spec(spec)
    return _BUILT[_key(spec)]


class EmbedWorker:
    """One process's (or Ray actor's) embedding worker: ``worker(ids)`` embeds those manifest rows of
    ``run_dir`` into one new shard of ``out`` and returns (rows, failed images). threads: decoding
    threads; net_threads: torch's intra-op threads for the network in this process (None: unchanged)."""

    def __init__(self, run_dir: str, spec: dict, out: str, batch_size: int, threads: int | None = None,
                 net_threads: int | None = None):
        from ..embedding import EmbedderSpec

        if net_threads:  # before the network is built: OpenVINO compiles for the thread count it finds
            import torch

            torch.set_num_threads(max(1, min(int(net_threads), os.cpu_count() or 1)))
        self.run_dir, self.out, self.batch_size = run_dir, out, batch_size
        self.spec = EmbedderSpec.from_json(spec)
        self.embedder = _built(self.spec)
        self.threads = threads

    def __call__(self, ids: np.ndarray) -> tuple[int, int]:
        from concurrent.futures import ThreadPoolExecutor

        from ..embedding.reader import default_num_workers
        from . import rows as stage

        table = manifest_mod.read_items(self.run_dir, columns=["path", "bbox"], ids=ids)
        paths = table.column("path").to_pylist()
        boxes = table.column("bbox").to_pylist() if self.spec.crop and "bbox" in table.column_names else None
        ids = table.column("id").to_numpy()
        size, step = self.spec.size, self.batch_size
        threads = max(1, default_num_workers() if self.threads is None else int(self.threads))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            decoded = pool.map(lambda s: stage.decode_rows(paths[s:s + step], None if boxes is None else boxes[s:s + step],
                                                           size, self.embedder.resize), range(0, len(ids), step))
            vecs, oks, reasons = [], [], []
            for pixels, ok, why in decoded:
                vecs.append(stage.embed_pixels(self.embedder, pixels, ok, why))
                oks.append(ok)
                reasons += why
        ok = np.concatenate(oks)
        shards.write_shard(self.out, stage.result_table(ids, np.concatenate(vecs), ok, reasons))
        return len(ok), int((~ok).sum())


@functools.lru_cache(maxsize=1)
def _embedder(spec, count: int):
    """The last embedder built, kept: a resumed or repeated stage in one process converts the model once."""
    from ..embedding import Embedder

    embedder = Embedder.from_spec(spec)
    embedder.resolve_runtime(count)
    return embedder


def forget_embedders() -> None:
    """Drop this process's kept embedders: the next stage builds its model afresh (a new run, whose model
    files may have changed since)."""
    _embedder.cache_clear()
    _BUILT.clear()


def resolve_spec(config: EmbedConfig, count: int):
    """(spec, embedder): the :class:`~fashion.embedding.EmbedderSpec` the config asks for, resolved by
    building it (runtime fixed from the manifest's *total* count, so the tag survives resumes; crop from
    the model unless the config says)."""
    from ..embedding import EmbedderSpec

    embedder = _embedder(EmbedderSpec.of(config), count)
    spec = replace(embedder.spec, crop=embedder.crop if config.crop is None else bool(config.crop))
    _BUILT.clear()
    _BUILT[_key(spec)] = embedder
    return spec, embedder


def embeddings_dir(run_dir, embedder, crop: bool) -> Path:
    """``RUN/embeddings/<tag>``: the tag names model checksum, size, layer, precision, runtime, resize, bbox."""
    return embedder.cache_path(Path(run_dir) / EMBEDDINGS_DIR, crop)


def latest_embeddings(run_dir) -> Path:
    """The embeddings directory of a run (the most recently written one when there are several)."""
    base = Path(run_dir) / EMBEDDINGS_DIR
    dirs = [d for d in base.iterdir() if d.is_dir() and shards.list_parts(d)] if base.is_dir() else []
    if not dirs:
        raise FashionError(f"{base}: no embeddings (run `fashion embed {run_dir}` first)")
    return max(dirs, key=lambda d: max(p.stat().st_mtime for p in shards.list_parts(d)))


# ------------------------------------------------------------------------------------------- stage


def embed_run(config: EmbedConfig, progress: bool = True, executor=None) -> EmbedResult:
    """Embed every manifest id of ``config.run_dir`` not yet in a finished shard (``executor``: None = the
    one ``config.engine`` names); see the module doc."""
    start = time.perf_counter()
    manifest = manifest_mod.Manifest.read(config.run_dir)
    spec, embedder = resolve_spec(config, manifest.count)
    out = embeddings_dir(config.run_dir, embedder, spec.crop)
    torn = shards.clean_torn(out)
    done = np.unique(shards.read_ids(out))
    todo = shards.missing_ids(np.arange(manifest.count, dtype=np.int64), done)
    from ..atomic import ensure_dir, write_json

    ensure_dir(out)
    write_json(out / "embedder.json", {**embedder.describe(), "spec": spec.to_json()})
    log.info("%s: %d of %d ids to embed (%d done), runtime %s", out, len(todo), manifest.count, len(done),
             spec.runtime)
    failed = 0
    if len(todo):
        from tqdm.auto import tqdm

        from . import executors

        executor = executors.of(config) if executor is None else executor
        # every worker runs the network on the driver's thread count: oneDNN's float32 kernels round
        # differently with another count (a Ray actor gets one thread per CPU it holds), and vectors
        # must not depend on the executor (bitwise, tests/test_scale_ray.py)
        worker = functools.partial(EmbedWorker, str(config.run_dir), spec.to_json(), str(out), config.batch_size,
                                   config.num_workers, _driver_threads())
        tasks = [(todo[s:s + config.shard_rows],) for s in range(0, len(todo), config.shard_rows)]
        with tqdm(total=len(todo), desc="embedding", unit="img", disable=None if progress else True) as bar:
            for rows, bad in executor.map(worker, tasks):
                failed += bad
                bar.update(rows)
    result = EmbedResult(str(out), manifest.count, len(done), len(todo), failed, len(torn),
                         time.perf_counter() - start)
    log.info("%s", result.summary())
    return result


def _driver_threads() -> int:
    import torch

    return torch.get_num_threads()


def drift(ref: np.ndarray, got: np.ndarray) -> dict:
    """Per-vector differences of two (n, d) matrices (rows paired): max |a − b| over a vector's
    coordinates and ‖a − b‖ / ‖a‖, each as its maximum and median over the vectors, and how many
    vectors are bitwise equal.

    >>> d = drift(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 0.5]]))
    >>> d["max_abs"], d["max_rel"], d["bitwise_equal"]
    (0.5, 0.5, 1)
    """
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {got.shape}")
    if len(ref) == 0:
        return {"max_abs": 0.0, "median_abs": 0.0, "max_rel": 0.0, "median_rel": 0.0, "bitwise_equal": 0, "vectors": 0}
    diff = np.abs(got - ref)
    per = diff.max(axis=1)
    rel = np.linalg.norm(diff, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-30)
    return {"max_abs": float(per.max()), "median_abs": float(np.median(per)), "max_rel": float(rel.max()),
            "median_rel": float(np.median(rel)), "bitwise_equal": int((per == 0).sum()), "vectors": len(per)}


def read_embeddings(directory, ids_only_ok: bool = True):
    """(ids, vectors) of every kept row of an embeddings directory, sorted by id (loads all in memory)."""
    shard_set = shards.ShardSet(directory, only_ok=ids_only_ok)
    ids, vecs = [], []
    for part, table in shard_set.iter_batches(["id", "vector"]):
        ids.append(table.column("id").to_numpy())
        vecs.append(shards.vectors_of(table.column("vector")))
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    ids, vecs = np.concatenate(ids), np.concatenate(vecs)
    order = np.argsort(ids, kind="stable")
    return ids[order], vecs[order]

