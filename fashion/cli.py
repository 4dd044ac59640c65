"""The ``fashion`` command line: argv in, library calls out.

Every sub-command parses its options into the library's config dataclasses and calls one library
function; nothing here does real work. ``measure_sim.py`` is the ``neighbors`` sub-command under the
original study's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
import warnings
from typing import Callable, Sequence

from . import __version__
from .errors import ConfigError, FashionError

log = logging.getLogger("fashion")

class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions; append "(default: X)" where a default says something (not
    None, False or a help text that already names its default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default in (None, False, argparse.SUPPRESS) or "default" in text or action.option_strings == []
                and action.nargs in ("?", "*")):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        return f"{text} (default: {shown})".strip()


def _verbosity(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-v/-q on a parser; sub-commands leave them unset unless given, so ``fashion -v train`` and
    ``fashion train -v`` both work."""
    kw = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="count", help="more log output (-vv: debug, and tracebacks)",
                        **({"default": 0} if top else kw))
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors",
                        **({"default": False} if top else kw))


def _output_dir(parser: argparse.ArgumentParser, help: str, required: bool = True, default=None) -> None:
    """--output-dir (the main spelling), with --output_dir and the original study's --ouput_dir as aliases."""
    parser.add_argument("--output-dir", "--output_dir", "--ouput_dir", dest="output_dir", required=required,
                        default=default, metavar="DIR", help=help)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _image_size(text: str) -> int:
    """An image size in pixels, bounded (``--size 100000`` would ask for a 30 GB input tensor)."""
    from .runfiles import RunFileError, check_size

    try:
        return check_size(int(text), "--size")
    except (ValueError, RunFileError) as exc:
        raise argparse.ArgumentTypeError(str(exc) if isinstance(exc, RunFileError) else
                                         f"expected an integer, got {text!r}") from None


def _epochs(text: str) -> tuple[int, ...]:
    """``"3"`` → (3, 3, 3); ``"1,2,1"`` → (1, 2, 1) (:func:`fashion.training.config.parse_epochs`)."""
    from .training.config import parse_epochs

    try:
        return parse_epochs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------------------------- parsers


def _defaults(config_class) -> dict:
    """Field name → default of a config dataclass: the one place each option's default is defined."""
    return {f.name: f.default for f in dataclasses.fields(config_class) if f.default is not dataclasses.MISSING}


def _parameter_defaults(func) -> dict:
    """Parameter name → default of a library function the sub-command calls."""
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _formats() -> tuple[str, ...]:
    from .datasets import FORMATS

    return ("auto", *FORMATS)


