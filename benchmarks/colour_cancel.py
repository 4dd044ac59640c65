"""How long ``fashion add`` takes to stop the colour work it started beside the network when the network fails
(:meth:`fashion.pipeline.items.Started.cancel`), against the time that work takes when left to finish.

    python benchmarks/colour_cancel.py --copies 120 --after 0.05 3 10

The colour stage runs as ``fashion add`` starts it (one pool worker, ``apart``: a process of its own even for
one worker), on the bundled sample's photos repeated ``--copies`` times (24 photos each, no colour cache, so
each copy is coloured again), with the process pool from any size (``pool_above=0``). For each ``--after``
second it is cancelled that long after its start; printed: how long ``cancel`` took to return, the error the
stage ended with and the worker processes left. Then one uncancelled run, timed to its end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def colour_apart(items, ok, stop=None):
    """The colour stage as ``fashion add`` runs it beside the network (``stop``: the event ``cancel`` sets),
    its pool from any size."""
    from fashion.colour import stage

    table = stage.add_colour_columns(items, cache_dir=None, workers=1, pool_above=0, apart=True, stop=stop)
    return {column: table[column] for column in stage.COLUMNS}


colour_apart.reads_ok = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=120, help="times the 24 sample photos are listed")
    parser.add_argument("--after", type=float, nargs="+", default=[0.05, 3.0, 10.0],
                        help="seconds after the start at which each run is cancelled")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    import pandas as pd
    from factories import make_photo_folder

    from fashion.pipeline.items import start_item_columns

    root = make_photo_folder(Path(tempfile.mkdtemp()) / "photos", n=24, corrupt=False)
    items = pd.DataFrame({"path": sorted(str(p) for p in root.rglob("*.jpg")) * args.copies})
    print(f"{len(items)} photos, colour stage in one pool worker", flush=True)
    for after in args.after:
        started = start_item_columns(items, (colour_apart,))
        time.sleep(after)
        t0 = time.perf_counter()
        started.cancel()
        print(f"cancelled {after:.2f} s after the start: cancel returned in {time.perf_counter() - t0:.2f} s; "
              f"the stage ended with {type(started.error).__name__}; worker processes left: "
              f"{len(multiprocessing.active_children())}", flush=True)
    started, t0 = start_item_columns(items, (colour_apart,)), time.perf_counter()
    started.finish([True] * len(items))
    print(f"left to finish: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
