"""A faiss IVF-PQ index built shard by shard, merged on disk, re-ranked exactly from float16 vectors.

Build (:func:`build`): the parameters of :func:`fashion.neighbors.ivfpq.choose_params` (the same
choice as the in-memory ``faiss-ivfpq`` backend), trained on a seeded uniform sample across shards,
add every embedding shard into its own shard index (``add_with_ids``; written atomically, skipped when
present, so a killed build resumes), merge the shard indexes into one on-disk inverted-list file
(``faiss.contrib.ondisk.merge_ondisk``) and write the float16 re-rank matrix. ``index.json`` is written
last: a directory without it is an unfinished build (resumed); a rerun over the same shards and
settings returns the finished build, one over other shards or settings starts over.

Query (:class:`ScaleIndex`): the PQ search returns ``max(k, rerank)`` candidates whose exact cosine
distances are computed from the stored float16 vectors, so recall is not capped by the PQ codes.
Loading after the directory moved works: faiss records the ``.ivfdata`` path and
``IO_FLAG_ONDISK_SAME_DIR`` makes it look beside the index file instead.

Vectors are unit length (the embedder's output), searched with L2, reported as cosine distance
``1 − cos = ‖a − b‖² / 2``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import FashionError
from ..neighbors.ivfpq import IndexParams, choose_params, nearest_of, train_index, tune_quantizer
from . import sampler, shards

log = logging.getLogger(__name__)

INDEX_JSON = "index.json"
INDEX_FILE = "index.faiss"
IVFDATA_FILE = "index.ivfdata"
TRAINED_FILE = "trained.faiss"
RERANK_FILE = "vectors.f16.npy"
SHARDS_DIR = "shards"
# one swap of file descriptor 1 at a time (_c_stdout_to_stderr): two overlapping ones in two threads would
# leave stdout on stderr for good (the later one saves the descriptor the earlier one swapped in)
_STDOUT_SWAP = threading.RLock()


class IndexBuildError(FashionError, ValueError):
    """An index cannot be built or loaded from the given directory."""


def _same_build(done: "IndexParams", want: "IndexParams") -> bool:
    keys = ("factory", "n", "d", "seed", "train_size", "id_space", "sources")
    return all(getattr(done, k) == getattr(want, k) for k in keys)


def _faiss():
    import faiss

    return faiss


def check_factory(factory: str, d: int) -> None:
    """A faiss factory string faiss can build for dimension ``d``; else one-line ConfigError (--factory)."""
    from ..errors import ConfigError

    try:
        _faiss().index_factory(d, factory, _faiss().METRIC_L2)
    except (RuntimeError, ValueError, TypeError) as exc:
        # faiss says "Error in ... at file:line: why"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rsplit(": ", 1)[-1]
        raise ConfigError(f"--factory {factory!r} is not a faiss index factory string for d={d} "
                          f"({reason[:160]}); e.g. IVF256,PQ16x8 or auto") from None


def _write_index(index, path: Path) -> None:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        _faiss().write_index(index, str(tmp))


def add_shard(trained_path, embedding_part, keep: np.ndarray, out_path) -> int:
    """Add one embedding shard's kept rows to a copy of the trained index; write it to ``out_path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out_path)
    if out_path.is_file():
        return -1
    index = _faiss().read_index(str(trained_path))
    table = pq.read_table(embedding_part, columns=["id", "vector"])
    if not keep.all():
        table = table.filter(pa.array(keep))
    ids = table.column("id").to_numpy().astype(np.int64)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(shards.vectors_of(table.column("vector"))), ids)
    _write_index(index, out_path)
    return len(ids)


def shard_index_path(out_dir, part) -> Path:
    return Path(out_dir) / SHARDS_DIR / (Path(part.path).stem + ".faiss")


def merge(out_dir, shard_paths) -> int:
    """Merge the shard indexes into ``index.faiss`` + ``index.ivfdata``; returns the vector count."""
    from faiss.contrib.ondisk import merge_ondisk

    faiss = _faiss()
    out_dir = Path(out_dir)
    index = faiss.read_index(str(out_dir / TRAINED_FILE))
    ivfdata = out_dir / IVFDATA_FILE
    ivfdata.unlink(missing_ok=True)  # a merge killed half-way is started over
    merge_ondisk(index, [str(p) for p in shard_paths], str(ivfdata))
    _write_index(index, out_dir / INDEX_FILE)
    return int(index.ntotal)


