"""``fashion add`` and ``fashion remove``: change a finished run without a rebuild (:mod:`fashion.catalog`)."""

from __future__ import annotations

from .common import add_options, add_parser


def run_add(args) -> int:
    """``fashion add``: embed only the new photos and update the run in one step."""
    from ..catalog.add import add

    print(add(args.run_dir, args.sources, batch_size=args.batch_size, num_workers=args.num_workers).summary())
    return 0


def run_remove(args) -> int:
    """``fashion remove``: take items out of the run in one step."""
    from ..catalog.remove import remove

    print(remove(args.run_dir, paths=args.paths, ids=args.ids or (), filters=args.filter or ()).summary())
    return 0


def register(sub) -> None:
    """Add ``add`` and ``remove`` to the sub-command parsers ``sub``."""
    p = add_parser(sub, "add", "add photos to a finished run (only they are embedded)",
                   "Embed the new photos of each SOURCE with RUN_DIR's embedder, skip those already in the run\n"
                   "(same content), and update its index, neighbour lists and metrics as a rebuild would.")
    add_options(p, "serve_run_dir", "sources", "batch_size", "num_workers")
    p.set_defaults(func=run_add)

    p = add_parser(sub, "remove", "remove items from a finished run",
                   "Take items (by file or relpath, --id or --filter) out of RUN_DIR's index, neighbour lists\n"
                   "and metrics; their ids are not reused.")
    add_options(p, "serve_run_dir", "remove_paths", "remove_ids", "remove_filter")
    p.set_defaults(func=run_remove)
