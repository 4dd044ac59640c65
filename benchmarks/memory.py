"""Peak memory of all-pairs search and of the embedding path (issue 5, item 4).

    python benchmarks/memory.py                        # search n=200000 d=1280; embed n=1000 3000 9000
    python benchmarks/memory.py --case search --n 200000 --d 1280 --queries all   # the whole all-pairs run
    python benchmarks/memory.py --case embed --embed-n 1000 3000 9000 50000 200000
    python benchmarks/memory.py --quick                # tiny sizes: a smoke run of a few seconds

Every measurement runs in a fresh subprocess and reports ``ru_maxrss`` (peak resident set size) next to
a theoretical bound made of what the algorithm must hold, so the table says at a glance whether
anything of size n × n (or another copy of the data) was built:

- **search** (``fashion.neighbors``, backend ``exact``): synthetic float32 vectors (n, d).
  bound = baseline (interpreter, numpy, torch, after one warm-up product) + the caller's matrix +
  the arrays the fitted index keeps besides it (cosine: the L2-normalised rows; euclidean: the
  centred rows) + one block of scores (``faiss.knn``'s 4,096 x 1,024 float32, 16 MiB) + the top-k work
  arrays of one block + the float64 distance re-computation (``3 × _GATHER_ELEMENTS`` × 8 bytes) +
  the (q, k) results. ``after_fit`` is the peak once ``fit`` returned.
  An n × n float32 matrix would be 160 GB at n = 200,000.
  ``--queries Q`` queries the first Q rows (default 4096) through the same blocked loop as all-pairs:
  every block is independent, so the peak is reached in the first block, and the full all-pairs run
  (``--queries all``) takes ~(n / Q) times longer for the same peak.
- **embed** (``fashion.embedding.Embedder.embed`` with its chunk cache, as ``measure_sim.py`` runs
  it): a generated folder of small JPEGs (32 × 32, cached in ``--data``, outside the repository).
  bound = baseline (model loaded, one warm-up batch) + the result matrix (n × d float32) + per-image
  bookkeeping (``BOOKKEEPING`` = 512 B an image: its cache key, flag, reason and list slots; a tenth of
  a 1,280-d vector) + one cache chunk + the DataLoader's prefetched uint8 batches. Nothing else may
  grow with n: ``(peak - baseline) / result`` must stay flat (memory linear in n, nothing quadratic).
  DataLoader workers are separate processes; their peak is reported on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# queries x points that faiss.knn (the `exact` backend's kernel) scores at a time
FAISS_KNN_BLOCK = (4096, 1024)

MiB = 2**20
DEFAULT_DATA = Path(os.environ.get("FASHION_BENCH_DATA_DIR", "/work/bench-data")) / "memory-images"
IMAGE_SIDE = 32
N_CLASSES = 10
BOOKKEEPING = 512  # bytes per image besides its vector: cache key string, ok flag, reason, list slots


def peak_rss() -> int:
    """Peak resident set size of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def children_peak_rss() -> int:
    """Largest peak RSS of any finished child process (DataLoader workers), bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


# ------------------------------------------------------------------------------------------ search


def child_search(n: int, d: int, k: int, metric: str, queries: int | None, seed: int = 0) -> dict:
    """One search measurement in this (fresh) process; returns the figures as a dict."""
    import torch

    from fashion import neighbors

    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # thread pools and oneDNN buffers into the baseline
    baseline = peak_rss()
    X = np.empty((n, d), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for s in range(0, n, 8192):  # float32 draws in slices: no float64 temporary of the full matrix
        X[s : s + 8192] = rng.standard_normal((min(8192, n - s), d), dtype=np.float32)
    t0 = time.perf_counter()
    index = neighbors.build_index("exact", metric=metric).fit(X)
    after_fit = peak_rss()
    q = n if queries is None else min(queries, n)
    if queries is None:
        dist, idx = index.kneighbors(None, n_neighbors=k)
    else:
        dist, idx = index.kneighbors(X[:q], n_neighbors=k)
    seconds = time.perf_counter() - t0
    assert dist.shape == idx.shape == (q, k)
    matrix = X.nbytes
    block_rows, block_cols = FAISS_KNN_BLOCK
    block = block_rows * block_cols * 4
    topk_work = block_rows * (k + 1) * (4 + 8) * 4  # a tile's top k, the running top k, their merge
    gather = 3 * neighbors.base._GATHER_ELEMENTS * 8  # float32 gather, its float64 copy, the differences
    results = q * (k + 1) * (4 + 8) * 3  # float32 + int64, before and after the sort and self-drop
    index_copy = held_by_index(index, X)
    bound = baseline + matrix + index_copy + block + topk_work + gather + results
    return {"case": "search", "n": n, "d": d, "k": k, "metric": metric, "queries": q, "block_rows": block_rows,
            "baseline": baseline, "matrix": matrix, "index_copy": index_copy, "block": block,
            "after_fit": after_fit, "peak": peak_rss(), "bound": bound, "seconds": round(seconds, 2),
            "nxn_float32": n * n * 4}


def held_by_index(index, X: np.ndarray) -> int:
    """Bytes of the arrays a fitted index keeps that are not the caller's ``X`` (its own copies:
    the L2-normalised rows for cosine, the centred rows and norms for euclidean)."""
    import torch

    total, seen = 0, set()
    for value in vars(index).values():
        array = value.numpy() if isinstance(value, torch.Tensor) else value
        if isinstance(array, np.ndarray) and not np.shares_memory(array, X):
            key = array.__array_interface__["data"][0]
            if key not in seen:
                seen.add(key)
                total += array.nbytes
    return total


# ------------------------------------------------------------------------------------------- embed


def image_paths(data: Path, n: int) -> list[str]:
    """The first ``n`` generated images (data/c<class>/<i>.jpg), generating any that are missing."""
    from PIL import Image

    paths = []
    rng = np.random.default_rng(0)
    colors = rng.integers(0, 256, size=(N_CLASSES, 3))
    made = 0
    for i in range(n):
        c = i % N_CLASSES
        path = data / f"c{c}" / f"{i:07d}.jpg"
        paths.append(os.fspath(path))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            noise = np.random.default_rng(i).integers(-30, 31, size=(IMAGE_SIDE, IMAGE_SIDE, 3))
            pixels = np.clip(colors[c] + noise, 0, 255).astype(np.uint8)
            tmp = path.with_name(f".{path.name}.tmp")
            Image.fromarray(pixels).save(tmp, format="JPEG", quality=90)
            os.replace(tmp, path)
            made += 1
    if made:
        print(f"generated {made} images in {data}", file=sys.stderr, flush=True)
    return paths


def child_embed(n: int, data: Path, size: int, batch_size: int, workers: int, arch: str, cache: Path) -> dict:
    """One embedding measurement in this (fresh) process; returns the figures as a dict."""
    import shutil

    import pandas as pd

    from fashion.embedding import DEFAULT_CHUNK_SIZE, Embedder

    paths = image_paths(data, n)
    items = pd.DataFrame({"path": paths, "label": [Path(p).parent.name for p in paths]})
    embedder = Embedder.create(arch=arch, size=size)
    embedder.embed(items.iloc[:batch_size], batch_size=batch_size, num_workers=0, progress=False)  # warm-up
    baseline = peak_rss()
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    result = embedder.embed(items, batch_size=batch_size, cache_dir=cache, num_workers=workers, progress=False)
    seconds = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    d = result.vectors.shape[1]
    assert result.vectors.shape == (n, d) and result.ok.all(), result.failures[:3]
    matrix = result.vectors.nbytes
    bookkeeping = n * BOOKKEEPING
    chunk = -(-DEFAULT_CHUNK_SIZE // batch_size) * batch_size * d * 4 * 2  # the chunk and its npz copy
    prefetch = 4 * max(workers, 1) * batch_size * 3 * size * size
    bound = baseline + matrix + bookkeeping + chunk + prefetch
    return {"case": "embed", "n": n, "d": d, "size": size, "batch_size": batch_size, "workers": workers,
            "baseline": baseline, "matrix": matrix, "bookkeeping": bookkeeping, "chunk": chunk, "peak": peak_rss(),
            "bound": bound, "worker_peak": children_peak_rss(), "seconds": round(seconds, 2),
            "images_per_s": round(n / seconds, 1)}


# ------------------------------------------------------------------------------------------ driver


def run_child(args: list[str]) -> dict:
    """Run this script with ``--child ...`` in a fresh interpreter; return its JSON line."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"child {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(row), file=sys.stderr, flush=True)  # each figure as soon as it exists
    return row