def add_neighbors_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``fashion neighbors`` / ``measure_sim.py`` (DESIGN.md's contract); defaults come from
    :class:`fashion.retrieval.MeasureConfig`, choices from the modules that define them."""
    from .embedding import LAYERS, RUNTIMES  # numpy + Pillow only, like the next ones
    from .neighbors import INDEXES, METRICS  # numpy only: the registry is the one list of backends
    from .retrieval import MeasureConfig

    d = _defaults(MeasureConfig)
    p.add_argument("-i", "--input", default=d["input"], metavar="DATASET",
                   help="dataset root (DeepFashion Category, In-shop or image folders); default: the bundled sample")
    _output_dir(p, "where the run's files go (also --output_dir, and the original study's --ouput_dir)")
    p.add_argument("--model", default=d["model"], metavar="DIR",
                   help="trained model directory from `fashion train`; default: the bundled clothing model")
    p.add_argument("--arch", default=d["arch"],
                   help="a bare ImageNet backbone (e.g. efficientnet_lite0) instead of the bundled clothing model")
    p.add_argument("-k", "--k", type=_positive_int, default=d["k"], help="neighbours per query")
    p.add_argument("--index", default=d["index"], choices=INDEXES, help="nearest-neighbour backend")
    p.add_argument("--metric", default=d["metric"], choices=METRICS, help="distance between embeddings")
    p.add_argument("--size", type=_image_size, default=d["size"], help="image size; default: the model's")
    p.add_argument("--batch-size", type=_positive_int, default=d["batch_size"], help="images per forward pass")
    p.add_argument("--format", default=d["format"], choices=_formats(), help="dataset layout (auto: detect it)")
    p.add_argument("--split", default=d["split"], help="use only this split (train, valid, test, query, gallery)")
    p.add_argument("--query-split", default=d["query_split"],
                   help="queries from this split, gallery from the others; default: all-pairs (In-shop: query vs gallery)")
    p.add_argument("--limit", type=_positive_int, default=d["limit"],
                   help="use a seeded random subset of N items (row order kept)")
    p.add_argument("--grids", type=int, default=d["grids"], help="how many neighbour grids to draw")
    p.add_argument("--layer", default=d["layer"], choices=("auto", *LAYERS),
                   help="embedding layer: pooled body features, or the trained head's penultimate features "
                        "(auto: head with --model, which retrieves better; body otherwise)")
    p.add_argument("--workers", dest="num_workers", type=int, default=d["num_workers"],
                   help="DataLoader workers; default: one less than the cores (at most 4)")
    p.add_argument("--runtime", default=d["runtime"], choices=RUNTIMES,
                   help="embedding runtime (auto: OpenVINO when installed and there are enough images, else torch)")
    p.add_argument("--cache-dir", default=d["cache_dir"], metavar="DIR",
                   help="embedding cache, shareable between runs of one model; default: OUTPUT_DIR/cache")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed of the --limit subset and of the grids' queries")
    add_insight_arguments(p)


# insight (#14): duplicates, map, suspects ----------------------------------------------------------


def _add_duplicate_threshold(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--duplicate-threshold", type=float, default=default, metavar="D",
                   help="near-duplicate candidates: cosine distance of the embeddings at or under D (then "
                        "confirmed on the thumbnails); with --method phash: Hamming bits (default 2)")


def add_insight_arguments(p: argparse.ArgumentParser) -> None:
    """The insight stage's options of ``fashion neighbors`` / ``measure_sim.py``."""
    from .insight.duplicates import DEFAULT_THRESHOLD  # numpy only
    from .insight.map import MAP_METHODS  # numpy only

    p.add_argument("--no-insight", dest="insight", action="store_false",
                   help="skip the insight stage (duplicates.csv, suspects.csv, map.csv, map.png)")
    _add_duplicate_threshold(p, DEFAULT_THRESHOLD)
    p.add_argument("--map-method", default="auto", choices=MAP_METHODS,
                   help="embedding map layout (auto: PCA under 2,000 photos, UMAP from there)")


def _add_duplicates(sub) -> None:
    from .insight.duplicates import METHODS
    from .insight.stage import DuplicatesConfig  # dataclasses only

    d = _defaults(DuplicatesConfig)
    p = sub.add_parser("duplicates", formatter_class=_Formatter,
                       help="find (near-)duplicate photos and split leaks in a dataset",
                       description="Exact copies by file hash, then near-copies: embed -> top-K neighbours ->\n"
                                   "pairs under the threshold, confirmed on the thumbnails (or perceptual hashes\n"
                                   "with --method phash). Writes duplicates.csv and duplicates.json.")
    p.add_argument("input", nargs="?", default=d["input"], metavar="DATASET", help="dataset root; default: the bundled sample")
    p.add_argument("--method", default=d["method"], choices=METHODS,
                   help="embedding: the backbone's features + a thumbnail check; phash: perceptual hashes, no network")
    _output_dir(p, "where duplicates.csv and duplicates.json go")
    _add_duplicate_threshold(p, d["threshold"])
    p.add_argument("-k", "--k", type=_positive_int, default=d["k"], help="neighbours per photo searched for copies")
    p.add_argument("--model", default=d["model"], metavar="DIR", help="trained model directory; default: the pretrained backbone")
    p.add_argument("--arch", default=d["arch"], help="backbone when no --model is given")
    p.add_argument("--format", default=d["format"], choices=_formats(), help="dataset layout")
    p.add_argument("--cache-dir", default=d["cache_dir"], metavar="DIR", help="embedding cache; default: OUTPUT_DIR/cache")
    p.set_defaults(func=_run_duplicates)


def _run_duplicates(args) -> int:
    from .insight.stage import DuplicatesConfig, run_duplicates

    result = run_duplicates(DuplicatesConfig(threshold=args.duplicate_threshold,
                                             **_fields_of(DuplicatesConfig, args)))
    print(result.summary())
    return 0


def _add_neighbors(sub) -> None:
    p = sub.add_parser("neighbors", formatter_class=_Formatter,
                       help="embed a dataset, find the top-K similar images, write grids, metrics and a gallery",
                       description="Embed every image with the model's body, build a nearest-neighbour index,\n"
                                   "query the top-K neighbours of every image and write the run's files.")
    add_neighbors_arguments(p)
    p.set_defaults(func=_run_neighbors)


def _add_train(sub) -> None:
    p = sub.add_parser("train", formatter_class=_Formatter,
                       help="three-stage fastai transfer learning of a clothing-category classifier",
                       description="Stage 1: LR finder + frozen-body head training; stage 2: unfreeze + LR finder +\n"
                                   "discriminative LRs; stage 3: the same at --final-size. Keeps the best model by\n"
                                   "validation loss and evaluates it on the test split.")
    from .training.config import CROPS, TrainConfig  # dataclasses only: no fastai

    d = _defaults(TrainConfig)
    p.add_argument("dataset", nargs="?", default=None, metavar="DATASET", help="dataset root; default: the bundled sample")
    _output_dir(p, "where the model, its metrics, figures and checkpoints go")
    p.add_argument("--arch", default=d["arch"], help="backbone name (see `fashion backbones`)")
    p.add_argument("--weights", default=d["weights"], metavar="FILE", help="local backbone weights (state dict)")
    p.add_argument("--format", default="auto", choices=_formats(), help="dataset layout (auto: detect it)")
    p.add_argument("--size", type=_image_size, default=d["size"], help="image size of stages 1 and 2")
    p.add_argument("--final-size", type=_image_size, default=d["final_size"], help="image size of stage 3")
    p.add_argument("--epochs", type=_epochs, default=d["epochs"], help="epochs per stage: N or N1,N2,N3")
    p.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate; default: the LR finder's suggestion")
    p.add_argument("--lr-find-iters", type=_positive_int, default=d["lr_find_iters"], metavar="N",
                   help="batches per LR-finder run (too few give a curve too short to read: the fallback LR is used)")
    p.add_argument("--fallback-lr", type=float, default=d["fallback_lr"], metavar="LR",
                   help="peak LR of a frozen stage whose LR-finder curve is unfit (half of it once unfrozen)")
    p.add_argument("--batch-size", type=_positive_int, default=d["batch_size"], help="images per training step")
    p.add_argument("--crop", default=d["crop"], choices=CROPS, help="crop to the DeepFashion bounding box")
    p.add_argument("--early-stopping", type=_positive_int, default=d["early_stopping"], metavar="PATIENCE",
                   help="stop a stage after this many epochs without a better validation loss")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed of the held-out split, weights init and shuffling")
    p.add_argument("--workers", dest="num_workers", type=int, default=d["num_workers"],
                   help="DataLoader workers (0: decode in the training process)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last finished stage")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --output_dir (the old one stays until the new one is complete)")
    p.add_argument("--skip-missing", action="store_true", help="skip annotated images that do not exist")
    p.add_argument("--no-leak-check", dest="leak_check", action="store_false",
                   help="skip counting test photos with a near-copy in train/valid (and the accuracy without them)")
    add_train_levers(p, d)
    p.set_defaults(func=_run_train)


def _archs(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


def add_train_levers(p: argparse.ArgumentParser, d: dict | None = None) -> None:
    """Accuracy and retrieval levers of `fashion train` (#15); fields of TrainConfig, defaults from it
    (``d``: its defaults; also used by benchmarks/train_clothing.py, so each lever is defined once)."""
    from .training.config import AUGMENTS, CLEAN_LABELS, METRIC_LOSSES, MIXES, TrainConfig

    d = d or _defaults(TrainConfig)

    g = p.add_argument_group("accuracy and retrieval levers")
    g.add_argument("--freeze-early", type=int, default=d["freeze_early"], metavar="N",
                   help="keep the body's first N layers (stem, its BN, block stages) frozen in every stage: "
                        "no backward pass through the high-resolution layers (about 2x faster on CPU)")
    g.add_argument("--label-smoothing", type=float, default=d["label_smoothing"], metavar="EPS",
                   help="label-smoothing cross entropy (0: plain cross entropy)")
    g.add_argument("--mix", default=d["mix"], choices=MIXES, help="MixUp or CutMix of the training batches")
    g.add_argument("--mix-alpha", type=float, default=d["mix_alpha"], metavar="ALPHA",
                   help="Beta parameter of --mix (default: fastai's, 0.4 MixUp, 1.0 CutMix)")
    g.add_argument("--augment", default=d["augment"], choices=AUGMENTS,
                   help="training augmentation: fastai aug_transforms, or stronger lighting/warp/zoom/rotation")
    g.add_argument("--min-scale", type=float, default=d["min_scale"], metavar="SHARE",
                   help="random resized crops keeping at least this share of the image (1: off)")
    g.add_argument("--ema", type=float, default=d["ema"], metavar="DECAY",
                   help="validate and keep an exponential moving average of the weights (decay per batch, e.g. 0.99)")
    g.add_argument("--tta", action="store_true", default=d["tta"],
                   help="also report test-time-augmented accuracy (valid and test)")
    g.add_argument("--no-hard-check", dest="hard_check", action="store_false", default=d["hard_check"],
                   help="skip the accuracy on strongly perturbed test photos")
    g.add_argument("--ensemble", type=_archs, default=d["ensemble"], metavar="ARCH[,ARCH]",
                   help="more backbones trained the same way and exported with --arch as one model")
    g.add_argument("--clean-labels", default=d["clean_labels"], choices=CLEAN_LABELS,
                   help="drop the training photos cleanlab flags (out-of-fold predictions on frozen features), "
                        "or keep them sampled at their label-quality score (weight)")
    g.add_argument("--metric-loss", default=d["metric_loss"], choices=METRIC_LOSSES,
                   help="add a pytorch-metric-learning loss on the embedding (the head's penultimate features)")
    g.add_argument("--metric-weight", type=float, default=d["metric_weight"], metavar="W",
                   help="weight of --metric-loss beside the classification loss")


def _add_search(sub) -> None:
    p = sub.add_parser("search", formatter_class=_Formatter,
                       help="find the clothes most similar to new photos in a finished run",
                       description="Embed PHOTOs with a run's model, search the run's saved index, write a grid per\n"
                                   "photo and print the top matches.")
    from .search import search

    d = _parameter_defaults(search)
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files, or folders of them")
    p.add_argument("--run", required=True, metavar="DIR", help="output directory of `fashion neighbors` / measure_sim.py")
    p.add_argument("-k", "--k", type=_positive_int, default=d["k"], help="matches per photo")
    _output_dir(p, "where the grids go; default: RUN/search", required=False, default=d["output_dir"])
    p.add_argument("--json", action="store_true", help="print the results as JSON (one list, one entry a photo)")
    p.add_argument("--no-grids", dest="grids", action="store_false", help="do not draw a grid per photo")
    p.set_defaults(func=_run_search)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", formatter_class=_Formatter,
                       help="serve a finished run: search by photo, browse neighbours (HTTP API + web page)",
                       description="Load RUN_DIR once and serve the similar-clothes API and its web page.\n"
                                   "Open http://HOST:PORT/ in a browser; the API is described at /docs.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="output directory of `fashion neighbors` / measure_sim.py")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted photo upload")
    p.add_argument("--allowed-hosts", default=None, metavar="NAMES",
                   help="comma-separated Host names requests may carry, * for any (against DNS rebinding); "
                        "default: the --host address and localhost")
    from .service.budget import Limits  # a dataclass: the memory budget's one definition of its defaults

    d = _defaults(Limits)
    p.add_argument("--max-pixels", type=_positive_int, default=d["max_pixels"],
                   help="largest photo searched, in pixels (checked from its header before decoding)")
    p.add_argument("--memory-mb", type=_positive_int, default=d["memory_mb"],
                   help="decoded photos in flight together, in MB; past it requests wait, then get 503")
    p.add_argument("--queue", type=_positive_int, default=d["queue"],
                   help="photo searches in the server at once; more get 503 with Retry-After")
    p.set_defaults(func=_run_serve)


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", formatter_class=_Formatter,
                       help="read a dataset and print its counts per split and label")
    p.add_argument("dataset", nargs="?", default=None, metavar="DATASET", help="dataset root; default: the bundled sample")
    p.add_argument("--format", default="auto", choices=_formats(), help="dataset layout (auto: detect it)")
    p.add_argument("--skip-missing", action="store_true", help="skip annotated images that do not exist")
    p.set_defaults(func=_run_summary)


