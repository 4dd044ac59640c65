"""``fashion manifest / embed / index / knn``: the sharded, id-keyed stages one at a time
(:mod:`fashion.scale`; ``--engine ray`` needs the [scale] extra)."""

from __future__ import annotations

from .common import add_options, add_parser, fields_of, load_items

EMBED_OPTIONS = ("run_dir", "engine", "address", "actors", "cpus_per_actor", "gpus_per_actor", "model", "arch",
                 "layer", "size", "runtime", "precision", "batch_size", "embed_shard_rows", "num_workers")
KNN_OPTIONS = ("run_dir", "k", "engine", "address", "actors", "nprobe", "rerank")


def run_manifest(args) -> int:
    """``fashion manifest``: the dataset's item table as id-keyed parquet shards."""
    from ..scale import manifest

    items = load_items(args.dataset, args.format, args.skip_missing)
    print(manifest.summary_text(manifest.write_manifest(items, args.output_dir, shard_rows=args.shard_rows)))
    return 0


def run_embed(args) -> int:
    """``fashion embed``: every manifest id not yet embedded."""
    from ..scale.embed import EmbedConfig, embed_run

    print(embed_run(EmbedConfig(**fields_of(EmbedConfig, args))).summary())  # the pipeline's embed stage
    return 0


def run_index(args) -> int:
    """``fashion index``: the IVF-PQ index of a run's embeddings."""
    from pathlib import Path

    from ..scale import embed, executors, ivfpq, manifest

    count = manifest.Manifest.read(args.run_dir).count
    params = ivfpq.build(embed.latest_embeddings(args.run_dir), Path(args.run_dir) / "index", id_space=count,
                         factory=args.factory, memory=args.memory, seed=args.seed,
                         executor=executors.make_executor(args.engine, args.address))
    print(f"{params.factory}: {params.count} vectors, {params.bytes_per_vector} bytes/vector, {params.timings}")
    return 0


def run_knn(args) -> int:
    """``fashion knn``: the top-K of every embedded image, then the run sealed by the pipeline's stages."""
    from ..pipeline.measure import seal_work
    from ..scale import executors
    from ..scale.knn import KnnConfig

    config = KnnConfig(**fields_of(KnnConfig, args))
    metrics = seal_work(config.run_dir, config.k, executors.of(config), nprobe=config.nprobe, rerank=config.rerank,
                        arguments={"k": config.k, "nprobe": config.nprobe, "rerank": config.rerank,
                                   "engine": config.engine}).metrics
    print(f"precision@{metrics['k']} {metrics['precision_at_k']:.4f} over {metrics['n_queries']} queries")
    return 0


def register(sub) -> None:
    """Add ``manifest``, ``embed``, ``index`` and ``knn`` to the sub-command parsers ``sub``."""
    p = add_parser(sub, "manifest", "write a dataset's item table as id-keyed parquet shards (first scale stage)")
    add_options(p, "dataset", "output_dir", "format", "skip_missing", "manifest_shard_rows",
                output_dir="the scale run directory (manifest, embeddings, index, neighbours)")
    p.set_defaults(func=run_manifest)

    p = add_parser(sub, "embed", "embed a manifest's images into parquet shards; resumes by id",
                   "Embed every manifest id not yet in RUN/embeddings/<tag>/ (torn files are deleted\n"
                   "first), locally or on a Ray cluster; a killed run resumes where it stopped.")
    add_options(p, *EMBED_OPTIONS, actors="Ray: embedding actors, one model each",
                num_workers="local engine: image decoding threads; default: one less than the cores (at most 4)")
    p.set_defaults(func=run_embed)

    p = add_parser(sub, "index", "build a faiss IVF-PQ index of a run's embeddings, shard by shard, merged on disk")
    add_options(p, "run_dir", "factory", "memory", "seed", "engine", "address",
                seed="seed of the training sample and k-means",
                engine="local: one process; ray: add the shards on Ray actors")
    p.set_defaults(func=run_index)

    p = add_parser(sub, "knn", "top-K neighbours of every embedded image into RUN/neighbors/part-*.parquet")
    add_options(p, *KNN_OPTIONS, k="neighbours per image (the image itself left out)",
                actors="Ray: query actors, one index each")
    p.set_defaults(func=run_knn)
