"""Cost of the embedding map (fashion.insight.map.layout): time and peak memory per method and size,
and what the insight stage adds to the README's quick start.

Points: synthetic low-rank vectors — 20 cluster centres in a rank-32 subspace of R^1280 (the default
backbone's dimension) plus isotropic noise, float32 — not real embeddings. Each (method, n) runs in a
fresh subprocess, so UMAP's numba compilation is included as a user pays it; peak RSS from ru_maxrss.

    python benchmarks/map.py --n 10000 100000            # layout cost
    python benchmarks/map.py --quickstart                # measure_sim on the sample, with and without insight
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _child(method: str, n: int, d: int, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(32, d)).astype(np.float32)
    centres = rng.normal(size=(20, 32)).astype(np.float32) * 3
    x = (centres[rng.integers(0, 20, n)] + rng.normal(size=(n, 32)).astype(np.float32)) @ basis
    x += rng.normal(scale=0.5, size=x.shape).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    from fashion.insight.map import layout

    xy = layout(x, method=method, seed=seed)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"method": method, "n": n, "seconds": seconds, "peak_mb": peak / 1024,
                      "added_mb": (peak - base) / 1024, "data_mb": x.nbytes / 2**20, "ok": bool(np.isfinite(xy).all())}))


def _run(method: str, n: int, d: int, seed: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", method, str(n), str(d), str(seed)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "note": f"over {timeout:.0f} s, stopped"}
    if proc.returncode != 0:
        return {"method": method, "n": n, "note": proc.stderr.strip().splitlines()[-1][:80]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _quickstart(repeats: int) -> None:
    """measure_sim.py on the bundled sample with --no-insight and with the default insight stage,
    alternating, each in a fresh process (the embedding cache is warm after the first run)."""
    base = Path(tempfile.mkdtemp(prefix="map-bench-"))
    cache = base / "cache"
    rows = []
    for r in range(repeats + 1):
        for name, extra in (("--no-insight", ["--no-insight"]), ("insight (default)", [])):
            out = base / f"{r}-{len(extra)}"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "measure_sim.py"), "-q", "--output_dir", str(out),
                            "--cache-dir", str(cache), *extra], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            wall = time.perf_counter() - t0
            timing = json.loads((out / "metrics.json").read_text())["timing"]
            if r > 0:  # the first round fills the cache
                rows.append((name, wall, timing.get("insight", 0.0)))
    print(f"{'run':20s} {'wall s':>8s} {'insight stage s':>16s}")
    for name, wall, stage in rows:
        print(f"{name:20s} {wall:8.2f} {stage:16.2f}")
    umap = _run("umap", 240, 1280, 0, 600)
    pca = _run("pca", 240, 1280, 0, 600)
    print(f"layout of 240 points in a fresh process: pca {pca.get('seconds', float('nan')):.2f} s, "
          f"umap {umap.get('seconds', float('nan')):.2f} s (numba compile included)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--d", type=int, default=1280)
    parser.add_argument("--methods", nargs="+", default=["pca", "umap", "tsne"])
    parser.add_argument("--tsne-max", type=int, default=20000, help="skip t-SNE above this n (it is O(n log n) but slow)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quickstart", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, n, d, seed = args.child
        _child(method, int(n), int(d), int(seed))
        return 0
    if args.quickstart:
        _quickstart(args.repeats)
        return 0
    print(f"{'method':8s} {'n':>8s} {'time s':>9s} {'peak MB':>9s} {'+MB':>8s} {'data MB':>8s}  note")
    for n in args.n:
        for method in args.methods:
            if method == "tsne" and n > args.tsne_max:
                print(f"{method:8s} {n:8d} {'-':>9s} {'-':>9s} {'-':>8s} {'-':>8s}  skipped (n > --tsne-max)")
                continue
            r = _run(method, n, args.d, args.seed, args.timeout)
            if "seconds" in r:
                print(f"{method:8s} {n:8d} {r['seconds']:9.2f} {r['peak_mb']:9.0f} {r['added_mb']:8.0f} "
                      f"{r['data_mb']:8.0f}  {'' if r['ok'] else 'non-finite output!'}", flush=True)
            else:
                print(f"{method:8s} {n:8d} {'-':>9s} {'-':>9s} {'-':>8s} {'-':>8s}  {r['note']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
