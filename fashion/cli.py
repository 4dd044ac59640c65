"""The ``fashion`` command line: argv in, library calls out.

Every sub-command parses its options into the library's config dataclasses and calls one library
function; nothing here does real work. ``measure_sim.py`` is the ``neighbors`` sub-command under the
original study's name.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Callable, Sequence

from . import __version__
from .errors import FashionError

log = logging.getLogger("fashion")

class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the hand-wrapped descriptions."""


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
    """``"3"`` → (3, 3, 3); ``"1,2,1"`` → (1, 2, 1)."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N1,N2,N3, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or any(p < 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected N or N1,N2,N3 (one per stage, >= 0), got {text!r}")
    return parts


# --------------------------------------------------------------------------------------------- parsers


def add_neighbors_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``fashion neighbors`` / ``measure_sim.py`` (DESIGN.md's contract)."""
    p.add_argument("-i", "--input", default=None, metavar="DATASET",
                   help="dataset root (DeepFashion Category, In-shop or image folders); default: the bundled sample")
    p.add_argument("--output_dir", "--output-dir", "--ouput_dir", dest="output_dir", required=True, metavar="DIR",
                   help="where the run's files go (--ouput_dir, the original study's spelling, works too)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="trained model directory from `fashion train`; default: the pretrained backbone")
    p.add_argument("--arch", default="efficientnet_lite0", help="backbone when no --model is given")
    p.add_argument("-k", "--k", type=_positive_int, default=10, help="neighbours per query")
    from .embedding import RUNTIMES  # numpy + Pillow only, like the next one
    from .neighbors import INDEXES  # numpy only: the registry is the one list of backends

    p.add_argument("--index", default="auto", choices=INDEXES, help="nearest-neighbour backend")
    p.add_argument("--metric", default="cosine", choices=("cosine", "euclidean"))
    p.add_argument("--size", type=_image_size, default=None, help="image size; default: the model's")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--format", default="auto", choices=("auto", "deepfashion", "inshop", "folder"))
    p.add_argument("--split", default=None, help="use only this split (train, valid, test, query, gallery)")
    p.add_argument("--query-split", default=None,
                   help="queries from this split, gallery from the others; default: all-pairs (In-shop: query vs gallery)")
    p.add_argument("--limit", type=_positive_int, default=None, help="use a seeded random subset of N items (row order kept)")
    p.add_argument("--grids", type=int, default=12, help="how many neighbour grids to draw")
    p.add_argument("--layer", default="auto", choices=("auto", "body", "head"),
                   help="embedding layer: pooled body features, or the trained head's penultimate features "
                        "(auto: head with --model, which retrieves better; body otherwise)")
    p.add_argument("--workers", dest="num_workers", type=int, default=None, help="DataLoader workers")
    p.add_argument("--runtime", default="auto", choices=RUNTIMES,
                   help="embedding runtime (auto: OpenVINO when installed and there are enough images, else torch)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="embedding cache, shareable between runs of one model; default: OUTPUT_DIR/cache")


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
    p.add_argument("dataset", nargs="?", default=None, metavar="DATASET", help="dataset root; default: the bundled sample")
    p.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True, metavar="DIR")
    p.add_argument("--arch", default="efficientnet_lite0", help="backbone name (see `fashion backbones`)")
    p.add_argument("--weights", default=None, metavar="FILE", help="local backbone weights (state dict)")
    p.add_argument("--format", default="auto", choices=("auto", "deepfashion", "inshop", "folder"))
    p.add_argument("--size", type=_image_size, default=160, help="image size of stages 1 and 2")
    p.add_argument("--final-size", type=_image_size, default=224, help="image size of stage 3")
    p.add_argument("--epochs", type=_epochs, default=(2, 3, 2), help="epochs per stage: N or N1,N2,N3")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate; default: the LR finder's suggestion")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--crop", default="none", choices=("none", "bbox"), help="crop to the DeepFashion bounding box")
    p.add_argument("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
                   help="stop a stage after this many epochs without a better validation loss")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", dest="num_workers", type=int, default=None, help="DataLoader workers")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last finished stage")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --output_dir (the old one stays until the new one is complete)")
    p.add_argument("--skip-missing", action="store_true", help="skip annotated images that do not exist")
    p.set_defaults(func=_run_train)


