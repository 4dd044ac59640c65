"""CPU a photo query costs inside the service, this checkout against another (``--base-tree``), in fresh
processes alternated: the figure that load on shared cores inflates least, and the per-photo floor.

    python benchmarks/photo_cpu.py --run /tmp/serve-w/run100000 --base-tree /work/main --rounds 2

Each child process opens the run as `fashion serve` does (:class:`fashion.service.SimilarityService`,
warmed) and times, over ``-n`` real photos (their bytes, as an upload):

- the stages of one photo, CPU ms (``time.process_time``: every thread of the process, OpenVINO's
  included): the gated decode (``open_image_bytes(strict=True, min_size=)``), the resize to the network's
  input, the network at batch 1, 2, 4, 8 and 16 (per photo: does batching cut the cost?), one index search;
- ``search_image`` end to end from 1, 4 and 16 threads at once (CPU ms a photo, user and system apart,
  photos/s, the micro-batcher's calls: how many photos shared one network call, and the RSS after);
- ``--serve-malloc``: each child first sets glibc's malloc as `fashion serve` does (its checkout's
  ``fashion.service.budget.return_freed_memory``), whose system CPU these figures then show;
- the load average before and after, printed with each line.

Two cores' floor a photo (no HTTP) is 2 × 1000 / (CPU ms a photo) photos/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(run: str, photos: str, n: int) -> dict:
    from fashion.images import open_image_bytes
    from fashion.service import SimilarityService
    from fashion.service.query import network_input

    load0 = os.getloadavg()[0]
    if os.environ.get("FASHION_SERVE_MALLOC"):
        from fashion.service.budget import return_freed_memory

        return_freed_memory()
    service = SimilarityService.open(run, warm=True)
    files = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    datas = [p.read_bytes() for p in files]
    size = service.embedder.size

    def cpu_ms(fn, count: int, repeat: int = 1) -> float:
        fn()
        c0 = time.process_time()
        for _ in range(repeat):
            fn()
        return (time.process_time() - c0) * 1000 / (count * repeat)

    row: dict = {"tree": os.fspath(REPO if "FASHION_TREE" not in os.environ else os.environ["FASHION_TREE"])}
    decode = lambda: [open_image_bytes(d, max_pixels=service.max_pixels, strict=True, min_size=size) for d in datas]  # noqa: E731
    row["decode"] = cpu_ms(decode, len(datas))
    pictures = decode()
    row["resize"] = cpu_ms(lambda: [network_input(service.embedder, p) for p in pictures], len(pictures))
    row["crop resize: window"] = cpu_ms(lambda: [_centre_crop(p, size, whole=False) for p in pictures], len(pictures))
    row["crop resize: whole, sliced"] = cpu_ms(lambda: [_centre_crop(p, size, whole=True) for p in pictures], len(pictures))
    inputs = [network_input(service.embedder, p) for p in pictures]
    for b in (1, 2, 4, 8, 16):
        items = [(x, None) for x in (inputs * 16)[:b]]
        row[f"network b{b}"] = cpu_ms(lambda: service._network_batch(items), b, repeat=max(2, 48 // b))
    vector = service._network_batch([(inputs[0], None)])[0][0]
    row["search"] = cpu_ms(lambda: service._search(vector, 10, None), 1, repeat=200)
    for c in (1, 4, 16):
        batcher = service._batcher
        calls0, items0 = batcher.calls, batcher.items
        with ThreadPoolExecutor(c) as pool:
            list(pool.map(lambda d: service.search_image(d, 10), datas[:8]))  # the threads exist
            calls0, items0 = batcher.calls, batcher.items
            t0, w0 = os.times(), time.perf_counter()
            list(pool.map(lambda d: service.search_image(d, 10), datas * 2))
            t1, wall = os.times(), time.perf_counter() - w0
        count = 2 * len(datas)
        user, system = (t1.user - t0.user) * 1000 / count, (t1.system - t0.system) * 1000 / count
        row[f"search_image c{c}"] = user + system
        row[f"  of it system c{c}"] = system
        row[f"photos/s c{c}"] = count / wall
        row[f"photos a call c{c}"] = (batcher.items - items0) / max(batcher.calls - calls0, 1)
    import psutil

    row["RSS MB"] = psutil.Process().memory_info().rss / 2**20
    row["load"] = f"{load0:.1f}->{os.getloadavg()[0]:.1f}"
    return row


def _centre_crop(picture, size: int, whole: bool):
    """A "crop" run's resize (numpy kernel, as a served OpenVINO network runs it): the centre ``size`` square
    of the picture scaled to ``size`` on its short side, computed as that window only or as the whole resize
    sliced (the same bytes: tests/test_resample.py)."""
    from fashion.resample import resize_bilinear_aa

    w, h = picture.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    if whole:
        return resize_bilinear_aa(picture, nh, nw)[top:top + size, left:left + size]
    return resize_bilinear_aa(picture, nh, nw, (top, left, size, size))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--photos", default="/work/shared/data/clothing-dataset-small/test")
    p.add_argument("-n", type=int, default=64, help="photos")
    p.add_argument("--base-tree", default=None, help="another checkout, timed in turn with this one")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--serve-malloc", action="store_true", help="glibc's malloc set as fashion serve sets it")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.run, args.photos, args.n)))
        return 0
    trees = [Path(args.base_tree).resolve(), REPO] if args.base_tree else [REPO]
    rows = []
    for r in range(args.rounds):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": os.fspath(tree), "FASHION_TREE": os.fspath(tree),
                   **({"FASHION_SERVE_MALLOC": "1"} if args.serve_malloc else {})}
            out = subprocess.run([sys.executable, os.fspath(Path(__file__).resolve()), "--child", "--run", args.run,
                                  "--photos", args.photos, "-n", str(args.n)], env=env, cwd=os.fspath(tree),
                                 check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["round"] = r + 1
            rows.append(row)
            print(f"round {r + 1} {tree}: " + "  ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                if k not in ("tree", "round")), flush=True)
    keys = [k for k in rows[0] if k not in ("tree", "round", "load")]
    print("\n| CPU ms a photo (photos/s, photos a call) | " + " | ".join(f"{Path(r['tree']).name} r{r['round']}" for r in rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r[k]:.2f}" for r in rows) + " |")
    print("| load average | " + " | ".join(r["load"] for r in rows) + " |")
    for tree in trees:
        mine = [r for r in rows if r["tree"] == os.fspath(tree)]
        floor = statistics.median(r["search_image c4"] for r in mine)
        print(f"{tree}: search_image at c=4 {floor:.2f} CPU ms a photo: two cores' ceiling {2000 / floor:.0f} photos/s "
              "(no HTTP, no client)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
