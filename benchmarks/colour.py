#!/usr/bin/env python
"""Colour-family accuracy of fashion.colour on the hand-labelled photos (issue 32).

Reads tests/data/colour_labels.csv (labelling rules: tests/data/colour_labels.md), computes every photo's
garment colour and prints, per split (fit and dev: what the method was tuned and its family decision fitted
on; holdout: never looked at while tuning) and overall (dev + holdout; the confusion table too): top-1 accuracy, within-top-2 accuracy (the label is the predicted family or the
runner-up), the confusion between families, how the garment was found, and the time per photo.

  python benchmarks/colour.py                                  # photos under ../shared/data/clothing-dataset-small
  python benchmarks/colour.py --root /path/to/clothing-dataset-small
  python benchmarks/colour.py --errors dev                     # also list the dev split's mistakes
  python benchmarks/colour.py --split dev --errors dev --sheet /tmp/dev-mistakes.png
                                                               # the dev half only (the holdout half stays
                                                               # unseen while tuning), its mistakes drawn
                                                               # as a contact sheet: photo | garment mask
  python benchmarks/colour.py --second tests/data/colour_labels_second.csv   # a second labeller's agreement
  python benchmarks/colour.py --modes RUN                      # the colour modes of photo queries on a run

``--modes RUN`` (a run of clothing-dataset-small with ``--query-split test``): for every test photo and every
colour family other than its own for which the gallery holds at least 10 items of that family and of the
photo's category, "this, but in <family>" (``neighbors_of(id, 10, colour=family)``): the share of the top 10
of that family (by the items' computed colour) and of the photo's category; the same with the family only as
a filter and the plain embedding's ranking, side by side; then for ``any`` and ``same`` against no colour
mode: the top 10's share of the photo's category and of the photo's own colour family.

``--speed N`` (with ``--base-tree DIR``, another checkout of the project, e.g. ``/work/main``): the time of
:func:`fashion.colour.table.photo_colour` (file in, colour columns out: the JPEG decode included, as the run's
colour stage pays it) on N photos of the dataset's train split (sorted, every k-th so that all classes come),
each code in its own fresh process after one warm-up photo outside the set, the two codes alternated
``--repeat`` times in this one run; wall and CPU (process) time per photo, and how many photos' families the
two codes agree on.

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
from fashion.colour.labels import SPLITS, Score, agreement, locate, read_labels  # noqa: E402
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


def _shares(found, family: str | None, label: str) -> tuple[float, float, int]:
    """(share of ``found``'s results of ``family``, share of ``label``, how many results)."""
    n = len(found.results)
    if not n:
        return float("nan"), float("nan"), 0
    return (sum(m.colour == family for m in found.results) / n, sum(m.label == label for m in found.results) / n, n)


def modes(run_dir: Path, k: int = 10, least: int = 10, limit: int | None = None) -> int:
    """The colour modes on a run (see the module docstring); prints the table and returns 0."""
    import numpy as np

    from fashion.service import SimilarityService

    start = time.perf_counter()
    service = SimilarityService.open(run_dir, warm=False)
    items = service.run.items
    colours, labels = service.colours.family, items["label"].astype(str).to_numpy()
    gallery = service.run.gallery_ids
    queries = np.flatnonzero((items["role"].astype(str) == "query").to_numpy() & items["ok"].to_numpy(bool)
                             & (colours != ""))
    if limit:
        queries = queries[:limit]
    pairs = {}  # (label, family) -> gallery items of both
    for label, family in zip(labels[gallery], colours[gallery]):
        pairs[(label, family)] = pairs.get((label, family), 0) + 1
    fit = time.perf_counter()
    service.colours.basis()
    fit = time.perf_counter() - fit
    tally = {name: [] for name in ("in family (invariant)", "in family (plain)", "none", "same", "any")}
    seconds = {name: 0.0 for name in tally}
    for i in queries:
        i = int(i)
        for family in sorted({f for (label, f), n in pairs.items() if label == labels[i] and n >= least}):
            if family == colours[i]:
                continue
            for name, kwargs in (("in family (invariant)", {"colour": family}),
                                 ("in family (plain)", {"filters": [f"colour={family}"]})):
                t = time.perf_counter()
                found = service.neighbors_of(i, k, **kwargs)
                seconds[name] += time.perf_counter() - t
                tally[name].append(_shares(found, family, labels[i]))
        for name, colour in (("none", None), ("same", "same"), ("any", "any")):
            t = time.perf_counter()
            found = service.neighbors_of(i, k, colour=colour)
            seconds[name] += time.perf_counter() - t
            tally[name].append(_shares(found, colours[i], labels[i]))
    predicted = [service.predicted_category(int(i)) for i in queries]
    right = np.mean([p == labels[i] for p, i in zip(predicted, queries)]) if predicted and predicted[0] else None
    print(f"run: {run_dir} ({len(gallery)} gallery items, {len(queries)} test queries with a colour); k = {k}; "
          f"colour directions: {service.colours.basis().shape[1]} of {service.run.embeddings.shape[1]} dims, "
          f"fitted in {fit:.2f} s; the classifier's category of the queries: "
          + ("none (no trained head)" if right is None else f"{right:.3f} right"))
    print(f"{'mode':<24} {'queries':>8} {'family share':>13} {'category share':>15} {'both >= 0.9':>12} {'ms/query':>9}")
    for name, rows in tally.items():
        if not rows:
            continue
        arr = np.array([(f, c) for f, c, n in rows if n], dtype=float)
        target = "family" if name.startswith("in family") else "query's own"
        both = float(np.mean((arr[:, 0] >= 0.9) & (arr[:, 1] >= 0.9))) if len(arr) else float("nan")
        print(f"{name:<24} {len(rows):>8} {np.nanmean(arr[:, 0]):>13.3f} {np.nanmean(arr[:, 1]):>15.3f} {both:>12.3f} "
              f"{1000 * seconds[name] / len(rows):>9.1f}   ({target} colour)")
    print(f"family share: results of the asked family (in family modes) or of the query's own family (none, same, "
          f"any), by the items' computed colour; category share: results of the query's label. "
          f"Total {time.perf_counter() - start:.1f} s")
    return 0


SPEED_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from fashion.colour.table import photo_colour
paths = json.loads(sys.stdin.read())
photo_colour(paths[0])  # warm-up (imports, first calls): not in the set
wall, cpu = time.perf_counter(), time.process_time()
families = [photo_colour(p)[0]["colour"] for p in paths[1:]]
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "families": families}))
"""


def speed(root: Path, n: int, base_tree: Path | None, repeat: int) -> int:
    """Time the colour of ``n`` photos (decode included) with this checkout and ``base_tree``'s; prints a table."""
    import json
    import os
    import subprocess

    files = sorted((root / "train").glob("*/*.jpg"))
    if len(files) < n + 1:
        print(f"--speed needs at least {n + 1} photos under {root / 'train'}, found {len(files)}", file=sys.stderr)
        return 2
    step = len(files) // (n + 1)
    paths = [os.fspath(f) for f in files[::step][:n + 1]]
    trees = [("this", REPO)] + ([("base", base_tree.resolve())] if base_tree else [])
    results = {name: [] for name, _ in trees}
    families = {}
    for _ in range(repeat):
        for name, tree in trees:
            proc = subprocess.run([sys.executable, "-c", SPEED_CHILD, os.fspath(tree)], input=json.dumps(paths),
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.fspath(tree)})
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            results[name].append((out["wall"], out["cpu"]))
            families[name] = out["families"]
    print(f"colour of {n} photos of {root / 'train'} (decode + colour, one process each, {repeat} alternations)")
    print(f"{'code':<6} {'tree':<40} {'wall ms/photo':>14} {'cpu ms/photo':>13}   (each run)")
    for name, tree in trees:
        runs = results[name]
        print(f"{name:<6} {str(tree):<40} {1000 * min(w for w, _ in runs) / n:>14.1f} {1000 * min(c for _, c in runs) / n:>13.1f}"
              f"   " + ", ".join(f"{1000 * w / n:.1f}/{1000 * c / n:.1f}" for w, c in runs))
    if base_tree:
        this, base = results["this"], results["base"]
        print(f"this / base: wall {min(w for w, _ in this) / min(w for w, _ in base):.3f}, "
              f"cpu {min(c for _, c in this) / min(c for _, c in base):.3f} (best runs); families agree on "
              f"{sum(a == b for a, b in zip(families['this'], families['base']))} of {n} photos")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="clothing-dataset-small root")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--size", type=int, default=SIZE, help="long side (px) the colour is computed at")
    parser.add_argument("--errors", choices=SPLITS, help="list this split's mistakes")
    parser.add_argument("--split", choices=SPLITS, help="score this split only")
    parser.add_argument("--second", type=Path, help="a second labeller's labels of some of the photos (same columns): "
                        "the two labellers' agreement and the code's against each, on those photos")
    parser.add_argument("--sheet", type=Path, help="with --errors: draw the mistakes (photo | garment mask) to this PNG")
    parser.add_argument("--modes", type=Path, metavar="RUN", help="measure the colour modes on this run instead")
    parser.add_argument("--limit", type=int, help="with --modes: the first N test queries only")
    parser.add_argument("--speed", type=int, metavar="N", help="time the colour of N photos (decode included) instead")
    parser.add_argument("--base-tree", type=Path, metavar="DIR", help="with --speed: also time this checkout's code")
    parser.add_argument("--repeat", type=int, default=2, help="with --speed: alternations of the codes")
    args = parser.parse_args(argv)
    if args.speed:
        return speed(args.root, args.speed, args.base_tree, max(1, args.repeat))
    if args.modes:
        return modes(args.modes, limit=args.limit)

    labels = read_labels(args.labels)
    paths = locate(labels, args.root, sample_root())
    source = str(args.root) if args.root.is_dir() else "the bundled sample (test split only)"
    scores = {split: Score() for split in SPLITS}
    methods: Counter = Counter()
    missing = 0
    seconds = 0.0
    mistakes = []
    predicted = {}
    for label, path in zip(labels, paths):
        if path is None:
            missing += 1
            continue
        if args.split and label.split != args.split:
            continue
        image = open_image(path, min_size=args.size)  # as the run's colour stage decodes it (table.file_colour)
        start = time.perf_counter()
        colour = garment_colour(image, size=args.size)
        seconds += time.perf_counter() - start
        methods[colour.method] += 1
        predicted[label.relpath] = colour.family
        scores[label.split].add(label.family, colour.family, colour.family_2, label.family_2)
        if label.split == args.errors and colour.family != label.family:
            mistakes.append((label, colour, path))
    total = Score()  # dev and holdout, as every round before the fit split reported "all"
    for split in ("dev", "holdout"):
        total.merge(scores[split])

    print(f"photos: {sum(score.n for score in scores.values())} from {source} ({missing} labelled photos not found); "
          f"size {args.size} px")
    print(f"garment found by: {dict(methods)}")
    timed = sum(score.n for score in scores.values())  # every photo coloured above, fit included
    print(f"colour time: {1000 * seconds / max(timed, 1):.1f} ms/photo (decoded photo in, family out; "
          "decoding not counted)")
    print(f"{'split':<8} {'n':>4} {'top1':>6} {'top2':>6} {'either':>6}")
    for name, score in [*scores.items(), ("all", total)]:
        print(f"{name:<8} {score.n:>4} {score.top1_accuracy:6.3f} {score.top2_accuracy:6.3f} {score.either_accuracy:6.3f}")
    print("top1: predicted family = label; top2: label in (predicted family, runner-up); either: predicted family "
          "in (label, the labeller's second family); all: dev + holdout. The colour-family decision was fitted on "
          "fit + dev (fashion/colour/model.py): their figures are its training fit; cross-validated figures: "
          "scripts/fit_colour_model.py; spare: labelled like fit, never fitted on (unseen, like holdout)")
    print()
    print(confusion_table(total))
    if args.second:
        second = read_labels(args.second)
        n, same, near = agreement(labels, second)
        mine = [label for label in second if label.relpath in predicted]
        first = {label.relpath: label.family for label in labels}
        print(f"\nsecond labeller ({args.second.name}): {n} photos; the labellers agree on top-1 {same:.3f}, "
              f"either's family among the other's two {near:.3f}; the code's family agrees with the first "
              f"{sum(predicted[l.relpath] == first[l.relpath] for l in mine) / max(len(mine), 1):.3f}, with the "
              f"second {sum(predicted[l.relpath] == l.family for l in mine) / max(len(mine), 1):.3f} "
              f"({len(mine)} photos scored)")
    if mistakes:
        print(f"\n{args.errors} mistakes ({len(mistakes)}):")
        for label, colour, _ in mistakes:
            shares = ", ".join(f"{f} {s:.2f}" for f, s in colour.families().items())
            print(f"  {label.relpath}  label {label.family}/{label.family_2 or '-'}  got {colour.family}/"
                  f"{colour.family_2 or '-'} [{shares}] {colour.method} {colour.garment_share:.2f}  # {label.note}")
        if args.sheet:
            contact_sheet(mistakes, args.sheet, args.size)
            print(f"contact sheet: {args.sheet}")
    return 0


