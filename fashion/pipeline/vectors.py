"""The manifest stage (the item table → the work's id-keyed manifest) and the embed stage: the item
manifest → id-keyed embedding shards (resumable by id, run by an executor) → the run's ``embeddings.npy``
(filled by id, memory-mapped), with ok and reason per item.

The stages' work sits in a work directory that outlives the run: ``CACHE/scale/<dataset fingerprint>-
<embedder tag>/`` for ``measure_sim.py`` (CACHE: ``--cache-dir`` or ``OUTPUT_DIR/cache``), the run
directory itself for the verbs. A run killed at any point resumes: the rerun embeds only missing ids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..scale import embed, manifest, shards

log = logging.getLogger(__name__)

SCALE_CACHE = "scale"  # sub-directory of the cache holding the stages' resumable work


def embed_config(config, work) -> "embed.EmbedConfig":
    """The embed stage's options of a pipeline run (the fields of ``fashion embed``)."""
    return embed.EmbedConfig(str(work), engine=config.engine, model=config.model, arch=config.arch,
                             layer=config.layer, size=config.size, runtime=config.runtime, precision=config.precision,
                             batch_size=config.batch_size, num_workers=config.num_workers,
                             shard_rows=config.embed_shard_rows)


def work_dir(config, table, cache):
    """(work directory, embedder, fingerprint): ``CACHE/scale/<fingerprint[:16]>-<embedder tag>``, one per
    dataset and embedder (nothing written: the manifest stage writes its item manifest), and the embedder
    the embed stage resolves."""
    fp = manifest.fingerprint(table.frame)
    embed.forget_embedders()  # a run builds its model from the files as they are now
    spec, embedder = embed.resolve_spec(embed_config(config, cache), len(table))
    work = Path(cache) / SCALE_CACHE / f"{fp[:16]}-{embedder.cache_path('', spec.crop).name}"
    log.info("%s: the stages' work (resumed by a rerun)", work)
    return work, embedder, fp


def manifest_stage(config, table, work, fp: str | None = None) -> "manifest.Manifest":
    """The item table as ``work``'s id-keyed manifest (an up-to-date one is kept; another dataset's is
    refused)."""
    return manifest.write_manifest(table, work, shard_rows=config.manifest_shard_rows, fp=fp)


def embed_stage(config, work, executor) -> "embed.EmbedResult":
    """Embed every manifest id of ``work`` not yet in a finished shard."""
    return embed.embed_run(embed_config(config, work), executor=executor)


def _batches(work, ok: np.ndarray, reasons: list, vectors: bool = True):
    """(ids, vectors) of every shard's usable rows, ``ok`` and ``reasons`` filled by id on the way."""
    columns = ["id", "vector", "ok", "reason"] if vectors else ["id", "ok", "reason"]
    for _, table in shards.ShardSet(embed.latest_embeddings(work)).iter_batches(columns):
        ids = table.column("id").to_numpy().astype(np.int64)
        good = table.column("ok").to_numpy(zero_copy_only=False).astype(bool)
        ok[ids] = good
        for i, r in zip(ids.tolist(), table.column("reason").to_pylist()):
            reasons[i] = r or ""
        yield ids[good], shards.vectors_of(table.column("vector"))[good] if vectors else None


def gather(work, out, n: int):
    """(vectors, ok, reasons): every shard's rows by id into ``out/embeddings.npy`` (a memory map, zeros
    where an image failed), never whole in memory; returns the map opened read-only."""
    from ..run import writer

    ok, reasons = np.zeros(n, dtype=bool), [""] * n
    path = writer.write_embeddings_by_id(out, n, dimension(work), _batches(work, ok, reasons))
    return np.load(path, mmap_mode="r"), ok, reasons


def gather_in_memory(work, n: int) -> np.ndarray:
    """Every shard's vectors by id as one (n, d) float32 array in memory (zeros where an image failed): a
    stage range that builds or searches an in-memory index without writing a run."""
    vectors = np.zeros((n, dimension(work)), dtype=np.float32)
    for ids, rows in _batches(work, np.zeros(n, dtype=bool), [""] * n):
        vectors[ids] = rows
    return vectors


def read_ok(work, n: int) -> tuple[np.ndarray, list]:
    """(ok, reasons) per id of the embed stage's shards, their vectors left unread."""
    ok, reasons = np.zeros(n, dtype=bool), [""] * n
    for _ in _batches(work, ok, reasons, vectors=False):
        pass
    return ok, reasons


def dimension(work) -> int:
    """The vectors' dimension of the embed stage's shards in ``work``."""
    emb_dir = embed.latest_embeddings(work)
    for _, table in shards.ShardSet(emb_dir).iter_batches(["vector"]):
        if len(table):
            return shards.vectors_of(table.column("vector")[:1]).shape[1]
    raise manifest.ManifestError(f"{emb_dir}: no embedded vectors")


def embedder_info(work) -> dict:
    """The embedder block of run.json: what the embed stage recorded beside its shards."""
    import json

    path = embed.latest_embeddings(work) / "embedder.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def check_model_output(vectors, ok: np.ndarray, reasons, embedder, paths) -> None:
    """Refuse a model whose features are unusable for every image, naming the model, not the images.

    Non-finite (NaN/infinity: NaN weights, a std of 0 in model.json) or all-zero features for every
    readable image, or one and the same vector for all of them while the files (``paths``, one per
    row) differ (a collapsed model): a :class:`~fashion.errors.FashionError` naming the model file.
    """
    from ..embedding import NO_FEATURES, NON_FINITE
    from ..errors import FashionError

    where = (f"the model in {Path(embedder.model_dir) / 'model.json'}" if embedder.model_dir
             else f"the backbone {embedder.name} ({embedder.source or 'pretrained'})")
    featureless = sum(r in (NO_FEATURES, NON_FINITE) for r, good in zip(reasons, ok) if not good)
    if not ok.any() and featureless:
        norm = f"(mean {list(embedder.mean)}, std {list(embedder.std)})"
        if NON_FINITE in reasons:
            raise FashionError(f"{where} produces non-finite (NaN or infinite) features for all {featureless} "
                               f"readable images: its weights or its normalisation {norm} are broken")
        raise FashionError(f"{where} produces all-zero features for all {featureless} readable images: blank "
                           f"images, or broken weights or normalisation {norm}")
    good = np.flatnonzero(ok)
    if len(good) >= 2:
        first = np.asarray(vectors[good[0]])
        spread = max(float(np.abs(vectors[rows] - first).max()) for rows in np.array_split(good, max(1, len(good) // 4096)))
        if spread < 1e-6 and _distinct_files(paths, good):
            raise FashionError(f"{where} produces the same vector for every image ({len(good)} images): "
                               "a collapsed or untrained model; its neighbours would be arbitrary")


def _distinct_files(paths, rows: np.ndarray, most: int = 64) -> bool:
    """Whether the images behind ``rows`` are not all one and the same file content (copies of one
    photo rightly share a vector). Only run when every vector is the same, so hashing is rare."""
    from ..rundir import file_sha256

    seen = set()
    for i in rows[:most]:
        try:
            seen.add(file_sha256(paths[i]))
        except OSError:
            continue
        if len(seen) > 1:
            return True
    return False