def _add_search(sub) -> None:
    p = sub.add_parser("search", formatter_class=_Formatter,
                       help="find the clothes most similar to new photos in a finished run",
                       description="Embed PHOTOs with a run's model, search the run's saved index, write a grid per\n"
                                   "photo and print the top matches.")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files, or folders of them")
    p.add_argument("--run", required=True, metavar="DIR", help="output directory of `fashion neighbors` / measure_sim.py")
    p.add_argument("-k", "--k", type=_positive_int, default=10)
    p.add_argument("--output_dir", "--output-dir", dest="output_dir", default=None, metavar="DIR",
                   help="where the grids go; default: RUN/search")
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
    p.set_defaults(func=_run_serve)


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", formatter_class=_Formatter,
                       help="read a dataset and print its counts per split and label")
    p.add_argument("dataset", nargs="?", default=None, metavar="DATASET", help="dataset root; default: the bundled sample")
    p.add_argument("--format", default="auto", choices=("auto", "deepfashion", "inshop", "folder"))
    p.add_argument("--skip-missing", action="store_true", help="skip annotated images that do not exist")
    p.set_defaults(func=_run_summary)


def _add_backbones(sub) -> None:
    p = sub.add_parser("backbones", formatter_class=_Formatter, help="list the registered backbones")
    p.set_defaults(func=_run_backbones)


def _add_make_sample(sub) -> None:
    p = sub.add_parser("make-sample", formatter_class=_Formatter,
                       help="rebuild the bundled sample from clothing-dataset-small")
    p.add_argument("source", metavar="SRC", help="clothing-dataset-small root (train/validation/test folders)")
    p.add_argument("dest", metavar="DST", help="where to write the DeepFashion-layout sample")
    p.add_argument("--per-class", type=_positive_int, default=24)
    p.add_argument("--long-side", type=_positive_int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_make_sample)


def build_parser() -> argparse.ArgumentParser:
    """The ``fashion`` parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="fashion", formatter_class=_Formatter,
                                     description="Clothing-category transfer learning and similar-clothes search.")
    parser.add_argument("--version", action="version", version=f"fashion {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_train, _add_neighbors, _add_search, _add_serve, _add_summary, _add_backbones,
                _add_make_sample):
        add(sub)
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
    return 0


def _run_make_sample(args) -> int:
    from . import sample

    dest = sample.build_sample(args.source, args.dest, per_class=args.per_class,
                               long_side=args.long_side, seed=args.seed)
    print(dest)
    return 0


def _run_train(args) -> int:
    from . import training

    items = _load_items(args.dataset, args.format, args.skip_missing)
    config = training.TrainConfig(
        arch=args.arch, weights=args.weights, size=args.size, final_size=args.final_size,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, crop=args.crop,
        early_stopping=args.early_stopping, seed=args.seed,
        **({"num_workers": args.num_workers} if args.num_workers is not None else {}),
    )
    result = training.train(items, config, args.output_dir, resume=args.resume, overwrite=args.overwrite)
    print(result.summary() if hasattr(result, "summary") else result)
    return 0


def neighbors_config(args):
    """Map parsed ``neighbors`` options onto :class:`fashion.retrieval.MeasureConfig`."""
    from .retrieval import MeasureConfig

    fields = ("input", "output_dir", "model", "arch", "k", "index", "metric", "size", "batch_size", "format",
              "split", "query_split", "limit", "grids", "layer", "cache_dir", "runtime")
    kwargs = {name: getattr(args, name) for name in fields}
    if args.num_workers is not None:
        kwargs["num_workers"] = args.num_workers
    return MeasureConfig(**kwargs)


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

    serve(args.run_dir, host=args.host, port=args.port, max_upload=int(args.max_upload_mb * 1024 * 1024))
    return 0


# ------------------------------------------------------------------------------------------ main


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbose < 1:  # third-party chatter is noise at the default level
        for name in ("PIL", "matplotlib", "timm", "fsspec", "urllib3", "httpx"):
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
    except (FashionError, ValueError, TypeError, FileNotFoundError) as exc:
        # One line, no traceback: the library's boundary errors name the file, line or value at fault.
        # -vv keeps the traceback for debugging.
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
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    add_neighbors_arguments(parser)
    parser.set_defaults(func=_run_neighbors)
    return parser


def measure_sim_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``measure_sim.py`` (same as ``fashion neighbors``)."""
    return _dispatch(measure_sim_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
