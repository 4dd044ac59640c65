"""The options of a pipeline run (``measure_sim.py`` / ``fashion neighbors``), one field per CLI flag."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import default  # every option's default, defined once


@dataclass
class MeasureConfig:
    """Options of a retrieval run (the CLI maps its flags one-to-one onto these fields).

    input: dataset root (None = the bundled sample); output_dir: where the files go;
    model: trained model dir; arch: a bare ImageNet backbone instead; neither: the bundled clothing
    model (``fashion.embedding.spec.resolve_model``, applied on construction); k: neighbours per query;
    index/metric: the index (a fashion.neighbors backend, ``ivfpq-disk`` for the on-disk IVF-PQ, or auto:
    by size and memory, :func:`fashion.pipeline.index.choose_index`) and distance; size: image px
    (None = model's); format: auto/deepfashion/inshop/folder; split: keep only these splits
    ("train,valid" allowed); query_split: queries from this split, gallery = the rest; limit: a seeded
    random subset of this many items (row order kept); grids: how many grids to draw; layer: "body",
    "head" or "auto" (head for a trained model, else body); num_workers: image decoding threads
    (None = automatic); seed: picks the limit subset and the grids;
    cache_dir: the resumable work (embedding shards, on-disk index, neighbour shards; None =
        ``output_dir/cache``; share one between runs of the same dataset and model);
    runtime: embedding runtime, one of ``fashion.embedding.RUNTIMES``; precision: the network's float
        precision (auto: bf16 where the CPU computes in it natively, else fp32);
    insight: the insight stage (duplicates.csv, suspects.csv, map.csv, map.png; ``fashion.insight``);
    duplicate_threshold: its candidate cosine distance; map_method: its layout (auto, pca, umap, tsne).
    metadata: shop metadata file (CSV or parquet) joined onto the item table on relpath or id
        (:mod:`fashion.catalog.metadata`); its typed columns land in the run's items.
    engine, address, actors, cpus_per_actor, gpus_per_actor: the executor (local, or a Ray cluster).
    embed_shard_rows: ids per embedding shard (what a kill can lose); manifest_shard_rows: items per
        manifest shard.
    skip_missing: leave out annotated images that do not exist (reported in metrics.json); measure_sim.py
        always does, ``fashion manifest`` only with ``--skip-missing`` (else it stops at the first).
    factory, memory: the on-disk IVF-PQ's faiss factory string and memory budget (``fashion index``);
    nprobe, rerank: its search options (``fashion knn``; None: index.json's).
    """

    input: str | None = default("input")
    output_dir: str | None = None
    model: str | None = default("model")
    arch: str | None = default("arch")
    k: int = default("k")
    index: str = default("index")
    metric: str = default("metric")
    size: int | None = default("size")
    batch_size: int = default("batch_size")
    format: str = default("format")
    split: str | None = default("split")
    query_split: str | None = default("query_split")
    limit: int | None = default("limit")
    grids: int = default("grids")
    layer: str = default("layer")
    num_workers: int | None = default("num_workers")
    seed: int = default("seed")
    cache_dir: str | None = default("cache_dir")
    runtime: str = default("runtime")
    precision: str = default("precision")
    insight: bool = default("insight")
    duplicate_threshold: float = default("duplicate_threshold")
    map_method: str = default("map_method")
    metadata: str | None = default("metadata")
    engine: str = default("engine")
    address: str | None = default("address")
    actors: int = default("actors")
    cpus_per_actor: float = default("cpus_per_actor")
    gpus_per_actor: float = default("gpus_per_actor")
    embed_shard_rows: int = default("embed_shard_rows")
    manifest_shard_rows: int = default("manifest_shard_rows")
    skip_missing: bool = True
    factory: str = default("factory")
    memory: str = default("memory")
    nprobe: int | None = default("nprobe")
    rerank: int | None = default("rerank")

    def __post_init__(self):
        from ..embedding.spec import resolve_model

        self.model, self.arch = resolve_model(self.model, self.arch)

    def insight_config(self):
        """The insight stage's options (None: the stage is off)."""
        from ..insight.stage import InsightConfig

        if not self.insight:
            return None
        return InsightConfig(threshold=self.duplicate_threshold, map_method=self.map_method, seed=self.seed)
