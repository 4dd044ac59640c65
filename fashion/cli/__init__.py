"""The ``fashion`` command line: argv in, library calls out.

Every sub-command parses its options into the library's config dataclasses and calls one library
function; nothing here does real work. Each option is defined once, in :mod:`fashion.options`; the
sub-commands come in groups, one module each: :mod:`.train` (train, summary, backbones),
:mod:`.neighbors` (neighbors, duplicates), :mod:`.serve` (search, serve), :mod:`.scale` (manifest,
embed, index, knn), :mod:`.catalog` (add, remove, versions), :mod:`.metadata` (update); :mod:`.common` holds what they
share. ``measure_sim.py`` is the ``neighbors``
sub-command under the original study's name.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from .common import Formatter, add_verbosity, dispatch


def build_parser() -> argparse.ArgumentParser:
    """The ``fashion`` parser with every sub-command."""
    from . import catalog, metadata, neighbors, scale, serve, train

    parser = argparse.ArgumentParser(prog="fashion", formatter_class=Formatter,
                                     description="Clothing-category transfer learning and similar-clothes search.")
    parser.add_argument("--version", action="version", version=f"fashion {__version__}")
    add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (train, neighbors, serve, scale, catalog, metadata):
        group.register(sub)
    for subparser in sub.choices.values():
        add_verbosity(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fashion`` console script."""
    return dispatch(build_parser(), argv)


def measure_sim_parser() -> argparse.ArgumentParser:
    """``measure_sim.py``'s parser: the ``neighbors`` options at top level."""
    from .neighbors import add_neighbors_arguments, run_neighbors

    parser = argparse.ArgumentParser(prog="measure_sim.py", formatter_class=Formatter,
                                     description="Similar-clothes search: embed every image, find its top-K "
                                                 "neighbours, write grids, a neighbours table, metrics and a gallery.")
    add_verbosity(parser, top=True)
    add_neighbors_arguments(parser)
    parser.set_defaults(func=run_neighbors)
    return parser


def measure_sim_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``measure_sim.py`` (same as ``fashion neighbors``)."""
    return dispatch(measure_sim_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
