"""``fashion search`` and ``fashion serve``: a finished run answers new photos."""

from __future__ import annotations

import sys

from ..errors import ConfigError
from .common import add_options, add_parser


def run_search(args) -> int:
    """``fashion search``: the top-K of each photo, printed (or as JSON) and drawn."""
    import json

    from .. import search

    if not args.photos:
        if not args.text:
            raise ConfigError("give PHOTOs to search by, or --text WORDS")
        return _print_items(search.search_text(args.text, args.run, k=args.k, filters=args.filters), args.json)
    results = search.search(args.photos, args.run, k=args.k, output_dir=args.output_dir, grids=args.grids,
                            filters=args.filters, text=args.text, colour=args.colour)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    else:
        for result in results:
            print(result.summary())
    if not any(r.ok for r in results):
        print(f"fashion search: error: none of the {len(results)} photos could be searched", file=sys.stderr)
        return 1
    return 0


def _print_items(page, as_json: bool) -> int:
    """The items of a words-only search, best first, and the words nothing matched."""
    import json
    from dataclasses import asdict

    from ..names import display

    if as_json:
        print(json.dumps(asdict(page), indent=1, default=str))
        return 0
    print(f"{page.total} items match {' and '.join(page.filters) or 'everything'}"
          + (f"; ignored words: {', '.join(page.ignored)}" if page.ignored else ""))
    for n, item in enumerate(page.items, 1):
        print(f"  {n:2d}. {display(item.relpath)}  [{display(item.label)}]  id {item.id}")
    return 0


def run_serve(args) -> int:
    """``fashion serve``: the HTTP API and web page of one run."""
    from ..server import serve
    from ..service.budget import Limits

    try:
        limits = Limits(max_pixels=args.max_pixels, memory_mb=args.memory_mb, queue=args.queue)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from ..server.write import read_token

    hosts = tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip()) if args.allowed_hosts else None
    serve(args.run_dir, host=args.host, port=args.port, max_upload=int(args.max_upload_mb * 1024 * 1024),
          allowed_hosts=hosts, limits=limits, write_token=read_token(args.write_token_file))
    return 0


def register(sub) -> None:
    """Add ``search`` and ``serve`` to the sub-command parsers ``sub``."""
    p = add_parser(sub, "search", "find the clothes most similar to new photos in a finished run",
                   "Embed PHOTOs with a run's model, search the run's saved index, write a grid per\n"
                   "photo and print the top matches.")
    add_options(p, "search_photos", "run", "k", "output_dir", "json", "search_grids", "filter", "text", "colour",
                optional=("output_dir",), k="matches per photo (with --text alone: items shown)",
                output_dir="where the grids go; default: RUN/search")
    p.set_defaults(func=run_search)

    p = add_parser(sub, "serve", "serve a finished run: search by photo, browse neighbours (HTTP API + web page)",
                   "Load RUN_DIR once and serve the similar-clothes API and its web page.\n"
                   "Open http://HOST:PORT/ in a browser; the API is described at /docs.")
    add_options(p, "serve_run_dir", "host", "port", "max_upload_mb", "allowed_hosts", "max_pixels", "memory_mb",
                "queue", "write_token_file")
    p.set_defaults(func=run_serve)
