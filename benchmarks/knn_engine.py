#!/usr/bin/env python
"""The exact kernel's two engines side by side by number of queries (fashion.neighbors.kernel).

``topk_scores`` runs on torch (GEMM + topk) or numpy (BLAS + argpartition); unnamed, the engine is
chosen by the number of queries (``default_engine``: torch from ``TORCH_FROM_QUERIES`` on). For each
query count, both engines search the same unit rows (n × d float32, cosine, k = 10 + the exact index's
tie margin), best of ``--repeat`` runs each, alternating, with torch imported up front (its import is
not timed); the last column is the engine the rule picks.

  python benchmarks/knn_engine.py                      # n = 20,000, d = 512, q in 1 .. 1024
  python benchmarks/knn_engine.py --n 100000 --queries 1 8 256
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))  # this checkout's fashion


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="data rows")
    p.add_argument("--d", type=int, default=512, help="dimension")
    p.add_argument("--queries", type=int, nargs="+", default=[1, 8, 64, 256, 1024], help="query counts")
    p.add_argument("--repeat", type=int, default=3, help="runs per engine and query count (best kept)")
    args = p.parse_args(argv)

    import torch

    from fashion.neighbors.exact import TIE_MARGIN
    from fashion.neighbors.kernel import TORCH_FROM_QUERIES, default_engine, topk_scores

    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.d), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    k = 10 + TIE_MARGIN
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}; n={args.n} d={args.d} k={k}, "
          f"best of {args.repeat}; rule: torch from {TORCH_FROM_QUERIES} queries")
    print(f"{'queries':>8} {'torch ms':>10} {'numpy ms':>10} {'numpy/torch':>12} {'rule':>6}")
    for q in args.queries:
        Q = np.ascontiguousarray(X[:q])
        topk_scores(Q, X, k, "cosine", engine="torch")  # warm-up: thread pools, buffers
        topk_scores(Q, X, k, "cosine", engine="numpy")
        times = {}
        for _ in range(args.repeat):  # alternating: a burst of load hits both engines
            for engine in ("torch", "numpy"):
                t0 = time.perf_counter()
                topk_scores(Q, X, k, "cosine", engine=engine)
                times[engine] = min(times.get(engine, float("inf")), time.perf_counter() - t0)
        same = np.array_equal(topk_scores(Q, X, k, "cosine", engine="torch")[1],
                              topk_scores(Q, X, k, "cosine", engine="numpy")[1])
        print(f"{q:>8} {times['torch'] * 1e3:>10.2f} {times['numpy'] * 1e3:>10.2f} "
              f"{times['numpy'] / times['torch']:>12.2f} {default_engine(q):>6}"
              + ("" if same else "  (candidates differ: ties)"))


if __name__ == "__main__":
    main()
