"""Where `fashion serve`'s start-up goes: each step of SimilarityService.open timed in turn, one process.

    python benchmarks/serve_startup.py RUN_DIR

Prints the seconds of: the server's imports (fastapi, uvicorn), fashion's modules, open_run (manifest,
item table, embeddings map), the saved index (with its self-check), the embedder (imports and build),
the service's item arrays, and the warm-up (``SimilarityService.warm``: the network at every batch size
it may get, as ``open`` runs it); with the 1-minute load average.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    run_dir = (argv or sys.argv[1:])[0]
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
    run = open_run(run_dir, load_index=False)
    mark("open_run")
    run.index = load(run)
    mark("index")
    embedder = embedder_for(run.info, run.path)  # the saved OpenVINO network of an openvino run (no torch)
    mark("embedder")
    service = SimilarityService(run, embedder)
    mark("service tables")
    service.warm()
    mark("warm passes")
    steps = "  ".join(f"{name} {t - marks[i][1]:.2f}" for i, (name, t) in enumerate(marks[1:]))
    print(f"load {os.getloadavg()[0]:.1f}: {steps}  total {marks[-1][1] - marks[0][1]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