def _add_backbones(sub) -> None:
    p = sub.add_parser("backbones", formatter_class=_Formatter, help="list the registered backbones",
                       description="The registered backbones (offline weights where a package ships them);\n"
                                   "--arch also takes any timm model as timm:<name>.")
    p.set_defaults(func=_run_backbones)


def build_parser() -> argparse.ArgumentParser:
    """The ``fashion`` parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="fashion", formatter_class=_Formatter,
                                     description="Clothing-category transfer learning and similar-clothes search.")
    parser.add_argument("--version", action="version", version=f"fashion {__version__}")
    _verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_train, _add_neighbors, _add_search, _add_serve, _add_summary, _add_backbones,
                _add_duplicates):
        add(sub)
    _add_scale(sub)
    for subparser in sub.choices.values():
        _verbosity(subparser)
    return parser


# ------------------------------------------------------------------------------------------- commands


def _load_items(dataset, fmt: str, skip_missing: bool):
    from . import datasets, sample

    root = dataset if dataset is not None else sample.sample_root()
    return datasets.load(root, format=fmt, missing="skip" if skip_missing else "error")


def _run_summary(args) -> int:
    from . import datasets

    items = _load_items(args.dataset, args.format, args.skip_missing)
    print(datasets.describe(items))
    return 0


def _run_backbones(args) -> int:
    from . import backbones

    for name in backbones.list_backbones():
        print(name)
    print("\nAny timm model works too: --arch timm:<name>, e.g. timm:mobilenetv3_large_100 "
          "(names: python -c 'import timm; print(timm.list_models())'; CNNs, whose features are a map).")
    return 0


def _run_train(args) -> int:
    from . import training

    items = _load_items(args.dataset, args.format, args.skip_missing)
    config = training.TrainConfig(**_fields_of(training.TrainConfig, args))
    result = training.train(items, config, args.output_dir, resume=args.resume, overwrite=args.overwrite)
    print(result.summary() if hasattr(result, "summary") else result)
    return 0


def _fields_of(config_class, args) -> dict:
    """The parsed options that are fields of ``config_class`` (the CLI names them after the fields)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}


