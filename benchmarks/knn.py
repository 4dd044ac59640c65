#!/usr/bin/env python
"""All-pairs top-k neighbour search, side by side (issue 6).

For each (n, d): clustered non-negative float32 data (like post-ReLU pooled CNN features: |centre +
noise|) or real embeddings (--embeddings file.npy), cosine metric. Every method runs in a fresh
subprocess so that its peak RSS (ru_maxrss) is its own; the table shows time, ratios to the KD-tree,
to faiss' flat index and to the fp32 matrix-product floor, recall@k against the project's exact
backend, and peak memory.

  python benchmarks/knn.py                       # n in {10k, 50k}, d in {512, 1280, 2048}
  python benchmarks/knn.py --n 100000 --d 2048 --methods exact faiss-ivf faiss-hnsw
  python benchmarks/knn.py --quick               # tiny smoke run
  python benchmarks/knn.py --n 8000 50000 100000 --d 2048 --methods exact faiss-flat-raw --repeat 3 8000
  python benchmarks/knn.py --n 8000 --d 2048 --methods exact --base-tree /work/main --repeat 3 8000
  python benchmarks/knn.py --n 50000 --d 2048 --methods exact exact-fp32 --base-tree /work/main

Each table ends with the ratios exact / floor (target <= 1.3) and exact / faiss-flat-raw (time of the
project's exact backend over the fp32 GEMM floor and over a bare faiss flat index of the same metric,
measured in the same run), and exact's memory beyond its own copy of the data (target <= +25 %). ``--repeat R N``: at sizes up to N,
every method runs R times, alternating, and keeps its best time (short runs on shared cores are noisy).
``--base-tree DIR``: also run ``exact`` from another checkout of the project (method ``exact-base``, the
baseline of a change to the kernel: time and memory side by side in the same run). ``fashion`` is
imported from this script's checkout (not whichever is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))  # this checkout's fashion

METHODS = ("floor", "exact", "sklearn-brute", "faiss-flat-raw", "kdtree", "balltree", "faiss-ivf", "faiss-hnsw")
# exact-base: exact from --base-tree; exact-fp32: this checkout's exact with the float32 first pass only
# (the bf16 pass's baseline in the same run)
OPTIONAL = ("faiss-flat", "exact-base", "exact-fp32")
# the GEMM floor is timed on tiles of this many rows x columns (a few of them, scaled to n x n)
FLOOR_TILE = (2048, 16384)
TREE_SAMPLE = 200  # KD-tree / BallTree: timed on this many queries, extrapolated to n


def make_data(n: int, d: int, seed: int = 0, clusters: int = 100, noise: float = 1.0) -> np.ndarray:
    """(n, d) float32 clustered non-negative vectors, generated in chunks (peak ~ the result)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    X = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 4096):
        m = min(4096, n - s)
        lab = rng.integers(0, clusters, m)
        X[s : s + m] = np.abs(centres[lab] + noise * rng.standard_normal((m, d), dtype=np.float32))
    return X


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _normalized(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# -- methods (run inside the child) ------------------------------------------------------------------


def run_method(method: str, X: np.ndarray, k: int, metric: str) -> dict:
    """Run one method; return {"seconds", "indices" (rows, k) or None, "rows", "note"}."""
    from fashion.neighbors import build_index

    if method == "floor":  # GEMM tiles of FLOOR_TILE (no top-k, no memory cap): time a few, scale to all
        import torch

        Xn = _normalized(X).astype(np.float32)
        rows, cols = min(len(X), FLOOR_TILE[0]), min(len(X), FLOOR_TILE[1])
        Xt = torch.from_numpy(Xn)
        tiles = [(r, c) for r in range(0, len(X), rows) for c in range(0, len(X), cols)][:6]
        torch.mm(torch.from_numpy(Xn[:rows]), Xt[:cols].T)  # warm-up
        t0 = time.perf_counter()
        flop = 0
        for r, c in tiles:
            qb, xb = Xn[r : r + rows], Xn[c : c + cols]
            torch.mm(torch.from_numpy(qb), torch.from_numpy(xb).T)
            flop += 2.0 * len(qb) * len(xb) * X.shape[1]
        elapsed = time.perf_counter() - t0
        seconds = elapsed * (2.0 * len(X) * len(X) * X.shape[1]) / flop
        return {"seconds": seconds, "indices": None,
                "note": f"GEMM only, {len(tiles)} tiles of {rows} x {cols} -> n x n ({flop / elapsed / 1e9:.0f} GFLOP/s)"}
    if method in ("kdtree", "balltree"):
        rng = np.random.default_rng(1)
        rows = np.sort(rng.choice(len(X), min(TREE_SAMPLE, len(X)), replace=False))
        t0 = time.perf_counter()
        index = build_index(method, metric).fit(X)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, idx = index.kneighbors(X[rows], k + 1)  # +1: the query finds itself
        per_query = (time.perf_counter() - t0) / len(rows)
        idx = np.array([[j for j in r if j != q][:k] for q, r in zip(rows, idx)])
        return {"seconds": build + per_query * len(X), "indices": idx, "rows": rows.tolist(),
                "note": f"extrapolated from {len(rows)} queries (build {build:.1f}s)"}
    t0 = time.perf_counter()
    if method == "sklearn-brute":
        from sklearn.neighbors import NearestNeighbors

        _, idx = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X).kneighbors(None, k)
    elif method == "faiss-flat-raw":  # faiss as a user would call it: IndexFlatIP on unit rows
        import faiss

        Xn = np.ascontiguousarray(_normalized(X), dtype=np.float32)
        index = faiss.IndexFlatIP(X.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(X.shape[1])
        index.add(Xn if metric == "cosine" else X)
        _, idx = index.search(Xn if metric == "cosine" else X, k + 1)
        idx = _drop_self_rows(idx, k)
    else:
        if method == "exact-fp32":
            from fashion.neighbors import kernel

            kernel.BF16_FROM_DATA = float("inf")  # the default rule never picks bf16
        index = build_index("exact" if method in ("exact-base", "exact-fp32") else method, metric).fit(X)
        _, idx = index.kneighbors(None, k)
        note = json.dumps(getattr(index, "stats_", "")) if hasattr(index, "stats_") else ""
        return {"seconds": time.perf_counter() - t0, "indices": idx, "note": note}
    return {"seconds": time.perf_counter() - t0, "indices": idx, "note": ""}


def _drop_self_rows(idx, k):
    out = np.empty((len(idx), k), dtype=np.int64)
    for q, r in enumerate(idx):
        r = [j for j in r if j != q]
        out[q] = r[:k]
    return out


def child_main(args) -> None:
    if args.tree:  # exact-base: the other checkout's fashion
        sys.path.insert(0, args.tree)
    import faiss  # noqa: F401  imported before the baseline so that '+MB' is the method's own memory
    import sklearn.neighbors  # noqa: F401
    import torch  # noqa: F401

    import fashion.neighbors  # noqa: F401

    X = np.load(args.data)
    base = _rss_mb()
    res = run_method(args.child, X, args.k, args.metric)
    res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["base_mb"] = base
    if res["indices"] is not None:
        np.save(args.out + ".npy", np.asarray(res["indices"], dtype=np.int64))
    res["indices"] = res["indices"] is not None
    Path(args.out).write_text(json.dumps(res))


# -- parent ------------------------------------------------------------------------------------------


def run_child(method, data_path, k, metric, tmp, base_tree=None) -> dict:
    out = str(Path(tmp) / f"{method}.json")
    cmd = [sys.executable, __file__, "--child", method, "--data", data_path, "--out", out, "--k", str(k), "--metric", metric]
    if method == "exact-base":
        cmd += ["--tree", os.fspath(Path(base_tree).resolve())]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    res = json.loads(Path(out).read_text())
    res["idx"] = np.load(out + ".npy") if res["indices"] else None
    return res


def recall(found, exact, rows=None) -> float:
    ref = exact if rows is None else exact[rows]
    k = ref.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, ref)]))


