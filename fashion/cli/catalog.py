"""``fashion add``, ``fashion remove`` and ``fashion versions``: change a finished run without a rebuild, each
change a new sealed version (:mod:`fashion.catalog`)."""

from __future__ import annotations

from .common import add_options, add_parser


def run_add(args) -> int:
    """``fashion add``: embed only the new photos and update the run in one step."""
    from ..catalog.add import add

    print(add(args.run_dir, args.sources, batch_size=args.batch_size, num_workers=args.num_workers,
              metadata=args.metadata, wait=args.wait, keep=args.keep).summary())
    return 0


def run_remove(args) -> int:
    """``fashion remove``: take items out of the run in one step."""
    from ..catalog.remove import remove

    print(remove(args.run_dir, paths=args.paths, ids=args.ids or (), filters=args.filter or (), wait=args.wait,
                 keep=args.keep).summary())
    return 0


def run_versions(args) -> int:
    """``fashion versions``: the run's versions (number, date, change, counts); ``--prune N`` first."""
    from ..catalog import versions

    if args.prune is not None:
        with versions.writer(args.run_dir, wait=args.wait):
            gone = versions.prune(args.run_dir, args.prune)
        print(f"{args.run_dir}: pruned {len(gone)} old versions")
    print(versions.HEADER)
    for version in versions.history(args.run_dir):
        print(version.line())
    return 0


def register(sub) -> None:
    """Add ``add`` and ``remove`` to the sub-command parsers ``sub``."""
    p = add_parser(sub, "add", "add photos to a finished run (only they are embedded)",
                   "Embed the new photos of each SOURCE with RUN_DIR's embedder, skip those already in the run\n"
                   "(same content), and update its index, neighbour lists and metrics as a rebuild would.")
    add_options(p, "serve_run_dir", "sources", "batch_size", "num_workers", "metadata", "wait", "keep")
    p.set_defaults(func=run_add)

    p = add_parser(sub, "remove", "remove items from a finished run",
                   "Take items (by file or relpath, --id or --filter) out of RUN_DIR's index, neighbour lists\n"
                   "and metrics; their ids are not reused.")
    add_options(p, "serve_run_dir", "remove_paths", "remove_ids", "remove_filter", "wait", "keep")
    p.set_defaults(func=run_remove)

    p = add_parser(sub, "versions", "list a run's versions (each add, remove or update made one); prune old ones",
                   "List RUN_DIR's current version (*) and the earlier ones kept in RUN_DIR.versions/:\n"
                   "number, when, the change, live items and gallery size. Each is an ordinary run.")
    add_options(p, "serve_run_dir", "prune", "wait")
    p.set_defaults(func=run_versions)
