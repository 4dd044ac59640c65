"""What every sub-command shares: the help formatter, options added from :mod:`fashion.options`, the
mapping of parsed options onto config dataclasses, logging set-up and the one-line error boundary.

Light on purpose (argparse and logging only): ``import fashion.cli`` must not load numpy or torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from typing import Callable, Sequence

from ..errors import FashionError


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions; append "(default: X)" where a default says something (not
    None, False, a flag's implied value, or a help text that already names its default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default in (None, False, argparse.SUPPRESS) or "default" in text or action.nargs == 0
                or action.option_strings == [] and action.nargs in ("?", "*")):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        return f"{text} (default: {shown})".strip()


def add_options(parser, *names: str, optional: tuple[str, ...] = (), **helps: str) -> None:
    """Add the options ``names`` (keys of :data:`fashion.options.OPTIONS`) to ``parser``; ``optional``:
    required options this sub-command can do without; ``helps``: a sub-command's own wording of an
    option's help, by name (never its default, type or choices)."""
    from ..options import OPTIONS

    for name in names:
        OPTIONS[name].add(parser, help=helps.get(name), required=False if name in optional else None)


def add_verbosity(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-v/-q on a parser; sub-commands leave them unset unless given, so ``fashion -v train`` and
    ``fashion train -v`` both work."""
    from ..options import OPTIONS

    for name in ("verbose", "quiet"):
        OPTIONS[name].add(parser, suppress=not top)


def add_parser(sub, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command's parser with the shared formatter."""
    return sub.add_parser(name, formatter_class=Formatter, help=help, description=description)


def fields_of(config_class, args) -> dict:
    """The parsed options that are fields of ``config_class`` (the options are named after the fields)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}


def load_items(dataset, fmt: str, skip_missing: bool):
    """The item table of ``dataset`` (None: the bundled sample)."""
    from .. import datasets, sample

    root = dataset if dataset is not None else sample.sample_root()
    return datasets.load(root, format=fmt, missing="skip" if skip_missing else "error")


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log level from -v/-q; third-party chatter and deprecation notices off at the default level."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbose < 1:  # third-party chatter is noise at the default level
        # faiss' loader reports at INFO which CPU build it tried, one line reading like a failure
        for name in ("PIL", "matplotlib", "timm", "fsspec", "urllib3", "httpx", "faiss", "faiss.loader", "openvino"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # libraries' deprecation notices (torch.jit.script, ...) are for their callers' developers
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run the chosen command; user errors become one line and status 2."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
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