def contact_sheet(mistakes, out: Path, size: int, columns: int = 4, cell: int = 150) -> None:
    """Each mistake as the photo beside its garment mask (background tinted green), label and prediction
    written under it, ``columns`` pairs a row."""
    import numpy as np
    from PIL import Image, ImageDraw
    from skimage.color import lab2rgb

    from fashion.colour.garment import downsized_lab, garment_mask

    rows = -(-len(mistakes) // columns)
    sheet = Image.new("RGB", (columns * 2 * cell, rows * (cell + 28)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (label, colour, path) in enumerate(mistakes):
        found = garment_mask(downsized_lab(open_image(path, min_size=size), None, size))
        rgb = (np.clip(lab2rgb(found.lab), 0, 1) * 255).astype(np.uint8)
        tinted = rgb.copy()
        tinted[~found.mask] = (0.3 * tinted[~found.mask] + [0, 150, 0]).astype(np.uint8)
        x, y = (n % columns) * 2 * cell, (n // columns) * (cell + 28)
        for offset, picture in ((0, rgb), (cell, tinted)):
            image = Image.fromarray(picture)
            image.thumbnail((cell - 4, cell))
            sheet.paste(image, (x + offset, y))
        draw.text((x + 2, y + cell + 1), f"{n}: {label.family}/{label.family_2 or '-'} -> {colour.family}/"
                  f"{colour.family_2 or '-'} ({colour.method})", fill="black")
        draw.text((x + 2, y + cell + 14), f"{label.relpath.split('/')[1]}: {label.note}"[:48], fill="blue")
    sheet.save(out)


if __name__ == "__main__":
    sys.exit(main())