def bench_one(X, methods, k, metric, label, repeats: int = 1, base_tree=None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="knnbench") as tmp:
        data_path = str(Path(tmp) / "X.npy")
        np.save(data_path, X)
        results = {}
        order = ["exact"] + [m for m in methods if m != "exact"]
        for rep in range(repeats):  # alternating: a load that comes and goes hits every method alike
            for m in order:
                print(f"  [{label}] {m} ..." + (f" (run {rep + 1} of {repeats})" if repeats > 1 else ""), flush=True)
                res = run_child(m, data_path, k, metric, tmp, base_tree)
                old = results.get(m)
                if old is None or ("error" not in res and ("error" in old or res["seconds"] < old["seconds"])):
                    results[m] = res
    exact = results["exact"].get("idx")
    rows = []
    for m in methods:
        r = results[m]
        if "error" in r:
            rows.append({"data": label, "method": m, "error": r["error"]})
            continue
        rec = None
        if r["idx"] is not None and exact is not None:
            rec = recall(r["idx"], exact, np.array(r["rows"]) if "rows" in r else None)
        rows.append({"data": label, "method": m, "seconds": r["seconds"], "recall": rec, "peak_mb": r["peak_mb"],
                     "extra_mb": r["peak_mb"] - r["base_mb"], "note": r.get("note", "")})
    return rows


