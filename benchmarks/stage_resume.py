"""A rerun keeps the orchestrator's finished stages (issue 27 item 2): the index and search stages of
``fashion.pipeline.measure.measure`` over synthetic clustered unit vectors, run twice on the same work
directory; the second run finds both stages' checkpoints and redoes neither.

    python benchmarks/stage_resume.py --n 20000 --d 512 --index exact --workdir /tmp/stage-resume
    OMP_NUM_THREADS=1 python benchmarks/stage_resume.py --n 20000 --d 512 --index faiss-ivfpq --workdir /tmp/sr

The work directory is made as the verbs make theirs (``fashion manifest``, then embedding shards), so the
index and search stages run as ``fashion index`` / ``fashion knn`` would run them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fashion, not the installed one


def make_work(work: Path, n: int, d: int, seed: int = 0) -> None:
    """A manifest of ``n`` items in 10 labels and one embedding shard set of clustered unit vectors."""
    import pandas as pd
    import pyarrow as pa

    from fashion.datasets import ItemTable
    from fashion.scale import manifest, shards

    shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(seed)
    names = np.array(list("abcdefghij"))
    labels = names[rng.integers(0, 10, n)]
    items = pd.DataFrame({"path": [f"/x/{i}.jpg" for i in range(n)], "relpath": [f"{i}.jpg" for i in range(n)],
                          "label": labels, "split": [""] * n})
    manifest.write_manifest(ItemTable(items, "folder", "/x"), work)
    centres = rng.standard_normal((10, d)).astype(np.float32)
    for start in range(0, n, 4096):
        ids = np.arange(start, min(n, start + 4096))
        v = centres[np.searchsorted(names, labels[ids])] + rng.standard_normal((len(ids), d)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        shards.write_shard(work / "embeddings" / "synthetic", pa.table({
            "id": pa.array(ids), "vector": shards.vector_array(v), "ok": pa.array(np.ones(len(ids), bool)),
            "reason": pa.array([""] * len(ids))}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--index", default="exact")
    p.add_argument("--workdir", required=True, help="made afresh (its contents are removed)")
    args = p.parse_args(argv)

    from fashion.pipeline.config import MeasureConfig
    from fashion.pipeline.measure import measure

    work = Path(args.workdir)
    make_work(work, args.n, args.d)
    config = MeasureConfig(output_dir=str(work), k=args.k, index=args.index)
    for attempt in ("first", "rerun"):
        start = time.perf_counter()
        result = measure(config, stages=("index", "search"), work_dir=work)
        print(f"n={args.n} d={args.d} index={args.index} {attempt}: index+search stages "
              f"{time.perf_counter() - start:.2f} s ({result.stages['index'].name}, "
              f"{len(result.stages['search'])} parts)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