def neighbors_config(args):
    """Map parsed ``neighbors`` options onto :class:`fashion.retrieval.MeasureConfig`."""
    from .retrieval import MeasureConfig

    return MeasureConfig(**_fields_of(MeasureConfig, args))


def _run_neighbors(args) -> int:
    from . import retrieval

    result = retrieval.run(neighbors_config(args))
    print(result.summary() if hasattr(result, "summary") else result)
    return 0


def _run_search(args) -> int:
    import json

    from . import search

    results = search.search(args.photos, args.run, k=args.k, output_dir=args.output_dir, grids=args.grids)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    else:
        for result in results:
            print(result.summary())
    if not any(r.ok for r in results):
        print(f"fashion search: error: none of the {len(results)} photos could be searched", file=sys.stderr)
        return 1
    return 0


def _run_serve(args) -> int:
    from .server import serve
    from .service.budget import Limits

    try:
        limits = Limits(max_pixels=args.max_pixels, memory_mb=args.memory_mb, queue=args.queue)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    hosts = tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip()) if args.allowed_hosts else None
    serve(args.run_dir, host=args.host, port=args.port, max_upload=int(args.max_upload_mb * 1024 * 1024),
          allowed_hosts=hosts, limits=limits)
    return 0


# ------------------------------------------------------------------- scale: manifest, embed, index, knn
# Sharded, id-keyed stages for big catalogues (fashion.scale); `--engine ray` needs the [scale] extra.


