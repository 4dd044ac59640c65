"""Reference retrieval results on clothing-dataset-small (issue 4, item 7).

    python benchmarks/retrieval_clothing.py --data /work/shared/data/clothing-dataset-small \\
        --model /work/runs/clothing-lite2 --output_dir /work/runs/retrieval-lite2

For the pretrained default backbone, (with ``--model``) the trained classifier's body and head
features and (with ``--metric-model``, issue 15) the body and head features of a model trained with a
metric-learning loss (``fashion train --metric-loss ...``), runs ``fashion.retrieval.run`` for each
``--modes``: queries = test against a gallery of train + validation, and all-pairs over every image. Prints precision@10 / mAP@10 and the time of each stage side by side.
Each model's embeddings are computed once and shared between its two runs through the cache.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

MODES = {"test-vs-train+valid": "test", "all-pairs": None}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/clothing-dataset-small")
    p.add_argument("--model", default=None, help="trained model dir (fashion train); omit for pretrained only")
    p.add_argument("--metric-model", action="append", default=[],
                   help="a model dir trained with --metric-loss (fashion train), compared in the same table; "
                        "repeat it to compare several (rows named by the directory)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--output_dir", default="/work/runs/retrieval")
    p.add_argument("--index", default="auto")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--grids", type=int, default=12)
    p.add_argument("--limit", type=int, default=None, help="seeded subset, for a quick run")
    return p.parse_args(argv)


def models(args) -> list[tuple[str, str | None, str, str]]:
    """(name, model dir, layer, output tag) of every embedding model to compare."""
    rows = [("pretrained efficientnet_lite0 (body)", None, "body", "pretrained-body")]
    several = len(args.metric_model) > 1
    models = [("trained", m) for m in [args.model] if m] + [("metric", m) for m in args.metric_model]
    for kind, model in models:
        arch = json.loads((Path(model) / "model.json").read_text()).get("arch", "model")
        name = arch.replace("efficientnet_", "") + (f" {Path(model).name}" if several and kind == "metric" else "")
        tag = kind + (f"-{Path(model).name}" if several and kind == "metric" else "")
        rows += [(f"{kind} {name} ({layer})", model, layer, f"{tag}-{layer}") for layer in ("body", "head")]
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from fashion.retrieval import MeasureConfig, run

    out = Path(args.output_dir)
    rows = []
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"--modes: unknown {sorted(unknown)}; choose from {', '.join(MODES)}")
    for name, model, layer, kind in models(args):
        for mode in modes:
            query_split = MODES[mode]
            tag = f"{kind}-{mode}".replace("+", "")
            config = MeasureConfig(input=args.data, output_dir=str(out / tag), model=model, layer=layer,
                                   arch=None if model else "efficientnet_lite0",  # the bare ImageNet row
                                   k=args.k, index=args.index, query_split=query_split, grids=args.grids,
                                   limit=args.limit, cache_dir=str(out / "cache"))
            m = run(config).metrics
            rows.append({"model": name, "mode": mode, "queries": m["n_queries"], "gallery": m["n_gallery"],
                         "p@k": m["precision_at_k"], "mAP@k": m["map_at_k"], "seconds": m["timing"],
                         "embedded": m["n_embedded"], "cached": m["n_from_cache"]})
    header = (f"{'model':44} {'mode':20} {'queries':>7} {'gallery':>7} {'P@' + str(args.k):>7} "
              f"{'mAP@' + str(args.k):>7} {'embed s':>8} {'(cached)':>8} {'index s':>8} {'search s':>8} {'report s':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        t = r["seconds"]  # timing's stage names ("gallery" among them) kept apart from the row's counts
        print(f"{r['model']:44} {r['mode']:20} {r['queries']:7d} {r['gallery']:7d} {r['p@k']:7.4f} "
              f"{r['mAP@k']:7.4f} {t['embed']:8.2f} {r['cached']:8d} {t['index']:8.2f} {t['search']:8.2f} {t['report']:8.2f}")
    print("((cached): images whose vectors came from the embedding cache of the model's first run)")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
