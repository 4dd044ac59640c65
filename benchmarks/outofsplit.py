"""Out-of-split checks of a model directory (#30 item 3); prints the figures (benchmarks/README.md).

1. Which test photos are *unseen*: no train/valid photo within a cosine distance of the pretrained
   EfficientNet-Lite0 body's features (:func:`fashion.insight.groups.without_twin`), at each of
   ``--twin-thresholds``; ``--pairs-sheet`` draws random pairs per distance bin and ``--sheet`` the closest
   test - train/valid pairs, to check by eye what a threshold takes for one garment.
2. The model's test top-1 and retrieval P@10 (its head's features, ``--layer auto``) on every test photo
   and on the unseen ones.
3. Its top-1 on perturbed test photos, per perturbation (:func:`fashion.training.robustness.perturbation`:
   the combined check of ``fashion train``, each step alone, another background, a smaller garment).
4. Near-duplicate groups of all photos (:func:`fashion.insight.groups.near_duplicate_groups`) at each of
   ``--thresholds``, and plain against grouped K-fold of a cheap proxy of the recipe: a logistic head on
   the frozen pretrained features of all photos (:mod:`fashion.training.groupcv`), per seed.

Figures of the bundled model: benchmarks/README.md, "Out-of-split checks". A new model directory:

    python benchmarks/outofsplit.py --data /work/shared/data/clothing-dataset-small            # the bundled model
    python benchmarks/outofsplit.py --data DATA --model /work/runs/NEW-MODEL-DIR --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashion.insight.groups import DEFAULT_GROUP_THRESHOLD, DEFAULT_TWIN_THRESHOLD  # noqa: E402
from fashion.training.groupcv import FOLDS, SEEDS  # noqa: E402
from fashion.training.robustness import PERTURBATIONS  # noqa: E402

K = 10
THRESHOLDS = (0.08, DEFAULT_GROUP_THRESHOLD, 0.15)  # groups: the default, and one stricter and one looser
TWIN_THRESHOLDS = (0.10, 0.15, DEFAULT_TWIN_THRESHOLD)  # unseen test photos: strict to generous
PAIR_BINS = (0.0, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15)


def precision(vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, gallery: np.ndarray, k: int = K) -> float:
    """P@k of ``queries`` (rows) against ``gallery`` (rows) by cosine similarity, a query never its own
    neighbour (vectors are unit-norm); k at most the gallery's size (less the query itself)."""
    from fashion.metrics import precision_at_k

    k = min(k, len(gallery) - int(np.isin(queries, gallery).any()))
    sims = vectors[queries] @ vectors[gallery].T
    sims[queries[:, None] == gallery[None, :]] = -np.inf
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return precision_at_k(labels[queries], labels[gallery][top], k)


def _r(values) -> str:
    return "[" + " ".join(f"{v:.4f}" for v in values) + "]"