def write_rerank(shard_set, id_space: int, d: int, path) -> None:
    """(id_space, d) float16 matrix of the kept vectors by id (zeros elsewhere), filled shard by shard."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        mat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(id_space, d))
        for part, table in shard_set.iter_batches(["id", "vector"]):
            mat[table.column("id").to_numpy()] = shards.vectors_of(table.column("vector")).astype(np.float16)
        mat.flush()
        del mat


def build(embeddings_dir, out_dir, id_space: int | None = None, factory: str = "auto", memory="4G",
          seed: int = 0, executor=None, train_size: int | None = None, ids: np.ndarray | None = None) -> IndexParams:
    """Build (or finish building) the index of an embeddings directory into ``out_dir``, its shards added
    by ``executor`` (:mod:`.executors`; None: in this process); ``ids``: index only these ids (a
    gallery; None: every embedded one); see module doc."""
    from ..atomic import ensure_dir, write_json

    t0 = time.perf_counter()
    shard_set = shards.ShardSet(embeddings_dir, only_ok=True).restrict(ids)
    n = len(shard_set)
    if n == 0:
        raise IndexBuildError(f"{embeddings_dir}: no embedded vectors to index")
    first = next(shard_set.iter_batches(["vector"]))[1]
    d = shards.vectors_of(first.column("vector")[:1]).shape[1]
    id_space = int(id_space if id_space is not None else shard_set.ids.max() + 1)
    if factory != "auto":
        check_factory(factory, d)
    params = choose_params(n, d, memory=memory, factory=factory, seed=seed)
    out_dir = ensure_dir(out_dir)  # only once the settings are known to be good: a refused build leaves nothing
    params.id_space, timings = id_space, {}
    params.sources = sorted(p.path.name for p in shard_set.parts)
    if train_size is not None:
        params.train_size = int(min(n, train_size))
    if (out_dir / INDEX_JSON).is_file():  # a finished build of the same shards and settings is kept
        done = IndexParams(**json.loads((out_dir / INDEX_JSON).read_text(encoding="utf-8")))
        if _same_build(done, params):
            log.info("%s: the index of these %d vectors is up to date", out_dir, done.count)
            return done
        log.info("%s: built from other shards or settings: started over", out_dir)
        for name in (INDEX_JSON, TRAINED_FILE, INDEX_FILE, IVFDATA_FILE, RERANK_FILE):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / SHARDS_DIR, ignore_errors=True)
    log.info("%s: %d vectors of d=%d: %s, train on %d", out_dir, n, d, params.factory, params.train_size)
    trained = out_dir / TRAINED_FILE
    if not trained.is_file():
        t = time.perf_counter()
        _, sample = sampler.sample_vectors(shard_set, params.train_size, seed=seed)
        timings["sample_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _write_index(train_index(params, sample), trained)
        timings["train_s"] = time.perf_counter() - t
        del sample
    t = time.perf_counter()
    targets = [shard_index_path(out_dir, p) for p in shard_set.parts]
    todo = [(p, o) for p, o in zip(shard_set.parts, targets) if not o.is_file()]
    ensure_dir(out_dir / SHARDS_DIR)
    from .executors import LocalExecutor

    executor = LocalExecutor() if executor is None else executor
    list(executor.map(functools.partial(functools.partial, add_shard, str(trained)),
                      [(str(p.path), p.keep, str(target)) for p, target in todo]))
    timings["add_s"] = time.perf_counter() - t
    t = time.perf_counter()
    params.count = merge(out_dir, targets)
    timings["merge_s"] = time.perf_counter() - t
    t = time.perf_counter()
    write_rerank(shard_set, id_space, d, out_dir / RERANK_FILE)
    timings["rerank_vectors_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    params.timings = {k: round(v, 3) for k, v in timings.items()}
    write_json(out_dir / INDEX_JSON, asdict(params))
    log.info("%s: %d vectors indexed in %.1f s", out_dir, params.count, timings["total_s"])
    return params


@contextlib.contextmanager
def _c_stdout_to_stderr():
    """What C code prints on stdout inside the block goes to stderr (its buffer flushed before stdout is
    put back): faiss reports where ``IO_FLAG_ONDISK_SAME_DIR`` found the inverted lists with printf, which
    made ``fashion search --json`` on an on-disk run print a line that is not JSON."""
    import ctypes
    import os
    import sys

    with _STDOUT_SWAP:  # indexes may be opened in several threads at once
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            yield
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 1)
            os.close(saved)


class ScaleIndex:
    """A built index directory: ``search(Q, k)`` → (cosine distances, ids), both (n_queries, k)."""

    def __init__(self, directory):
        self.directory = Path(directory)
        meta = self.directory / INDEX_JSON
        if not meta.is_file():
            raise IndexBuildError(f"{self.directory}: no {INDEX_JSON} (the build did not finish: rerun `fashion index`)")
        self.params = IndexParams(**json.loads(meta.read_text(encoding="utf-8")))
        faiss = _faiss()
        # the .ivfdata file is found beside index.faiss wherever the directory now is
        with _c_stdout_to_stderr():  # faiss prints the lists' new place on C stdout: not into a --json answer
            self.index = faiss.read_index(str(self.directory / INDEX_FILE), faiss.IO_FLAG_ONDISK_SAME_DIR)
        from ..rowreader import RowReader

        self.vectors = np.load(self.directory / RERANK_FILE, mmap_mode="r")
        self.rows = RowReader(self.directory / RERANK_FILE)  # the re-rank's reads (not through the map: see it)

    def search(self, Q: np.ndarray, k: int = 10, nprobe: int | None = None, rerank: int | None = None,
               block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (ids -1 where fewer exist); ``rerank`` candidates re-scored exactly (0: PQ order)."""
        faiss = _faiss()
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        nprobe = self.params.nprobe if nprobe is None else int(nprobe)
        rerank = self.params.rerank if rerank is None else int(rerank)
        faiss.ParameterSpace().set_index_parameter(self.index, "nprobe", nprobe)
        tune_quantizer(self.index, self.params.factory, nprobe)
        kc = max(k, rerank)
        dist = np.full((len(Q), k), np.inf, dtype=np.float32)
        ids = np.full((len(Q), k), -1, dtype=np.int64)
        for s in range(0, len(Q), block):
            q = Q[s:s + block]
            d2, cand = self.index.search(q, kc)
            if rerank:
                d2, cand = reranked(q, cand, self.read_rows, k)
            else:
                d2, cand = d2[:, :k] / 2.0, cand[:, :k]
            dist[s:s + block, :d2.shape[1]], ids[s:s + block, :cand.shape[1]] = d2, cand
        return dist, ids

    def read_rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 re-rank rows of ``ids`` from the float16 file, read in file order (pread, no map)."""
        ids = np.asarray(ids, np.int64)
        order = np.argsort(ids, kind="stable")
        out = np.empty((len(ids), self.vectors.shape[1]), dtype=np.float32)
        out[order] = self.rows.read(ids[order])
        return out

    def kneighbors(self, X: np.ndarray, n_neighbors: int = 10, **kw):
        """scikit-learn spelling of :meth:`search`."""
        return self.search(X, n_neighbors, **kw)


def exact_distances(q: np.ndarray, cand: np.ndarray, read_rows) -> np.ndarray:
    """Cosine distances 1 − q·v of unit queries ``q`` (m, d) to their candidates ``cand`` (m, c) of item
    ids (−1: none, distance inf), the rows read by ``read_rows(ids)`` → float32 (len(ids), d): the exact
    re-rank of every IVF-PQ search (:class:`ScaleIndex`, :class:`fashion.scale.delta.LiveIndex`)."""
    valid = cand >= 0
    vecs = read_rows(np.where(valid, cand, 0).ravel()).reshape(cand.shape + (-1,))
    sims = np.einsum("qkd,qd->qk", vecs, q)
    return np.where(valid, 1.0 - sims, np.inf).astype(np.float32)


def reranked(q: np.ndarray, cand: np.ndarray, read_rows, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of each query's candidates by :func:`exact_distances` (cosine distances, ids), ties in
    candidate order (a stable sort); missing ids (−1) last, at distance inf."""
    return nearest_of(exact_distances(q, cand, read_rows), cand, k)


def directory_bytes(directory) -> dict:
    """Sizes of an index directory's files (bytes), for the benchmark's bytes-per-vector."""
    directory = Path(directory)
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.is_file()}


def index_memory_bytes(directory) -> int:
    """What a loaded index holds: the index file (quantiser, OPQ, list heads) + inverted lists."""
    sizes = directory_bytes(directory)
    return sizes.get(INDEX_FILE, 0) + sizes.get(IVFDATA_FILE, 0)
