#!/usr/bin/env python
"""Colour-family accuracy of fashion.colour on the hand-labelled photos (issue 32).

Reads tests/data/colour_labels.csv (labelling rules: tests/data/colour_labels.md), computes every photo's
garment colour and prints, per split (dev: what the method was tuned on; holdout: never looked at while
tuning) and overall: top-1 accuracy, within-top-2 accuracy (the label is the predicted family or the
runner-up), the confusion between families, how the garment was found, and the time per photo.

  python benchmarks/colour.py                                  # photos under ../shared/data/clothing-dataset-small
  python benchmarks/colour.py --root /path/to/clothing-dataset-small
  python benchmarks/colour.py --errors dev                     # also list the dev split's mistakes

Without the dataset, the rows of its test split are read from the bundled sample (fashion/data/sample,
resized to 300 px), the others are skipped and counted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fashion.colour.dominant import garment_colour  # noqa: E402
from fashion.colour.garment import SIZE  # noqa: E402
from fashion.colour.labels import SPLITS, Score, locate, read_labels  # noqa: E402
from fashion.colour.palette import ALL_FAMILIES  # noqa: E402
from fashion.images import open_image  # noqa: E402
from fashion.sample import sample_root  # noqa: E402

LABELS = REPO / "tests" / "data" / "colour_labels.csv"
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "clothing-dataset-small"


def confusion_table(score: Score) -> str:
    """Rows: the label; columns: the prediction (families that occur only)."""
    names = [f for f in ALL_FAMILIES if any(f in pair for pair in score.confusion)]
    short = {f: f[:5] for f in names}
    lines = ["label \\ predicted " + " ".join(f"{short[f]:>5}" for f in names) + "     n   top1"]
    for label in names:
        counts = [score.confusion[(label, p)] for p in names]
        n = sum(counts)
        if n:
            lines.append(f"{label:<17} " + " ".join(f"{c:>5}" if c else "    ." for c in counts)
                         + f" {n:>5} {score.confusion[(label, label)] / n:6.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="clothing-dataset-small root")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--size", type=int, default=SIZE, help="long side (px) the colour is computed at")
    parser.add_argument("--errors", choices=SPLITS, help="list this split's mistakes")
    args = parser.parse_args(argv)

    labels = read_labels(args.labels)
    paths = locate(labels, args.root, sample_root())
    source = str(args.root) if args.root.is_dir() else "the bundled sample (test split only)"
    scores = {split: Score() for split in SPLITS}
    methods: Counter = Counter()
    missing = 0
    seconds = 0.0
    mistakes = []
    for label, path in zip(labels, paths):
        if path is None:
            missing += 1
            continue
        image = open_image(path)
        start = time.perf_counter()
        colour = garment_colour(image, size=args.size)
        seconds += time.perf_counter() - start
        methods[colour.method] += 1
        scores[label.split].add(label.family, colour.family, colour.family_2, label.family_2)
        if label.split == args.errors and colour.family != label.family:
            mistakes.append((label, colour))
    total = Score()
    for score in scores.values():
        total.merge(score)

    print(f"photos: {total.n} from {source} ({missing} labelled photos not found); size {args.size} px")
    print(f"garment found by: {dict(methods)}")
    print(f"colour time: {1000 * seconds / max(total.n, 1):.1f} ms/photo (decoded photo in, family out; "
          "decoding not counted)")
    print(f"{'split':<8} {'n':>4} {'top1':>6} {'top2':>6} {'either':>6}")
    for name, score in [*scores.items(), ("all", total)]:
        print(f"{name:<8} {score.n:>4} {score.top1_accuracy:6.3f} {score.top2_accuracy:6.3f} {score.either_accuracy:6.3f}")
    print("top1: predicted family = label; top2: label in (predicted family, runner-up); either: predicted family "
          "in (label, the labeller's second family)")
    print()
    print(confusion_table(total))
    if mistakes:
        print(f"\n{args.errors} mistakes ({len(mistakes)}):")
        for label, colour in mistakes:
            shares = ", ".join(f"{f} {s:.2f}" for f, s in colour.families().items())
            print(f"  {label.relpath}  label {label.family}/{label.family_2 or '-'}  got {colour.family}/"
                  f"{colour.family_2 or '-'} [{shares}] {colour.method} {colour.garment_share:.2f}  # {label.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
