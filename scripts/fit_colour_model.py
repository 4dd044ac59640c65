#!/usr/bin/env python
"""Refit the colour-family decision the package ships (``fashion/data/colour_model.npz``) from the labels.

A maintainer's tool, not part of the library: run it after changing the labels
(``tests/data/colour_labels.csv``), the palette or the garment features (``fashion/colour/features.py``);
``tests/test_colour_model.py`` fails until the shipped model was fitted from the current ones. It needs the
photos of clothing-dataset-small (the ``fit`` rows are of its train and validation splits)::

    python scripts/fit_colour_model.py                      # choose C and the second family's weight, refit
    python scripts/fit_colour_model.py --C 0.05 --second-weight 0.3   # refit with these (no search)

It reads the garment features (:func:`fashion.colour.dominant.read_garment`, as the run's colour stage reads
a file) of every ``fit`` and ``dev`` photo, never a ``holdout`` one. Without ``--C``, it scores a grid of
(C, second_weight) by stratified 5-fold cross-validation repeated over 3 seeds, beside the palette's
largest-share rule (the decision before the model) on the same photos, picks the best top-1 (ties: top-2),
and refits on all of them. It writes the model only when the chosen decision beats the rule's top-1 in
cross-validation (``--force`` writes it anyway).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fashion.colour.dominant import read_garment  # noqa: E402
from fashion.colour.garment import SIZE  # noqa: E402
from fashion.colour.labels import Score, locate, read_labels  # noqa: E402
from fashion.colour.stage import feature_settings  # noqa: E402
from fashion.colour.model import FIT_SPLITS, MODEL_FILE, cross_validate, fit, folds, inputs_digest  # noqa: E402
from fashion.colour.palette import MULTICOLOUR  # noqa: E402
from fashion.images import open_image  # noqa: E402

LABELS = REPO / "tests" / "data" / "colour_labels.csv"
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "clothing-dataset-small"
GRID_C = (0.03, 0.05, 0.1, 0.2)
GRID_SECOND = (0.0, 0.3, 0.6)
FOLDS, SEEDS = 5, (0, 1, 2)


def palette_rule(shares) -> tuple[str, str | None]:
    """The decision before the model, for comparison: the family with the largest share of the core's
    pixels, ``multicolour`` when it holds under 30 % and three families hold 15 % each; runner-up the next."""
    top, top_share = shares[0]
    runner_up = shares[1][0] if len(shares) > 1 else None
    if top_share < 0.3 and sum(share >= 0.15 for _, share in shares) >= 3:
        return MULTICOLOUR, top
    return top, runner_up


def fit_photos(labels, root: Path):
    """(the labels of the photos the model is fitted on, their paths under ``root``); exits naming a missing one."""
    rows = [label for label in labels if label.split in FIT_SPLITS]
    paths = locate(rows, root)
    missing = [label.relpath for label, path in zip(rows, paths) if path is None]
    if missing:
        raise SystemExit(f"{len(missing)} labelled photos not found under {root} (e.g. {missing[0]})")
    return rows, paths


def read_features(labels, root: Path):
    """(features (n, n_features), the palette rule's (family, runner-up) per photo, the labels used)."""
    rows, paths = fit_photos(labels, root)
    X, rule = [], []
    for path in paths:
        reading = read_garment(open_image(path, min_size=SIZE))  # as fashion.colour.table.file_colour reads it
        X.append(reading.features)
        rule.append(palette_rule(reading.shares))
    return np.array(X), rule, rows


def scores(first, second, y) -> tuple[float, float]:
    """(top-1, within-top-2) accuracy, as ``benchmarks/colour.py`` scores (:class:`fashion.colour.labels.Score`)."""
    score = Score()
    for family, runner_up, label in zip(first, second, y):
        score.add(label, family, runner_up)
    return score.top1_accuracy, score.top2_accuracy


def print_best(summary: dict, width: int = 12) -> None:
    """For each named grid ({(C, second weight): (top-1, top-2)}), its best setting by top-1 then top-2."""
    print("\nsummary (best setting of each, mean of 3 seeds):")
    for name, results in summary.items():
        best = max(results, key=lambda key: results[key])
        print(f"  {name:<{width}} C {best[0]:<5} second {best[1]:<4} top1 {results[best][0]:.4f} top2 {results[best][1]:.4f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="clothing-dataset-small root")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--out", type=Path, default=MODEL_FILE)
    parser.add_argument("--C", type=float, help="inverse L2 strength (with --second-weight: no search)")
    parser.add_argument("--second-weight", type=float, help="weight of a photo's second family as a label")
    parser.add_argument("--force", action="store_true", help="write the model even where it loses to the rule")
    args = parser.parse_args(argv)
    if (args.C is None) != (args.second_weight is None):
        parser.error("--C and --second-weight go together (one alone would be ignored: the grid would run)")
    start = time.perf_counter()
    labels = read_labels(args.labels)
    X, rule, rows = read_features(labels, args.root)
    y = [label.family for label in rows]
    y2 = [label.family_2 or "" for label in rows]
    print(f"{len(rows)} photos ({', '.join(f'{s} {sum(r.split == s for r in rows)}' for s in FIT_SPLITS)}), "
          f"{X.shape[1]} features, read in {time.perf_counter() - start:.1f} s")
    rule_scores = scores([r[0] for r in rule], [r[1] for r in rule], y)
    print(f"palette rule (the decision before):  top1 {rule_scores[0]:.4f}  top2 {rule_scores[1]:.4f}")
    if args.C is not None and args.second_weight is not None:
        chosen = (args.C, args.second_weight)
    else:
        splits = [folds(y, FOLDS, seed) for seed in SEEDS]
        results = {}
        print(f"cross-validation, stratified {FOLDS}-fold x {len(SEEDS)} seeds (mean of the seeds):")
        print(f"{'C':>6} {'second':>6} {'top1':>7} {'top2':>7}")
        for C in GRID_C:
            for weight in GRID_SECOND:
                runs = [scores(*cross_validate(X, y, y2, C, weight, split), y) for split in splits]
                results[(C, weight)] = tuple(float(np.mean(v)) for v in zip(*runs))
                print(f"{C:>6} {weight:>6} {results[(C, weight)][0]:7.4f} {results[(C, weight)][1]:7.4f}")
        chosen = max(results, key=lambda key: results[key])
        best = results[chosen]
        print(f"chosen: C {chosen[0]}, second weight {chosen[1]}: top1 {best[0]:.4f} top2 {best[1]:.4f} against "
              f"the rule's {rule_scores[0]:.4f} / {rule_scores[1]:.4f} on the same photos")
        if best[0] <= rule_scores[0] and not args.force:
            print("the fitted decision does not beat the rule in cross-validation: model not written")
            return 1
    model = fit(X, y, y2, chosen[0], chosen[1], inputs=inputs_digest(labels, feature_settings()))
    model.save(args.out)
    train = scores(*model.top_two(X), y)
    print(f"{args.out}: C {model.C}, second weight {model.second_weight}, inputs {model.inputs}, digest "
          f"{model.digest} ({args.out.stat().st_size} bytes); on its own training photos top1 {train[0]:.4f} "
          f"top2 {train[1]:.4f}; {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
