"""Which backbone to fine-tune: a linear probe of each one's frozen features on clothing-dataset-small.

    python benchmarks/probe_backbones.py                                  # lite0 and lite2 at 224 px
    python benchmarks/probe_backbones.py --arch efficientnet_lite1 --size 240

For every backbone: embed all photos with its frozen pretrained body (``fashion.embedding``, pooled
features), fit scikit-learn's logistic regression on the train split (standardised features, C chosen
on the validation split) and report validation and test accuracy, with the embedding time. A few
minutes on two cores; the features are cached in ``--cache-dir``. Fine-tuning starts from these
features, so a backbone whose probe is already near the target is the one worth the training time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FASHION_BENCH_DATA", "/work/shared/data/clothing-dataset-small"))


def probe(vectors: np.ndarray, labels: np.ndarray, splits: np.ndarray, cs=(0.1, 0.5, 2.0)) -> dict:
    """Logistic regression on the train rows; C picked on valid; accuracies on valid and test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, valid, test = (splits == s for s in ("train", "valid", "test"))
    best = None
    for c in cs:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        model.fit(vectors[train], labels[train])
        acc = float((model.predict(vectors[valid]) == labels[valid]).mean())
        if best is None or acc > best[0]:
            best = (acc, c, model)
    acc_valid, c, model = best
    return {"C": c, "valid": acc_valid, "test": float((model.predict(vectors[test]) == labels[test]).mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--arch", nargs="+", default=["efficientnet_lite0", "efficientnet_lite2"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--cache-dir", default="/work/runs/probe-cache")
    args = p.parse_args(argv)

    from fashion import datasets
    from fashion.embedding import Embedder

    items = datasets.load(args.data).frame
    labels, splits = items["label"].to_numpy(), items["split"].to_numpy()
    if not {"train", "valid", "test"} <= set(splits):
        sys.exit(f"{args.data}: needs train, validation and test splits")
    print(f"# linear probe on frozen features: {len(items)} photos of {args.data.name}, {args.size} px")
    print("\n| backbone | embed s | img/s | C | valid accuracy | test accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    for arch in args.arch:
        embedder = Embedder.from_backbone(arch, size=args.size)
        t0 = time.perf_counter()
        result = embedder.embed(items, cache_dir=args.cache_dir, progress=False)
        seconds = time.perf_counter() - t0
        ok = result.ok
        r = probe(result.vectors[ok], labels[ok], splits[ok])
        rate = f"{result.n_computed / seconds:.0f}" if result.n_computed else "cached"
        print(f"| {arch} ({embedder.runtime}) | {seconds:.1f} | {rate} | {r['C']} | {r['valid']:.3f} | {r['test']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
