"""``fashion manifest / embed / index / knn``: the pipeline's stages one at a time on one run directory,
each verb the orchestrator (:func:`fashion.pipeline.measure.measure`) with its range of stages
(:data:`fashion.pipeline.measure.VERBS`), so the verbs and ``measure_sim.py`` write the same run
(``--engine ray`` needs the [scale] extra)."""

from __future__ import annotations

from .common import add_options, add_parser, fields_of

EMBED_OPTIONS = ("run_dir", "engine", "address", "actors", "cpus_per_actor", "gpus_per_actor", "model", "arch",
                 "layer", "size", "runtime", "precision", "batch_size", "embed_shard_rows", "num_workers")
KNN_OPTIONS = ("run_dir", "k", "engine", "address", "actors", "nprobe", "rerank")


def config_of(verb: str, args):
    """The orchestrator's config (:class:`fashion.pipeline.config.MeasureConfig`) of a verb's parsed options:
    those named after its fields, then those the verbs name otherwise (the dataset, the run directory, the
    two ``--shard-rows``); the verbs' index is the on-disk IVF-PQ."""
    from ..pipeline.config import MeasureConfig
    from ..pipeline.index import ON_DISK

    if verb == "manifest":
        named = {"input": args.dataset, "manifest_shard_rows": args.shard_rows}
    elif verb == "embed":
        named = {"output_dir": args.run_dir, "embed_shard_rows": args.shard_rows}
    else:
        named = {"output_dir": args.run_dir, "index": ON_DISK}
    return MeasureConfig(**{**fields_of(MeasureConfig, args), **named})


def run_verb(verb: str, args, arguments: dict | None = None):
    """The orchestrator with the verb's range of stages, on the run directory as its work."""
    from ..pipeline.measure import VERBS, measure

    config = config_of(verb, args)
    return measure(config, stages=VERBS[verb], work_dir=config.output_dir, arguments=arguments)


def run_manifest(args) -> int:
    """``fashion manifest``: the dataset's item table as id-keyed parquet shards."""
    from ..scale import manifest

    print(manifest.summary_text(run_verb("manifest", args).stages["manifest"]))
    return 0


def run_embed(args) -> int:
    """``fashion embed``: every manifest id not yet embedded."""
    print(run_verb("embed", args).stages["embed"].summary())
    return 0


def run_index(args) -> int:
    """``fashion index``: the IVF-PQ index of a run's embeddings (a finished one of the same gallery is kept)."""
    params = run_verb("index", args).stages["index"].params
    print(f"{params.factory}: {params.count} vectors, {params.bytes_per_vector} bytes/vector, {params.timings}")
    return 0


def run_knn(args) -> int:
    """``fashion knn``: the top-K of every embedded image, then the run sealed by the pipeline's stages."""
    arguments = {"k": args.k, "nprobe": args.nprobe, "rerank": args.rerank, "engine": args.engine}
    metrics = run_verb("knn", args, arguments).metrics
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