def _add_scale(sub) -> None:
    from .embedding import RUNTIMES  # numpy + Pillow only
    from .scale.embed import ENGINES, EmbedConfig  # numpy only

    p = sub.add_parser("manifest", formatter_class=_Formatter,
                       help="write a dataset's item table as id-keyed parquet shards (first scale stage)")
    p.add_argument("dataset", nargs="?", default=None, metavar="DATASET", help="dataset root; default: the bundled sample")
    _output_dir(p, "the scale run directory (manifest, embeddings, index, neighbours)")
    p.add_argument("--format", default="auto", choices=_formats(), help="dataset layout")
    p.add_argument("--skip-missing", action="store_true", help="skip annotated images that do not exist")
    p.add_argument("--shard-rows", type=_positive_int, default=50_000, help="manifest rows per shard")
    p.set_defaults(func=_run_manifest)

    p = sub.add_parser("embed", formatter_class=_Formatter,
                       help="embed a manifest's images into parquet shards; resumes by id",
                       description="Embed every manifest id not yet in RUN/embeddings/<tag>/ (torn files are deleted\n"
                                   "first), locally or on a Ray cluster; a killed run resumes where it stopped.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--engine", default="local", choices=ENGINES)
    p.add_argument("--address", default=None, help="Ray cluster address (auto: the running cluster); default: start one")
    p.add_argument("--actors", type=_positive_int, default=1, help="Ray: embedding actors, one model each")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="Ray: CPUs reserved per actor (fractions allowed)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="Ray: GPUs per actor where GPUs exist")
    p.add_argument("--model", default=None, metavar="DIR", help="trained model directory; default: the pretrained backbone")
    p.add_argument("--arch", default=EmbedConfig.arch, help="backbone when no --model is given (see `fashion backbones`)")
    p.add_argument("--layer", default="auto", choices=("auto", "body", "head"))
    p.add_argument("--size", type=_positive_int, default=None, help="image size; default: the model's")
    p.add_argument("--runtime", default="auto", choices=RUNTIMES,
                   help="embedding runtime (auto: OpenVINO when installed and there are enough images, else torch)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--shard-rows", type=_positive_int, default=4096, help="vectors per output shard")
    p.add_argument("--workers", dest="num_workers", type=int, default=None, help="local: decode threads")
    p.set_defaults(func=_run_embed)

    p = sub.add_parser("index", formatter_class=_Formatter,
                       help="build a faiss IVF-PQ index of a run's embeddings, shard by shard, merged on disk")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--factory", default="auto", help="faiss factory string; auto: from the count and --memory")
    p.add_argument("--memory", default="4G", help="memory budget of the index (e.g. 4G, 512M)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training sample and k-means")
    p.add_argument("--engine", default="local", choices=ENGINES, help="ray: add shards as Ray tasks")
    p.add_argument("--address", default=None, help="Ray cluster address")
    p.set_defaults(func=_run_index)

    p = sub.add_parser("knn", formatter_class=_Formatter,
                       help="top-K neighbours of every embedded image into RUN/neighbors/part-*.parquet")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("-k", "--k", type=_positive_int, default=10)
    p.add_argument("--engine", default="local", choices=ENGINES)
    p.add_argument("--address", default=None, help="Ray cluster address")
    p.add_argument("--actors", type=_positive_int, default=1, help="Ray: query actors, one index each")
    p.add_argument("--nprobe", type=_positive_int, default=None, help="inverted lists visited; default: index.json's")
    p.add_argument("--rerank", type=int, default=None, help="candidates re-ranked exactly; default: index.json's")
    p.set_defaults(func=_run_knn)


