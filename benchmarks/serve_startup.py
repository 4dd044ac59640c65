"""Where `fashion serve`'s start-up goes: each step of SimilarityService.open timed in turn, one process.

    python benchmarks/serve_startup.py RUN_DIR                 # this code: an OpenVINO run from its saved network
    python benchmarks/serve_startup.py RUN_DIR --torch         # the embedder rebuilt with torch and converted (before)
    python benchmarks/serve_startup.py RUN_DIR --compare 2     # both, alternated, each in a fresh process, 2 pairs
    python benchmarks/serve_startup.py RUN_DIR --no-item-cache # the item table decoded from parquet (before)
    python benchmarks/serve_startup.py RUN_DIR --compare-items 3   # parquet vs the mapped copy, alternated, 3 pairs

Prints the seconds of: the server's imports (fastapi, uvicorn), fashion's modules, open_run (manifest,
item table: from its memory-mapped copy as the service reads it, fashion.run.itemcache, written by the
first start; embeddings map; the stored lists' cache, fashion.run.listcache), the saved index (with its self-check), the embedder (imports and build;
with the saved network: compiling it, from OpenVINO's blob cache after the first start), the service's
item arrays, and the warm-up (``SimilarityService.warm``: the network at every batch size it may get;
`fashion serve` runs it before it listens, while the index loads in its thread, so its ready time lies
between the total less the index step and the total; "ready before warm" is the total less the warm-up,
what /healthz waited for before it was made to wait for the warm-up);
the process's RSS when done, whether torch was imported, and the 1-minute load average.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))


def measure(run_dir: str, torch: bool, item_cache: bool = True) -> str:
    marks = [("start", time.perf_counter())]

    def mark(name):
        marks.append((name, time.perf_counter()))

    import fastapi  # noqa: F401  the server's imports
    import uvicorn  # noqa: F401
    mark("fastapi+uvicorn")
    from fashion.run.index import load
    from fashion.run.reader import open_run
    from fashion.service import SimilarityService
    from fashion.service.loading import embedder_for
    mark("fashion modules")
    run = open_run(run_dir, load_index=False, cache_items=item_cache, stored_lists=True)  # as the service opens it
    mark("open_run")
    run.index = load(run)
    mark("index")
    embedder = embedder_for(run.info, None if torch else run.path)  # run.path: the saved OpenVINO network
    mark("embedder")
    service = SimilarityService(run, embedder)
    mark("service tables")
    service.warm()
    mark("warm passes")
    import psutil

    steps = "  ".join(f"{name} {t - marks[i][1]:.2f}" for i, (name, t) in enumerate(marks[1:]))
    ready = marks[-2][1] - marks[0][1]
    return (f"{'torch embedder' if torch else 'saved network '}{'' if item_cache else ', items from parquet'}  load {os.getloadavg()[0]:.1f}: {steps}  "
            f"total {marks[-1][1] - marks[0][1]:.2f} s, ready before warm {ready:.2f} s, "
            f"RSS {psutil.Process().memory_info().rss / 2**20:.0f} MB, torch imported: {'torch' in sys.modules}")


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    run_dir = args[0]
    for option, flags in (("--compare", (["--torch"], [])), ("--compare-items", (["--no-item-cache"], []))):
        if option not in args:
            continue
        for _ in range(int(args[args.index(option) + 1])):
            for flag in flags:
                done = subprocess.run([sys.executable, __file__, run_dir, *flag], capture_output=True, text=True)
                print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr[-2000:],
                      flush=True)
        return 0
    print(measure(run_dir, "--torch" in args, "--no-item-cache" not in args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