def _f(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _tile(path, tile: int):
    from fashion.images import open_image

    im = open_image(path)
    im.thumbnail((tile - 4, tile - 4))
    return im


def _pair_sheet(path, items, a: np.ndarray, b: np.ndarray, dist: np.ndarray, shown: np.ndarray, tile: int = 110) -> None:
    """Pairs ``shown`` (indices into a, b, dist) two a row, each photo captioned with the pair's number,
    its split/label and the distance."""
    from PIL import Image, ImageDraw

    splits, labels = items["split"].astype(str).to_numpy(), items["label"].astype(str).to_numpy()
    sheet = Image.new("RGB", (4 * tile, max(1, (len(shown) + 1) // 2) * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, p in enumerate(shown):
        r, c = j // 2, (j % 2) * 2
        for cc, row in enumerate((a[p], b[p])):
            sheet.paste(_tile(items["path"].iloc[row], tile), ((c + cc) * tile + 2, r * (tile + 14) + 2))
            draw.text(((c + cc) * tile + 2, r * (tile + 14) + tile),
                      f"{j} {splits[row][:2]}/{labels[row][:7]} {dist[p]:.3f}", fill="black")
    sheet.save(path)


def draw_twins(path: Path, items, a: np.ndarray, b: np.ndarray, dist: np.ndarray, n: int = 64) -> int:
    """A sheet of the ``n`` closest pairs of a test photo and a train/valid photo, to judge by eye which
    are one garment. Returns how many pairs cross."""
    splits = items["split"].astype(str).to_numpy()
    crossing = np.flatnonzero((splits[a] == "test") != (splits[b] == "test"))
    _pair_sheet(path, items, a, b, dist, crossing[np.argsort(dist[crossing], kind="stable")][:n])
    return int(len(crossing))


def draw_pairs(prefix: str, items, a: np.ndarray, b: np.ndarray, dist: np.ndarray, per_bin: int = 12,
               seed: int = 0) -> list[tuple[str, int]]:
    """One sheet per distance bin of :data:`PAIR_BINS` (``{prefix}{lo}-{hi}.png``) of up to ``per_bin``
    seeded random pairs. Returns (file, pairs in the bin) per bin."""
    rng, out = np.random.default_rng(seed), []
    for lo, hi in zip(PAIR_BINS[:-1], PAIR_BINS[1:]):
        found = np.flatnonzero((dist > lo) & (dist <= hi))
        name = f"{prefix}{lo:.2f}-{hi:.2f}.png"
        _pair_sheet(name, items, a, b, dist, np.sort(rng.choice(found, min(per_bin, len(found)), replace=False)), 120)
        out.append((name, int(len(found))))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/clothing-dataset-small")
    parser.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    parser.add_argument("--cache-dir", default="/tmp/outofsplit-cache", help="embedding cache")
    parser.add_argument("--twin-threshold", type=float, default=DEFAULT_TWIN_THRESHOLD,
                        help="a test photo with a train/valid photo within this cosine distance of pretrained "
                             "features is not unseen: the unseen column of the perturbation figures")
    parser.add_argument("--twin-thresholds", default=",".join(f"{t:g}" for t in TWIN_THRESHOLDS),
                        help="comma-separated: the unseen test figures at each")
    parser.add_argument("--thresholds", default=",".join(f"{t:g}" for t in THRESHOLDS),
                        help="comma-separated: near-duplicate groups and the K-fold comparison at each")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--seeds", default=",".join(str(s) for s in SEEDS), help="one plain and one grouped K-fold each")
    parser.add_argument("--perturbations", default=",".join(PERTURBATIONS),
                        help="comma-separated, of: " + ", ".join(PERTURBATIONS) + " ('' for none)")
    parser.add_argument("--skip-cv", action="store_true", help="skip the proxy's plain vs grouped K-fold")
    parser.add_argument("--sheet", default=None, help="draw the closest test - train/valid pairs to this PNG")
    parser.add_argument("--pairs-sheet", default=None, help="draw random pairs per distance bin to PREFIX{lo}-{hi}.png")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: unchanged)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.perturbations.split(",") if k]
    unknown = sorted(set(kinds) - set(PERTURBATIONS))
    if unknown:  # before two embedding passes, not after
        parser.error(f"unknown --perturbations {', '.join(unknown)}; valid: {', '.join(PERTURBATIONS)}")
    logging.basicConfig(level=logging.WARNING)

    import torch

    from fashion.datasets import load
    from fashion.embedding import Embedder
    from fashion.insight.groups import candidate_pairs, group_summary, near_duplicate_groups, twin_distance
    from fashion.modelio import bundled_model_dir, load_model
    from fashion.training.groupcv import compare_folds, plain_folds
    from fashion.training.robustness import perturbed_probs

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    items = load(args.data).frame
    splits, labels = items["split"].astype(str).to_numpy(), items["label"].astype(str).to_numpy()
    model_dir = Path(args.model) if args.model else bundled_model_dir()
    twin_thresholds = sorted({float(t) for t in args.twin_thresholds.split(",") if t} | {args.twin_threshold})
    thresholds = sorted({float(t) for t in args.thresholds.split(",") if t})
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out: dict = {"data": str(args.data), "model": str(model_dir), "twin_threshold": args.twin_threshold, "k": K,
                 "folds": args.folds, "unseen": {}, "groups": {}}
    test = np.flatnonzero(splits == "test")
    others = np.flatnonzero(np.isin(splits, ["train", "valid"]))

    pre = Embedder.create().embed(items, cache_dir=args.cache_dir, progress=False)
    nearest = twin_distance(pre.vectors, splits, ok=pre.ok)  # one search, then each threshold (= without_twin)
    fresh = {t: (splits == "test") & ~(nearest <= t) for t in twin_thresholds}
    if args.sheet:
        n = draw_twins(Path(args.sheet), items, *candidate_pairs(pre.vectors, max(twin_thresholds), ok=pre.ok))
        print(f"sheet of the {min(n, 64)} closest of the {n} test - train/valid pairs within "
              f"{max(twin_thresholds):g}: {args.sheet}")
    if args.pairs_sheet:
        for name, n in draw_pairs(args.pairs_sheet, items, *candidate_pairs(pre.vectors, PAIR_BINS[-1], ok=pre.ok)):
            print(f"pairs sheet {name}: {n} pairs in the bin")

    mine = Embedder.create(model=model_dir).embed(items, cache_dir=args.cache_dir, progress=False)
    vectors = mine.vectors
    test, others = test[mine.ok[test]], others[mine.ok[others]]  # a photo that failed to embed has a zero vector
    out["retrieval"] = {"test_all_pairs": precision(vectors, labels, test, test),
                        "test_vs_train_valid": precision(vectors, labels, test, others)}
    print(f"P@10 of the {len(test)} test photos: among themselves {out['retrieval']['test_all_pairs']:.4f}, "
          f"against train + valid {out['retrieval']['test_vs_train_valid']:.4f}")

    loaded = load_model(model_dir)
    classes = list(loaded.classes)
    scored = np.flatnonzero(splits == "test")  # the classifier scores every test photo, as fashion train does
    frame = items.iloc[scored].reset_index(drop=True)
    targets = np.array([classes.index(v) for v in labels[scored]])
    fresh_test = fresh[args.twin_threshold][scored]
    right: dict = {}
    out["top1"] = {}
    for kind in ["none"] + kinds:
        if kind in right:
            continue
        t = time.perf_counter()
        probs = perturbed_probs(loaded.model, frame, loaded.size, loaded.info.mean, loaded.info.std,
                                crop=loaded.info.crop == "bbox", kind=kind)
        right[kind] = ok = probs.argmax(1) == targets
        out["top1"][kind] = row = {"test": float(ok.mean()),
                                   "unseen": float(ok[fresh_test].mean()) if fresh_test.any() else None}
        print(f"top-1 {kind:>10}: test {row['test']:.4f} ({int(ok.sum())}/{len(ok)}), unseen (no twin within "
              f"{args.twin_threshold:g}) {_f(row['unseen'])} ({int(ok[fresh_test].sum())}/{int(fresh_test.sum())})"
              f"  [{time.perf_counter() - t:.0f} s]", flush=True)

    for t in twin_thresholds:
        mask = fresh[t][scored]
        chosen = test[fresh[t][test]]
        row = {"n_test": int(len(scored)), "n_unseen": int(mask.sum()),
               "top1": float(right["none"][mask].mean()) if mask.any() else None,
               "p10_among_themselves": precision(vectors, labels, chosen, chosen) if len(chosen) > 1 else None,
               "p10_vs_train_valid": precision(vectors, labels, chosen, others) if len(chosen) else None}
        out["unseen"][f"{t:g}"] = row
        print(f"unseen test photos (no train/valid photo within {t:g}): {json.dumps(row)}", flush=True)

    plain = None  # the plain K-fold does not depend on the groups: once per seed, for every threshold
    for t in thresholds:
        groups = near_duplicate_groups(pre.vectors, t, ok=pre.ok)
        row = group_summary(groups, splits, labels)
        print(f"groups at {t:g}: {json.dumps(row)}", flush=True)
        if not args.skip_cv:
            c = time.perf_counter()
            ok = pre.ok
            plain = plain or plain_folds(pre.vectors[ok], labels[ok], folds=args.folds, seeds=seeds)
            row["cv"] = cv = compare_folds(pre.vectors[ok], labels[ok], groups[ok], folds=args.folds, seeds=seeds,
                                           plain=plain)
            print(f"  proxy (logistic head on pretrained Lite0 features, {cv['n']} photos), {args.folds}-fold, "
                  f"mean of seeds {cv['seeds']}: plain {cv['plain']:.4f} {_r(cv['plain_per_seed'])}, grouped "
                  f"{cv['grouped']:.4f} {_r(cv['grouped_per_seed'])}, flattery {cv['flattery']:+.4f} "
                  f"{_r(cv['flattery_per_seed'])}; plain K-fold on the {cv['n_with_mate']} photos with a group mate "
                  f"in training: {_f(cv['plain_with_mate'])}, on the others: {_f(cv['plain_without_mate'])}  "
                  f"[{time.perf_counter() - c:.0f} s]", flush=True)
        out["groups"][f"{t:g}"] = row
    out["seconds"] = time.perf_counter() - start
    print(f"done in {out['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