def _run_manifest(args) -> int:
    from .scale import manifest

    items = _load_items(args.dataset, args.format, args.skip_missing)
    print(manifest.summary_text(manifest.write_manifest(items, args.output_dir, shard_rows=args.shard_rows)))
    return 0


def _run_embed(args) -> int:
    from .scale.embed import EmbedConfig, embed_run

    config = EmbedConfig(run_dir=args.run_dir, engine=args.engine, model=args.model, arch=args.arch,
                         layer=args.layer, size=args.size, precision=args.precision, runtime=args.runtime,
                         batch_size=args.batch_size, shard_rows=args.shard_rows, num_workers=args.num_workers,
                         address=args.address, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                         gpus_per_actor=args.gpus_per_actor)
    print(embed_run(config).summary())
    return 0


def _run_index(args) -> int:
    from pathlib import Path

    from .scale import embed, ivfpq, manifest

    count = manifest.Manifest.read(args.run_dir).count
    params = ivfpq.build(embed.latest_embeddings(args.run_dir), Path(args.run_dir) / "index", id_space=count,
                         factory=args.factory, memory=args.memory, seed=args.seed, engine=args.engine,
                         address=args.address)
    print(f"{params.factory}: {params.count} vectors, {params.bytes_per_vector} bytes/vector, {params.timings}")
    return 0


