"""The Ray engine (the ``[scale]`` extra): the same stages as Ray Data tasks, actors and remote tasks.

Embedding pipeline (Ray Data)::

    read_parquet(manifest shards) → keep the missing ids → repartition
      → decode + resize (CPU tasks, the project's safe opener; ``DECODE_CPUS`` each)
      → embed (actor pool: one embedder per actor, ``cpus_per_actor`` / ``gpus_per_actor`` each)
      → write one atomic parquet shard per ``shard_rows`` rows (``WRITE_CPUS`` each)

Rows are keyed on ``id``; order is never relied on. Fractional CPUs keep two actors on a two-core node
from starving the read/decode/write tasks (two whole-CPU actors there hang the pipeline), and
``repartition`` spreads a handful of manifest files over several blocks so every actor gets work.
Index shards are added as remote tasks and neighbours are queried by an :class:`ray.util.ActorPool`
of actors that each load the index once.

Ray is imported here only, lazily. Without ``address`` a private local Ray is started on 127.0.0.1 and
shut down at the end; with ``address`` (e.g. ``"auto"`` after ``ray start --head --node-ip-address
127.0.0.1``) the job joins that cluster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time

import numpy as np

from ..errors import FashionError

log = logging.getLogger(__name__)

# Decode tasks and writers take small CPU shares (and not an actor's share: equal resources would let Ray
# fuse decoding into the actors, serialising it with the network).
DECODE_CPUS = 0.25
WRITE_CPUS = 0.1
NO_PROGRESS_TIMEOUT_S = 600  # Ray Data's default (1,800 s) turns a deadlock into a half-hour hang


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 instead of the host's address


def _ray(local: bool = False):
    """Import Ray; for a private local Ray, first make it bind and advertise loopback only (Ray turns a
    node IP of 127.0.0.1 into the host's interface address unless this is set before its import)."""
    import sys

    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the extra
        raise FashionError("engine 'ray' needs the scale extra: pip install 'fashion[scale]' "
                           "(or pip install 'ray[data]>=2.51')") from None
    return ray


@contextlib.contextmanager
def session(address: str | None = None):
    """Use the running Ray (tests, notebooks), join ``address``, or start a loopback-only local one."""
    ray = _ray(local=not address)
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _data_context():
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.execution_no_progress_timeout_s = min(ctx.execution_no_progress_timeout_s, NO_PROGRESS_TIMEOUT_S)
    ctx.enable_progress_bars = False
    return ctx


# ------------------------------------------------------------------------------- pipeline stages


def _select(batch, todo: np.ndarray):
    """Keep the manifest rows whose id is still missing (the resume anti-join, per block)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return batch.filter(pc.is_in(batch.column("id"), value_set=pa.array(todo)))


def _decode(batch, size: int, resize: str, crop: bool):
    from .rows import decode_rows

    boxes = None
    if crop and "bbox" in batch:
        boxes = [None if b is None else tuple(int(v) for v in b) for b in batch["bbox"]]
    pixels, ok, reasons = decode_rows([str(p) for p in batch["path"]], boxes, size, resize)
    return {"id": batch["id"].astype(np.int64), "pixels": pixels, "ok": ok, "reason": np.array(reasons, dtype=object)}


class _EmbedActor:
    """One embedder per actor, built once from the spec (model load timed in the log)."""

    def __init__(self, spec: dict):
        from ..embedding import Embedder, EmbedderSpec

        start = time.perf_counter()
        self.embedder = Embedder.from_spec(EmbedderSpec.from_json(spec))
        _ = self.embedder.dim
        self.load_seconds = time.perf_counter() - start
        log.info("embedding actor ready in %.1f s (%s runtime)", self.load_seconds, self.embedder.runtime)

    def __call__(self, batch):
        from .rows import embed_pixels

        ok = batch["ok"].astype(bool).copy()
        reasons = [str(r) for r in batch["reason"]]
        vectors = embed_pixels(self.embedder, batch["pixels"], ok, reasons)
        return {"id": batch["id"], "vector": vectors, "ok": ok, "reason": np.array(reasons, dtype=object)}


def _write(batch, out: str):
    from . import shards
    from .rows import result_table

    vectors = np.asarray(batch["vector"], dtype=np.float32)
    ok = batch["ok"].astype(bool)
    shards.write_shard(out, result_table(batch["id"], vectors, ok, [str(r) for r in batch["reason"]]))
    return {"rows": np.array([len(ok)]), "failed": np.array([int((~ok).sum())])}


def embed(config, spec, todo: np.ndarray, out, resize: str) -> int:
    """Embed the manifest rows ``todo`` into shards of ``out`` on Ray; returns the failed-image count."""
    from . import manifest

    with session(config.address) as ray:
        _data_context()
        columns = ["id", "path"] + (["bbox"] if spec.crop else [])
        mcols = manifest.Manifest.read(config.run_dir).columns
        columns = [c for c in columns if c in mcols]
        blocks = max(2 * config.actors, min(math.ceil(len(todo) / config.batch_size), 1000))
        ds = ray.data.read_parquet(manifest.shard_paths(config.run_dir), columns=columns)
        ds = ds.map_batches(_select, batch_format="pyarrow", fn_kwargs={"todo": np.asarray(todo, np.int64)},
                            batch_size=None, num_cpus=WRITE_CPUS)
        ds = ds.repartition(blocks)
        ds = ds.map_batches(_decode, batch_format="numpy", batch_size=config.batch_size, num_cpus=DECODE_CPUS,
                            fn_kwargs={"size": spec.size, "resize": resize, "crop": spec.crop})
        ds = ds.map_batches(_EmbedActor, batch_format="numpy", batch_size=config.batch_size,
                            fn_constructor_kwargs={"spec": spec.to_json()},
                            compute=ray.data.ActorPoolStrategy(size=config.actors),
                            num_cpus=config.cpus_per_actor, num_gpus=config.gpus_per_actor or None)
        ds = ds.map_batches(_write, batch_format="numpy", batch_size=config.shard_rows, num_cpus=WRITE_CPUS,
                            fn_kwargs={"out": str(out)})
        rows = failed = 0
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            rows += int(batch["rows"].sum())
            failed += int(batch["failed"].sum())
    log.info("ray: wrote %d rows (%d failed images) to %s", rows, failed, out)
    return failed


# ------------------------------------------------------------------------------------ index, knn


def add_shards(add_shard, todo, address: str | None = None) -> None:
    """Run ``add_shard(trained, part path, keep, target)`` for each (part, target) of ``todo`` as Ray tasks
    (one per shard); the stage passes its function in, so this engine imports no stage."""
    with session(address) as ray:
        task = ray.remote(num_cpus=1)(_call)
        ray.get([task.remote(add_shard, str(p.path), p.keep, str(target)) for p, target in todo])


def _call(fn, *args):
    """A Ray task running any callable (``ray.remote`` takes functions and classes, not partials)."""
    return fn(*args)


class _KnnWorker:
    """One opened index per actor (``open_index()``), queried with ``query(index, *task)``."""

    def __init__(self, open_index, query):
        self.index, self._query = open_index(), query

    def query(self, *task) -> int:
        return self._query(self.index, *task)


def knn(config, open_index, query, todo) -> None:
    """Query the embedding shards ``todo`` [(part, target)] with an actor pool, each actor holding the
    index that ``open_index()`` returns and answering with ``query(index, part path, keep, target, k,
    nprobe, rerank)`` (the stage's functions, passed in)."""
    with session(config.address) as ray:
        from ray.util import ActorPool

        worker = ray.remote(num_cpus=config.cpus_per_actor)(_KnnWorker)
        pool = ActorPool([worker.remote(open_index, query) for _ in range(config.actors)])
        args = [(str(p.path), p.keep, str(t), config.k, config.nprobe, config.rerank) for p, t in todo]
        list(pool.map_unordered(lambda a, v: a.query.remote(*v), args))
