"""Every option of the command line, defined once: name, flags, type, default, range or choices, help.

The parsers of ``fashion <command>`` and ``measure_sim.py`` are built from these :class:`Option`\\ s
(:mod:`fashion.cli`), and the config dataclasses take their defaults from them
(``MeasureConfig.k = K.default``, ``EmbedConfig``, ``KnnConfig``, ``TrainConfig``, ``DuplicatesConfig``,
``Limits``), so a flag shared by two sub-commands (``--size``, ``--runtime``, ``-k``) cannot drift. Two
options with one flag and different meanings (``--size`` of training vs of embedding) are two entries
with the same type and bound. Choices come from the modules that own them (``RUNTIMES`` from
:mod:`fashion.embedding`, ``INDEXES`` from :mod:`fashion.neighbors`, ...); vocabularies that exist only
as option values (training's levers, the scale engines) are defined here.

Importing this module loads numpy and Pillow (for the choices), never torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from .backbones import DEFAULT_BACKBONE
from .catalog.versions import DEFAULT_KEEP, DEFAULT_WAIT
from .errors import ConfigError
from .datasets.table import FORMATS as DATASET_FORMATS
from .embedding.embedder import LAYERS, PRECISIONS, RUNTIMES
from .insight.duplicates import DEFAULT_THRESHOLD, METHODS as DUPLICATE_METHODS
from .insight.map import MAP_METHODS
from .neighbors import INDEXES, METRICS
from .runfiles import MAX_SIZE

__all__ = ["Option", "OPTIONS", "DEFAULT_BACKBONE", "positive_int", "image_size", "epochs", "parse_epochs", "comma_separated",
           "default", "registry", "CROPS", "MIXES", "AUGMENTS", "CLEAN_LABELS", "METRIC_LOSSES", "ENGINES"]

# vocabularies that exist only as option values
CROPS = ("none", "bbox")
MIXES = ("none", "mixup", "cutmix")                     # fastai.callback.mixup
AUGMENTS = ("default", "strong", "none")                 # fastai aug_transforms settings (AUGMENT_SETTINGS)
CLEAN_LABELS = ("none", "drop", "weight")                # confident-learning cleanup of the train labels
METRIC_LOSSES = ("none", "supcon", "multisimilarity", "arcface")  # pytorch-metric-learning, on the embedding
ENGINES = ("local", "ray")                               # fashion.scale: one process, or a Ray cluster
FORMATS = ("auto", *DATASET_FORMATS)
EMBED_LAYERS = ("auto", *LAYERS)


# --------------------------------------------------------------------------------------------- types


def positive_int(text: str) -> int:
    """An integer of at least 1.

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def count(text: str) -> int:
    """An integer of at least 0 (``--keep 0``).

    >>> count("0")
    0
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A time in seconds, at least 0 (``--wait 0``: do not wait)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def image_size(text: str) -> int:
    """An image size in pixels, bounded (``--size 100000`` would ask for a 30 GB input tensor)."""
    from .runfiles import RunFileError, check_size

    try:
        return check_size(int(text), "--size")
    except (ValueError, RunFileError) as exc:
        raise argparse.ArgumentTypeError(str(exc) if isinstance(exc, RunFileError) else
                                         f"expected an integer, got {text!r}") from None


def parse_epochs(value) -> tuple[int, int, int]:
    """Epochs per stage from one number (all three stages), three numbers, or text ``"N"`` / ``"N1,N2,N3"``.

    >>> parse_epochs(2), parse_epochs("1,3,1"), parse_epochs([0, 1, 2])
    ((2, 2, 2), (1, 3, 1), (0, 1, 2))
    """
    parts = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int) else value
    try:
        epochs = tuple(int(str(p).strip()) for p in parts)
    except (TypeError, ValueError):
        epochs = ()
    if len(epochs) == 1:
        epochs *= 3
    if len(epochs) != 3 or any(e < 0 for e in epochs):
        raise ConfigError(f"epochs must be one number or three (one per stage, >= 0), like 2 or 1,3,1; got {value!r}")
    return epochs


def epochs(text: str) -> tuple[int, ...]:
    """``"3"`` → (3, 3, 3); ``"1,2,1"`` → (1, 2, 1) (:func:`parse_epochs`)."""
    try:
        return parse_epochs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def comma_separated(text: str) -> tuple[str, ...]:
    """Comma-separated names or paths (``--ensemble``, ``--distill``), blanks dropped.

    >>> comma_separated("efficientnet_lite1, efficientnet_lite2")
    ('efficientnet_lite1', 'efficientnet_lite2')
    """
    return tuple(a.strip() for a in text.split(",") if a.strip())


# --------------------------------------------------------------------------------------------- Option


@dataclass(frozen=True)
class Option:
    """One option: ``name`` (its key in :data:`OPTIONS`), ``flags`` (empty: a positional named ``dest``),
    ``dest`` (the config field it fills; default: ``name``), and what argparse needs. ``action``:
    "store" (default), "store_true", "store_false" or "count"."""

    name: str
    flags: tuple[str, ...]
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: tuple | None = None
    metavar: str | None = None
    action: str = "store"
    dest: str | None = None
    nargs: str | None = None
    required: bool = False

    @property
    def field(self) -> str:
        """The config field (and argparse dest) this option fills."""
        return self.dest or self.name

    def add(self, parser, *, help: str | None = None, required: bool | None = None, suppress: bool = False):
        """Add this option to ``parser`` (a parser or an argument group); ``help``: a sub-command's own
        wording (the default, type and choices stay the registry's); ``suppress``: leave the value unset
        unless given (sub-commands' -v/-q). Returns the argparse action, tagged with ``option_name``."""
        kwargs: dict[str, Any] = {"help": help or self.help,
                                  "default": argparse.SUPPRESS if suppress else self.default}
        if self.action in ("store", "append"):
            kwargs.update(type=self.type, choices=self.choices, metavar=self.metavar)
            if self.action == "append":
                kwargs["action"] = "append"
            if self.nargs:
                kwargs["nargs"] = self.nargs
        else:
            kwargs["action"] = self.action
        if self.flags:
            kwargs.update(dest=self.field, required=self.required if required is None else required)
            action = parser.add_argument(*self.flags, **kwargs)
        else:
            action = parser.add_argument(self.field, **kwargs)
        action.option_name = self.name
        return action


def registry(*options: Option) -> dict[str, Option]:
    """{name: option}; a name given twice is a mistake."""
    table = {}
    for option in options:
        if option.name in table:
            raise ValueError(f"option {option.name!r} defined twice")
        table[option.name] = option
    return table


_O = Option
OUTPUT_DIR_FLAGS = ("--output-dir", "--output_dir", "--ouput_dir")  # the study's misspelling kept as an alias

OPTIONS = registry(
    # -------------------------------------------------------------------------------- everywhere
    _O("verbose", ("-v", "--verbose"), "more log output (-vv: debug, and tracebacks)", default=0, action="count"),
    _O("quiet", ("-q", "--quiet"), "only warnings and errors", default=False, action="store_true"),
    _O("output_dir", OUTPUT_DIR_FLAGS, "where the run's files go (also --output_dir, and the original study's "
       "--ouput_dir)", metavar="DIR", required=True),
    _O("dataset", (), "dataset root (DeepFashion Category, In-shop or image folders); default: the bundled sample",
       metavar="DATASET", nargs="?"),
    _O("format", ("--format",), "dataset layout (auto: detect it)", default="auto", choices=FORMATS),
    _O("skip_missing", ("--skip-missing",), "skip annotated images that do not exist", default=False,
       action="store_true"),
    _O("seed", ("--seed",), "seed of the --limit subset and of the grids' queries", default=0, type=int),
    _O("run_dir", (), "a run directory (written by `fashion manifest` and the stages after it)", metavar="RUN"),
    # -------------------------------------------------------------------------------- the embedder
    _O("model", ("--model",), "trained model directory from `fashion train`; default: the bundled clothing model",
       metavar="DIR"),
    _O("arch", ("--arch",), "a bare ImageNet backbone (e.g. efficientnet_lite2, see `fashion backbones`) instead "
       "of the bundled clothing model", metavar="NAME"),
    _O("layer", ("--layer",), "embedding layer: pooled body features, or the trained head's penultimate features "
       "(auto: head with a trained model, which retrieves better; body otherwise)", default="auto",
       choices=EMBED_LAYERS),
    _O("size", ("--size",), f"image size in pixels (8 to {MAX_SIZE}); default: the model's", type=image_size,
       metavar="PX"),
    _O("runtime", ("--runtime",), "embedding runtime (auto: OpenVINO when installed and there are enough images, "
       "else torch; openvino-int8: the body quantised to int8, opt-in)", default="auto", choices=RUNTIMES),
    _O("precision", ("--precision",), "float precision of the network (auto: bf16 where the CPU has it natively)",
       default="auto", choices=PRECISIONS),
    _O("batch_size", ("--batch-size",), "images per forward pass", default=64, type=positive_int, metavar="N"),
    _O("num_workers", ("--workers",), "image decoding workers; default: one less than the cores (at most 4)",
       type=int, metavar="N"),
    _O("cache_dir", ("--cache-dir",), "embedding cache, shareable between runs of one model; default: "
       "OUTPUT_DIR/cache", metavar="DIR"),
    # -------------------------------------------------------------------------------- neighbours
    _O("input", ("-i", "--input"), "dataset root (DeepFashion Category, In-shop or image folders); default: the "
       "bundled sample", metavar="DATASET"),
    _O("k", ("-k", "--k"), "neighbours per query", default=10, type=positive_int, metavar="K"),
    _O("index", ("--index",), "nearest-neighbour index: a fashion.neighbors backend, or ivfpq-disk (the on-disk IVF-PQ, "
       "built shard by shard); auto: exact while the gallery's vectors fit comfortably in memory and number at most "
       "100,000, faiss-ivfpq above, ivfpq-disk when they do not fit", default="auto", choices=(*INDEXES, "ivfpq-disk")),
    _O("metric", ("--metric",), "distance between embeddings", default="cosine", choices=METRICS),
    _O("split", ("--split",), "use only this split (train, valid, test, query, gallery; comma-separated allowed)",
       metavar="SPLIT"),
    _O("query_split", ("--query-split",), "queries from this split, gallery from the others; default: all-pairs "
       "(In-shop: query vs gallery)", metavar="SPLIT"),
    _O("limit", ("--limit",), "use a seeded random subset of N items (row order kept)", type=positive_int,
       metavar="N"),
    _O("grids", ("--grids",), "how many neighbour grids to draw", default=12, type=int, metavar="N"),
    _O("metadata", ("--metadata",), "shop metadata (CSV or parquet) joined onto the items on its relpath or id "
       "column: brand, price, in_stock, any column, typed; each works as a filter and a facet", metavar="FILE"),
    # -------------------------------------------------------------------------------- insight
    _O("insight", ("--no-insight",), "skip the insight stage (duplicates.csv, suspects.csv, map.csv, map.png)",
       default=True, action="store_false"),
    _O("duplicate_threshold", ("--duplicate-threshold",), "near-duplicate candidates: cosine distance of the "
       "embeddings at or under D (then confirmed on the thumbnails)", default=DEFAULT_THRESHOLD, type=float,
       metavar="D"),
    _O("map_method", ("--map-method",), "embedding map layout (auto: PCA under 2,000 photos, UMAP from there)",
       default="auto", choices=MAP_METHODS),
    # -------------------------------------------------------------------------------- duplicates
    _O("dataset_input", (), "dataset root; default: the bundled sample", metavar="DATASET", nargs="?", dest="input"),
    _O("duplicates_method", ("--method",), "embedding: the backbone's features + a thumbnail check; phash: "
       "perceptual hashes, no network", default="embedding", choices=DUPLICATE_METHODS, dest="method"),
    _O("duplicates_threshold", ("--duplicate-threshold",), "near-duplicate candidates: cosine distance of the "
       f"embeddings at or under D (default {DEFAULT_THRESHOLD}, then confirmed on the thumbnails); with "
       "--method phash: Hamming bits (default 2)", type=float, metavar="D", dest="threshold"),
    _O("duplicates_arch", ("--arch",), "backbone embedded with when no --model is given (see `fashion backbones`)",
       default=DEFAULT_BACKBONE, metavar="NAME", dest="arch"),
    # -------------------------------------------------------------------------------- search, serve
    _O("filter", ("--filter",), "only items that COLUMN OP VALUE keeps (label=dress, price<100, brand in A,B, "
       "in_stock=true); repeat to AND them", default=None, action="append", metavar="EXPR", dest="filters"),
    _O("text", ("--text",), "words of a search box (\"red summer dress, not black\"): parsed into filters of "
       "category, colour and metadata values (a structured query, not a language model); without photos, the "
       "matching items", metavar="WORDS"),
    _O("colour", ("--colour",), "colour mode of a photo search: same (visual similarity, the photo's colour "
       "first), any (colour-invariant ranking) or a colour family (this, but in blue)", metavar="MODE"),
    _O("search_photos", (), "image files, or folders of them (none with --text: the items the words match)",
       metavar="PHOTO", nargs="*", dest="photos"),
    _O("update_metadata", ("--metadata",), "shop metadata (CSV or parquet) joined on relpath or id: its columns "
       "are changed or added", metavar="FILE", required=True, dest="metadata"),
    _O("photos", (), "image files, or folders of them", metavar="PHOTO", nargs="+"),
    _O("run", ("--run",), "output directory of `fashion neighbors` / measure_sim.py", metavar="DIR", required=True),
    _O("sources", (), "photos, folders or dataset roots to add (labels and splits come along where the layout has "
       "them)", metavar="SOURCE", nargs="+"),
    _O("remove_paths", (), "items to remove: their files, or their relpaths in the run", metavar="PATH", nargs="*",
       dest="paths"),
    _O("remove_ids", ("--id",), "items to remove by id", type=int, metavar="N", nargs="+", dest="ids"),
    _O("remove_filter", ("--filter",), "remove the items matching this clause (fashion.filters grammar, e.g. "
       "label=dress; repeat to AND)", action="append", metavar="EXPR", dest="filter"),
    _O("wait", ("--wait",), "when another writer holds the run's lock (RUN.versions/writer.lock), wait this "
       "long for it, then give up", default=DEFAULT_WAIT, type=seconds, metavar="SECONDS"),
    _O("keep", ("--keep",), "old versions kept in RUN.versions after the change (older ones are pruned)",
       default=DEFAULT_KEEP, type=count, metavar="N"),
    _O("prune", ("--prune",), "remove all but the newest N old versions", type=count, metavar="N"),
    _O("write_token_file", ("--write-token-file",), "turn on the write API (POST/DELETE/PATCH /api/items) with "
       "the token in FILE (at least 16 characters; or set FASHION_WRITE_TOKEN); off by default", metavar="FILE"),
    _O("json", ("--json",), "print the results as JSON (one list, one entry a photo)", default=False,
       action="store_true"),
    _O("search_grids", ("--no-grids",), "do not draw a grid per photo", default=True, action="store_false",
       dest="grids"),
    _O("serve_run_dir", (), "output directory of `fashion neighbors` / measure_sim.py", metavar="RUN_DIR",
       dest="run_dir"),
    _O("host", ("--host",), "interface to listen on (0.0.0.0 exposes it to the network)", default="127.0.0.1"),
    _O("port", ("--port",), "TCP port to listen on", default=8000, type=int),
    _O("max_upload_mb", ("--max-upload-mb",), "largest accepted photo upload, in MB", default=10.0, type=float,
       metavar="MB"),
    _O("allowed_hosts", ("--allowed-hosts",), "comma-separated Host names requests may carry, * for any (against "
       "DNS rebinding); default: the --host address and localhost", metavar="NAMES"),
    _O("max_pixels", ("--max-pixels",), "largest photo searched, in pixels (checked from its header before "
       "decoding)", default=40_000_000, type=positive_int, metavar="N"),
    _O("memory_mb", ("--memory-mb",), "decoded photos in flight together, in MB; past it requests wait, then get "
       "503", default=640, type=positive_int, metavar="MB"),
    _O("queue", ("--queue",), "photo searches in the server at once; more get 503 with Retry-After", default=8,
       type=positive_int, metavar="N"),
    # -------------------------------------------------------------------------------- scale stages
    _O("manifest_shard_rows", ("--shard-rows",), "manifest rows per shard", default=50_000, type=positive_int,
       metavar="N", dest="shard_rows"),
    _O("embed_shard_rows", ("--shard-rows",), "vectors per output shard (what a kill can lose)", default=4096,
       type=positive_int, metavar="N", dest="shard_rows"),
    _O("engine", ("--engine",), "local: one process; ray: a Ray cluster (the [scale] extra)", default="local",
       choices=ENGINES),
    _O("address", ("--address",), "Ray cluster address (auto: the running cluster); default: start one",
       metavar="ADDRESS"),
    _O("actors", ("--actors",), "Ray: actors, one model or index each", default=1, type=positive_int, metavar="N"),
    _O("cpus_per_actor", ("--cpus-per-actor",), "Ray: CPUs reserved per actor (fractions allowed)", default=1.0,
       type=float, metavar="N"),
    _O("gpus_per_actor", ("--gpus-per-actor",), "Ray: GPUs per actor where GPUs exist", default=0.0, type=float,
       metavar="N"),
    _O("factory", ("--factory",), "faiss index factory string (e.g. IVF4096,PQ32); auto: from the count and "
       "--memory", default="auto"),
    _O("memory", ("--memory",), "memory budget of the index (e.g. 4G, 512M)", default="4G", metavar="SIZE"),
    _O("nprobe", ("--nprobe",), "inverted lists visited per query; default: index.json's", type=positive_int,
       metavar="N"),
    _O("rerank", ("--rerank",), "candidates re-ranked with exact distances; default: index.json's", type=int,
       metavar="N"),
    # -------------------------------------------------------------------------------- train
    _O("train_arch", ("--arch",), "backbone name (see `fashion backbones`)", default=DEFAULT_BACKBONE,
       metavar="NAME", dest="arch"),
    _O("weights", ("--weights",), "local backbone weights (state dict)", metavar="FILE"),
    _O("train_size", ("--size",), "image size of stages 1 and 2", default=160, type=image_size, metavar="PX",
       dest="size"),
    _O("final_size", ("--final-size",), "image size of stage 3", default=224, type=image_size, metavar="PX"),
    _O("epochs", ("--epochs",), "epochs per stage: N or N1,N2,N3", default=(2, 3, 2), type=epochs, metavar="N"),
    _O("lr", ("--lr",), "peak learning rate; default: the LR finder's suggestion", type=float),
    _O("lr_find_iters", ("--lr-find-iters",), "batches per LR-finder run (too few give a curve too short to read: "
       "the fallback LR is used)", default=100, type=positive_int, metavar="N"),
    _O("fallback_lr", ("--fallback-lr",), "peak LR of a frozen stage whose LR-finder curve is unfit (half of it "
       "once unfrozen)", default=2e-3, type=float, metavar="LR"),
    _O("train_batch_size", ("--batch-size",), "images per training step", default=32, type=positive_int,
       metavar="N", dest="batch_size"),
    _O("crop", ("--crop",), "crop to the DeepFashion bounding box", default="none", choices=CROPS),
    _O("early_stopping", ("--early-stopping",), "stop a stage after this many epochs without a better validation "
       "loss", type=positive_int, metavar="PATIENCE"),
    _O("train_seed", ("--seed",), "seed of the held-out split, weights init and shuffling", default=42, type=int,
       dest="seed"),
    _O("train_workers", ("--workers",), "DataLoader workers (0: decode in the training process)", default=0,
       type=int, metavar="N", dest="num_workers"),
    _O("resume", ("--resume",), "continue a killed run from its last finished stage", default=False,
       action="store_true"),
    _O("overwrite", ("--overwrite",), "replace a finished run in --output_dir (the old one stays until the new one "
       "is complete)", default=False, action="store_true"),
    _O("leak_check", ("--no-leak-check",), "skip counting test photos with a near-copy in train/valid (and the "
       "accuracy without them)", default=True, action="store_false"),
    # training levers (#15): fields of TrainConfig, in fashion.training.config.LEVERS order
    _O("freeze_early", ("--freeze-early",), "keep the body's first N layers (stem, its BN, block stages) frozen "
       "in every stage: no backward pass through the high-resolution layers (about 2x faster on CPU)", default=0,
       type=int, metavar="N"),
    _O("label_smoothing", ("--label-smoothing",), "label-smoothing cross entropy (0: plain cross entropy)",
       default=0.0, type=float, metavar="EPS"),
    _O("mix", ("--mix",), "MixUp or CutMix of the training batches", default="none", choices=MIXES),
    _O("mix_alpha", ("--mix-alpha",), "Beta parameter of --mix (default: fastai's, 0.4 MixUp, 1.0 CutMix)",
       type=float, metavar="ALPHA"),
    _O("augment", ("--augment",), "training augmentation: fastai aug_transforms, or stronger lighting/warp/zoom/"
       "rotation", default="default", choices=AUGMENTS),
    _O("min_scale", ("--min-scale",), "random resized crops keeping at least this share of the image (1: off)",
       default=1.0, type=float, metavar="SHARE"),
    _O("recompose", ("--recompose",), "share of the training photos recomposed each epoch (at most: one with no garment-free border passes unchanged): the garment on another "
       "photo's background, or the photo smaller in the frame (0: off)", default=0.0, type=float, metavar="SHARE"),
    _O("ema", ("--ema",), "validate and keep an exponential moving average of the weights (decay per batch, "
       "e.g. 0.99)", type=float, metavar="DECAY"),
    _O("tta", ("--tta",), "also report test-time-augmented accuracy (valid and test)", default=False,
       action="store_true"),
    _O("hard_check", ("--no-hard-check",), "skip all three perturbed-photo checks (strongly perturbed photos, "
       "the garment on another background, smaller in the frame): three fewer passes over the test and valid photos", default=True, action="store_false"),
    _O("ensemble", ("--ensemble",), "more backbones trained the same way and exported with --arch as one model",
       default=(), type=comma_separated, metavar="ARCH[,ARCH]"),
    _O("clean_labels", ("--clean-labels",), "drop the training photos cleanlab flags (out-of-fold predictions on "
       "frozen features), or keep them sampled at their label-quality score (weight)", default="none",
       choices=CLEAN_LABELS),
    _O("metric_loss", ("--metric-loss",), "add a pytorch-metric-learning loss on the embedding (the head's "
       "penultimate features)", default="none", choices=METRIC_LOSSES),
    _O("metric_weight", ("--metric-weight",), "weight of --metric-loss beside the classification loss",
       default=1.0, type=float, metavar="W"),
    _O("distill", ("--distill",), "trained model directories (same classes) whose averaged softened predictions "
       "the training loss also follows: knowledge distillation", default=(), type=comma_separated, metavar="DIR[,DIR]"),
    _O("distill_weight", ("--distill-weight",), "share of the training loss that is --distill's (the rest is the "
       "classification loss)", default=0.7, type=float, metavar="W"),
)


def default(name: str):
    """The default of the option called ``name`` (what a config dataclass's field is set to)."""
    return OPTIONS[name].default