def _run_knn(args) -> int:
    from .scale.knn import KnnConfig, knn_run

    metrics = knn_run(KnnConfig(run_dir=args.run_dir, k=args.k, engine=args.engine, address=args.address,
                                actors=args.actors, nprobe=args.nprobe, rerank=args.rerank))
    print(f"precision@{metrics['k']} {metrics['precision_at_k']:.4f} over {metrics['queries']} queries")
    return 0


# ------------------------------------------------------------------------------------------ main


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbose < 1:  # third-party chatter is noise at the default level
        # faiss' loader reports at INFO which CPU build it tried, one line reading like a failure
        for name in ("PIL", "matplotlib", "timm", "fsspec", "urllib3", "httpx", "faiss", "faiss.loader", "openvino"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # libraries' deprecation notices (torch.jit.script, ...) are for their callers' developers
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def _dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (FashionError, OSError) as exc:
        # One line, no traceback: user errors (FashionError) and files the system refuses (OSError)
        # name the file, line or value at fault. Anything else is a bug and keeps its traceback;
        # -vv keeps it for these too.
        if args.verbose > 1:
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fashion`` console script."""
    return _dispatch(build_parser(), argv)


def measure_sim_parser() -> argparse.ArgumentParser:
    """``measure_sim.py``'s parser: the ``neighbors`` options at top level."""
    parser = argparse.ArgumentParser(prog="measure_sim.py", formatter_class=_Formatter,
                                     description="Similar-clothes search: embed every image, find its top-K "
                                                 "neighbours, write grids, a neighbours table, metrics and a gallery.")
    _verbosity(parser, top=True)
    add_neighbors_arguments(parser)
    parser.set_defaults(func=_run_neighbors)
    return parser


def measure_sim_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``measure_sim.py`` (same as ``fashion neighbors``)."""
    return _dispatch(measure_sim_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
