"""The list update of ``fashion add`` on an IVF-PQ run, without the network: this checkout against another.

    python benchmarks/live_lists.py --base-tree /work/main                 # 20,000 items, 4 adds of 300
    python benchmarks/live_lists.py --kind disk --n 100000 --add 1000 --adds 3 --base-tree B

``benchmarks/live.py`` times a whole add (photos embedded by the run's network, colour, lists, write) on
a grown real run; this times the part of it that depends on the index alone, for a change to that part
on cores too busy for the whole run. A catalogue of ``--n`` clustered synthetic vectors (d = 64, 12
centres, k = 10, all-pairs), with the in-memory ``faiss-ivfpq`` (``--kind memory``: the index chosen
for the size, ``fashion.neighbors.ivfpq.choose_params``) or the on-disk IVF-PQ of ``fashion.scale``
(``--kind disk``: ``tests/factories.make_ivfpq_run``, changed through committed versions), then
``--adds`` adds of ``--add`` new vectors each: per add the update's CPU and wall seconds
(``state.update_lists`` in memory; ``state.commit`` on disk, write and seal included) and its steps
(merge: the existing lists the new items enter; search: merge and the new items' own lists). Each tree
runs in its own process (its ``fashion`` first on the path), alternated ``--repeat`` times, on the same
vectors; a process's first add pays one-time imports and is left out of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
tree, kind, n, m, adds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, str(Path(tree) / "tests"))
import numpy as np
import pandas as pd
from fashion.catalog import state, versions
from fashion.catalog.lists import Lists, search
from fashion.neighbors import build_index

D, K = 64, 10
rng = np.random.default_rng(0)
centres = rng.normal(size=(12, D))

def draw(count):
    return (centres[rng.integers(0, 12, count)] + 0.35 * rng.normal(size=(count, D))).astype(np.float32)

def frame(count, start):
    return pd.DataFrame({"path": [f"/p/{start + i}.jpg" for i in range(count)],
                         "relpath": [f"{start + i}.jpg" for i in range(count)],
                         "label": rng.choice(["a", "b", "c"], count).tolist(), "split": [""] * count})

out = []
with tempfile.TemporaryDirectory() as tmp:
    if kind == "memory":
        first = frame(n, 0)
        cat = state.Catalog(None, first.iloc[:0].assign(id=[], ok=[], reason=[], role=[]), np.zeros((0, D), np.float32),
                            {"index": {"name": "faiss-ivfpq", "metric": "cosine"}, "arguments": {"index": "faiss-ivfpq"},
                             "dataset": {"format": "folder"}}, {"k": K, "k_requested": K}, Lists.concat([], K))
        ids = state.append(cat, first, draw(n), np.ones(n, bool), [""] * n)
        cat.index = build_index("faiss-ivfpq", metric="cosine").fit(cat.vectors[ids])
        cat.index_ids = ids
        cat.lists = search(cat.index, ids, cat.vectors[ids], ids, K, True)
        cat.items["role"] = "both"
    else:
        from factories import make_ivfpq_run
        run_dir = make_ivfpq_run(Path(tmp) / "run", draw(n), k=K)
    for _ in range(adds):
        vectors = draw(m)
        if kind == "memory":
            new = state.append(cat, frame(m, len(cat.items)), vectors, np.ones(m, bool), [""] * m)
            timer = state._Timer()
            c0, w0 = time.process_time(), time.perf_counter()
            query, gallery, _, _, k, lists = state.update_lists(cat, new, np.zeros(0, np.int64), timer)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            cat.items["role"] = state.role_column(cat, query, gallery)
            cat.lists, cat.metrics = lists, {**cat.metrics, "k": k}
            timing = timer.timing
        else:
            with versions.writer(run_dir):
                cat = state.load(run_dir)
                new = state.append(cat, frame(m, len(cat.items)), vectors, np.ones(m, bool), [""] * m)
                c0, w0 = time.process_time(), time.perf_counter()
                state.commit(cat, {"op": "add", "count": m}, added=new)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            timing = cat.stats["timing"]
        out.append({"cpu_s": cpu, "wall_s": wall, "merge_s": timing.get("merge", 0.0), "search_s": timing["search"],
                    "lists_changed": cat.stats.get("lists_changed"), "lists_searched": cat.stats.get("lists_searched")})
print(json.dumps(out))
"""


def run_tree(tree: Path, args) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.fspath(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, os.fspath(tree), args.kind, str(args.n), str(args.add),
                           str(args.adds)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{tree}: the child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("memory", "disk"), default="memory")
    p.add_argument("--n", type=int, default=20_000, help="items before the adds")
    p.add_argument("--add", type=int, default=300, help="new vectors per add")
    p.add_argument("--adds", type=int, default=4, help="adds per process (the first is left out of the medians)")
    p.add_argument("--repeat", type=int, default=2, help="alternations of the trees")
    p.add_argument("--base-tree", type=Path, default=None, help="another checkout, timed alternately with this one")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    trees = [("this", REPO)] + ([("base", args.base_tree.resolve())] if args.base_tree else [])
    runs = {name: [] for name, _ in trees}
    for _ in range(args.repeat):
        for name, tree in trees:
            runs[name].append(run_tree(tree, args))
            print(f"{name}: " + ", ".join(f"{a['cpu_s']:.3f}/{a['wall_s']:.3f} s" for a in runs[name][-1])
                  + f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n{args.kind}, n = {args.n}, {args.adds} adds of {args.add} per process, {args.repeat} alternations "
          "(medians over the adds after each process's first)")
    print(f"{'code':<6} {'cpu s':>8} {'wall s':>8} {'merge s':>9} {'search s':>9}  lists changed / searched  tree")
    medians = {}
    for name, tree in trees:
        adds = [a for run in runs[name] for a in run[1:]]
        medians[name] = {key: statistics.median(a[key] for a in adds) for key in ("cpu_s", "wall_s", "merge_s", "search_s")}
        m = medians[name]
        print(f"{name:<6} {m['cpu_s']:>8.3f} {m['wall_s']:>8.3f} {m['merge_s']:>9.4f} {m['search_s']:>9.4f}  "
              f"{[a['lists_changed'] for a in adds]} / {[a['lists_searched'] for a in adds]}  {tree}")
    if args.base_tree:
        this, base = medians["this"], medians["base"]
        print("this / base: " + ", ".join(f"{key[:-2]} {this[key] / base[key]:.2f}" for key in this))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                               "medians": medians}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