def _mib(value: int) -> str:
    return f"{value / MiB:9.0f}"


def print_search(rows: list[dict]) -> None:
    print("\nall-pairs exact search (fashion.neighbors 'exact'), peak RSS in MiB")
    print(f"{'n':>8} {'d':>5} {'metric':>9} {'queries':>8} {'baseline':>9} {'matrix':>9} {'index':>9} {'block':>9} "
          f"{'bound':>9} {'after fit':>9} {'peak':>9} {'n×n f32':>10} {'s':>7}  ok")
    for r in rows:
        print(f"{r['n']:8d} {r['d']:5d} {r['metric']:>9} {r['queries']:8d} {_mib(r['baseline'])} {_mib(r['matrix'])} "
              f"{_mib(r['index_copy'])} {_mib(r['block'])} {_mib(r['bound'])} {_mib(r['after_fit'])} {_mib(r['peak'])} "
              f"{r['nxn_float32'] / 2**30:8.0f}Gi {r['seconds']:7.1f}  {'yes' if r['peak'] <= r['bound'] else 'NO'}")


def print_embed(rows: list[dict]) -> None:
    print("\nembedding path (Embedder.embed + chunk cache), peak RSS in MiB")
    print(f"{'n':>8} {'d':>5} {'baseline':>9} {'matrix':>9} {'bound':>9} {'peak':>9} {'peak-base':>9} "
          f"{'(peak-base)/matrix':>18} {'worker':>9} {'img/s':>7}  ok")
    for r in rows:
        ratio = (r["peak"] - r["baseline"]) / r["matrix"]
        print(f"{r['n']:8d} {r['d']:5d} {_mib(r['baseline'])} {_mib(r['matrix'])} {_mib(r['bound'])} "
              f"{_mib(r['peak'])} {_mib(r['peak'] - r['baseline'])} {ratio:18.2f} {_mib(r['worker_peak'])} "
              f"{r['images_per_s']:7.0f}  {'yes' if r['peak'] <= r['bound'] else 'NO'}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=("search", "embed", "both"), default="both")
    p.add_argument("--n", type=int, nargs="+", default=[200_000], help="search: collection sizes")
    p.add_argument("--d", type=int, default=1280, help="search: dimension")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--metric", nargs="+", default=["cosine", "euclidean"], choices=("cosine", "euclidean"))
    p.add_argument("--queries", default="4096", help="search: rows to query, or 'all' for the full all-pairs run")
    p.add_argument("--embed-n", type=int, nargs="+", default=[1_000, 3_000, 9_000], help="embed: image counts")
    p.add_argument("--size", type=int, default=32, help="embed: image size fed to the network")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="embed: DataLoader workers")
    p.add_argument("--arch", default="efficientnet_lite0")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="where the generated images are kept")
    p.add_argument("--json", type=Path, help="also write every row to this JSON file")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of a few seconds)")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_main(argv: list[str]) -> None:
    case, *rest = argv
    a = json.loads(rest[0])
    if case == "search":
        row = child_search(a["n"], a["d"], a["k"], a["metric"], a["queries"])
    else:
        row = child_embed(a["n"], Path(a["data"]), a["size"], a["batch_size"], a["workers"], a["arch"],
                          Path(a["cache"]))
    print(json.dumps(row))


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return []
    if args.quick:
        args.n, args.d, args.embed_n, args.queries = [2_000], 64, [64, 256], "all"
    queries = None if args.queries == "all" else int(args.queries)
    rows = []
    if args.case in ("search", "both"):
        search = [run_child(["search", json.dumps({"n": n, "d": args.d, "k": args.k, "metric": m, "queries": queries})])
                  for n in args.n for m in args.metric]
        print_search(search)
        rows += search
    if args.case in ("embed", "both"):
        cache = args.data.parent / "memory-cache"
        embed = [run_child(["embed", json.dumps({"n": n, "data": os.fspath(args.data), "size": args.size,
                                                 "batch_size": args.batch_size, "workers": args.workers,
                                                 "arch": args.arch, "cache": os.fspath(cache)})])
                 for n in args.embed_n]
        print_embed(embed)
        rows += embed
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