def print_table(rows, data_mb: float) -> None:
    ref = {m: next((r["seconds"] for r in rows if r["method"] == m and "seconds" in r), None)
           for m in ("kdtree", "faiss-flat-raw", "floor")}
    head = f"{'method':<15} {'time s':>9} {'vs KD-tree':>10} {'vs faiss':>9} {'vs floor':>9} {'recall@k':>8} {'peak MB':>8} {'+MB':>7}  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['method']:<15} ERROR {r['error']}")
            continue
        s = r["seconds"]
        ratio = lambda base: f"{base / s:.1f}x" if base else "-"  # noqa: E731  speed-up over base
        floor = f"{s / ref['floor']:.2f}" if ref["floor"] else "-"
        rec = "-" if r["recall"] is None else f"{r['recall']:.4f}"
        print(f"{r['method']:<15} {s:>9.2f} {ratio(ref['kdtree']):>10} {ratio(ref['faiss-flat-raw']):>9} {floor:>9} "
              f"{rec:>8} {r['peak_mb']:>8.0f} {r['extra_mb']:>7.0f}  {r['note']}")
    print(f"(data matrix {data_mb:.0f} MB; 'vs KD-tree'/'vs faiss' = speed-up, 'vs floor' = time / fp32 GEMM floor;"
          " '+MB' = peak RSS minus RSS after loading the data)")
    exact = next((r for r in rows if r["method"] == "exact" and "seconds" in r), None)
    if exact is None:
        return
    base = next((r for r in rows if r["method"] == "exact-base" and "seconds" in r), None)
    if base is not None:
        print(f"exact / exact-base = {exact['seconds'] / base['seconds']:.3f} (time ratio, same run); memory beyond "
              f"the data {exact['extra_mb'] - data_mb:+.0f} MB against {base['extra_mb'] - data_mb:+.0f} MB")
    fp32 = next((r for r in rows if r["method"] == "exact-fp32" and "seconds" in r), None)
    if fp32 is not None:
        floor = f"; exact-fp32 / floor = {fp32['seconds'] / ref['floor']:.3f}" if ref["floor"] else ""
        print(f"exact / exact-fp32 = {exact['seconds'] / fp32['seconds']:.3f} (time ratio, same run: the first "
              f"pass's precision){floor}")
    if ref["floor"]:
        print(f"exact / floor = {exact['seconds'] / ref['floor']:.3f} (time ratio, same run; target <= 1.3)")
    if ref["faiss-flat-raw"]:
        print(f"exact / faiss-flat-raw = {exact['seconds'] / ref['faiss-flat-raw']:.3f} (time ratio, same run)")
    over = exact["extra_mb"] - data_mb  # beyond the index's own (normalised) copy of the data
    print(f"exact memory: +{exact['extra_mb']:.0f} MB = its copy of the data ({data_mb:.0f} MB) + {over:.0f} MB "
          f"({over / data_mb:+.0%} of the data; target <= +25 %)")


def machine_line() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:  # noqa: BLE001  lscpu missing: keep platform's answer
        pass
    import torch

    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[10_000, 50_000], help="collection sizes")
    p.add_argument("--d", type=int, nargs="+", default=[512, 1280, 2048], help="dimensions")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--metric", default="cosine", choices=("cosine", "euclidean"))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + OPTIONAL)
    p.add_argument("--embeddings", help="also run on real embeddings from this (n, d) .npy file")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    p.add_argument("--repeat", type=int, nargs=2, default=(1, 0), metavar=("R", "N"),
                   help="run every method R times (alternating, best time kept) at sizes n <= N")
    p.add_argument("--base-tree", metavar="DIR", help="also run exact from this checkout (method exact-base)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--tree", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    if args.quick:
        args.n, args.d = [600], [32]
    methods = list(dict.fromkeys(["floor", "exact"] + [m for m in args.methods if m not in ("floor", "exact")]
                                 + (["exact-base"] if args.base_tree else [])))
    print(machine_line())
    print(f"all-pairs top-{args.k}, metric={args.metric}")
    datasets = [(f"clustered n={n} d={d}", n, d) for n in args.n for d in args.d]
    if args.embeddings:
        datasets.append((f"embeddings {Path(args.embeddings).name}", None, None))
    for label, n, d in datasets:
        X = make_data(n, d) if n else np.ascontiguousarray(np.load(args.embeddings), dtype=np.float32)
        print(f"\n== {label} ({X.shape[0]} x {X.shape[1]})", flush=True)
        repeats = args.repeat[0] if X.shape[0] <= args.repeat[1] else 1
        rows = bench_one(X, methods, args.k, args.metric, label, max(1, repeats), args.base_tree)
        print_table(rows, X.nbytes / 2**20)


if __name__ == "__main__":
    main()
