"""``fashion update RUN --metadata FILE``: shop metadata onto a finished run, nothing embedded;
``fashion upgrade RUN``: a run made by an earlier version brought up to date."""

from __future__ import annotations

from .common import add_options, add_parser


def run_update(args) -> int:
    """``fashion update``: the file's columns changed or added in a new sealed version of the run."""
    from ..catalog.metadata import update_run

    done = update_run(args.run_dir, args.metadata, wait=args.wait, keep=args.keep)
    print(f"{args.run_dir}: {len(done['columns'])} columns ({', '.join(done['columns'])}) from {args.metadata}, "
          f"{done['matched']} of {done['items']} items named; version {done['version']}")
    return 0


def run_upgrade(args) -> int:
    """``fashion upgrade``: the older layout converted, or missing item-table columns (colour) computed."""
    from ..catalog.upgrade import upgrade_run

    print(upgrade_run(args.run_dir, wait=args.wait, keep=args.keep))
    return 0


def register(sub) -> None:
    """Add ``update`` and ``upgrade`` to the sub-command parsers ``sub``."""
    p = add_parser(sub, "update", "change or add shop metadata columns of a finished run (nothing re-embedded)",
                   "Join a CSV or parquet file of metadata (brand, price, in_stock, ...) onto RUN's items on its\n"
                   "relpath or id column and commit a new sealed version of the run; the columns work as\n"
                   "filters (fashion search --filter, the API's filter=) and as facets on the page.")
    add_options(p, "serve_run_dir", "update_metadata", "wait", "keep")
    p.set_defaults(func=run_update)

    p = add_parser(sub, "upgrade", "bring a run made by an earlier version of fashion up to date (nothing re-embedded)",
                   "Convert a run of the older layout (items.csv, neighbors.csv) to the current run format in\n"
                   "place, or add the item-table columns a run predates (colour, colour_2, colour_hex,\n"
                   "colour_share: computed from its photos) in a new sealed version; a current run is left alone.")
    add_options(p, "serve_run_dir", "wait", "keep")
    p.set_defaults(func=run_upgrade)
