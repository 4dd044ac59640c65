#!/usr/bin/env python
"""Offline prototype (issue 32, job colourcam part 2): does the run's own embedding of a photo help the fitted
colour-family decision?

Not part of the library. Every photo of a run is already embedded by the bundled model (``fashion/data/model``,
EfficientNet-Lite0 at 224 px, squish-resized): by default with the trained head's penultimate features (512,
``layer="head"``), or, with ``--layer body``, the body's feature map average-pooled (1,280). Both come L2-normalised,
as the run stores them. The body is ImageNet-initialised and the training's colour augmentation is mild, so the
vectors may carry colour. For every ``fit`` and ``dev`` photo of ``tests/data/colour_labels.csv`` (never a
``holdout`` one) this script computes both vectors once, with :class:`fashion.embedding.Embedder` as the run's
embedding stage builds it (fp32, the torch runtime, one thread; cached, ``--cache``), and the 57 garment features
of :mod:`fashion.colour.features` as ``scripts/fit_colour_model.py`` reads them (cached beside, or read from part
1's cache with ``--features``).

Then the same cross-validation as ``scripts/fit_colour_model.py`` (stratified 5-fold x 3 seeds, the same 12
(C, second weight) settings, the same folds) of the logistic regression on the 57 features plus one embedding
variant (:data:`VARIANTS`):

- ``head`` / ``body``: the whole vector (512 / 1,280 columns), each column standardised (as every feature is,
  inside :func:`fashion.colour.model.fit`, on the training folds);
- ``head-pca32``, ``head-pca64``, ``body-pca32``, ``body-pca64``: the vector standardised on the training folds,
  then its first 32 / 64 principal components, the PCA fitted on the training folds only (each fold its own).

The decision rule (written before the CV ran, in the commit message of this script): keep the embedding only
if the best (variant, C, second weight) reaches CV top-1 >= 0.651 on fit + dev and its top-2 is not below
0.8217 (the 57 features' 0.6307 / 0.8217, ``benchmarks/README.md``, fourth round). It lost, narrowly: the best,
``body-pca64`` at C 0.05, second weight 0.3, reached 0.6497 / 0.8426 (``body-pca32`` 0.6458 / 0.8484); the head's
vector lost outright (0.614-0.621). The figures and the ``--paired`` diagnostic are in ``benchmarks/README.md``,
"Round of 2026-12-07 (sixth)"; nothing of it is in the library.

    PYTHONPATH=. OPENBLAS_NUM_THREADS=1 nice -n 19 python scripts/colour_embedding_prototype.py \\
        --cache /tmp/colourcam/embeddings.npz --features /tmp/colourcam/maps-features.npz
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
from fashion.colour.labels import read_labels  # noqa: E402
from fashion.colour.model import FIT_SPLITS, cross_validate, fit, folds  # noqa: E402
from fashion.images import open_image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the maintainer script whose CV this repeats
from fit_colour_model import DEFAULT_ROOT, FOLDS, GRID_C, GRID_SECOND, LABELS, SEEDS, fit_photos, print_best, scores  # noqa: E402
LAYERS = ("head", "body")
# cheapest first: the PCA variants fit 89 or 121 columns, the whole vectors 569 or 1,337
VARIANTS = ("head-pca32", "head-pca64", "body-pca32", "body-pca64", "head", "body")


def compute_embeddings(paths: list[str], batch: int = 16) -> dict[str, np.ndarray]:
    """(n, d) float32 unit vectors of each layer, as the run's embedding stage computes them (fp32, torch)."""
    from fashion.embedding import Embedder
    from fashion.modelio import bundled_model_dir

    out = {}
    for layer in LAYERS:
        embedder = Embedder.create(model=bundled_model_dir(), layer=layer, precision="fp32", runtime="torch")
        result = embedder.embed(paths, batch_size=batch, num_workers=0, num_threads=1, progress=False)
        if not result.ok.all():
            raise SystemExit(f"{int((~result.ok).sum())} photos not embedded: {result.failures[:3]}")
        out[layer] = result.vectors
        print(f"  {layer}: {result.vectors.shape[1]} dims, {result.seconds:.1f} s", flush=True)
    return out


def parse(variant: str) -> tuple[str, int | None]:
    """("head" or "body", the number of principal components or None for the whole vector)."""
    layer, _, pca = variant.partition("-pca")
    return layer, (int(pca) if pca else None)


def with_pca(base, emb, k: int, train, test) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): the 57 features beside the embedding's first ``k`` principal components, the
    standardisation and the PCA fitted on the ``train`` rows only."""
    e = np.asarray(emb, dtype=np.float64)
    mean, scale = e[train].mean(axis=0), e[train].std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (e - mean) / scale
    _, _, vt = np.linalg.svd(z[train], full_matrices=False)
    p = z @ vt[:k].T
    return np.hstack([base[train], p[train]]), np.hstack([base[test], p[test]])


def cross_validate_pca(base, emb, k, y, y2, C, second_weight, splits):
    """:func:`fashion.colour.model.cross_validate` with the embedding's PCA fitted inside each fold."""
    y, y2 = np.asarray(y, dtype=object), np.asarray(y2, dtype=object)
    first = np.empty(len(y), dtype=object)
    second = np.empty(len(y), dtype=object)
    for train, test in splits:
        x_train, x_test = with_pca(base, emb, k, train, test)
        first[test], second[test] = fit(x_train, y[train], y2[train], C, second_weight).top_two(x_test)
    return first, second


def grid(base, emb, k, y, y2, splits, name: str) -> dict:
    width = base.shape[1] + (emb.shape[1] if k is None else k) if emb is not None else base.shape[1]
    print(f"{name}: {width} features; stratified {FOLDS}-fold x {len(SEEDS)} seeds (mean of the seeds)")
    print(f"{'C':>6} {'second':>6} {'top1':>7} {'top2':>7}  {'s':>5}")
    results = {}
    X = base if emb is None or k is not None else np.hstack([base, emb])
    for C in GRID_C:
        for weight in GRID_SECOND:
            t0 = time.perf_counter()
            if k is None:
                runs = [scores(*cross_validate(X, y, y2, C, weight, split), y) for split in splits]
            else:
                runs = [scores(*cross_validate_pca(base, emb, k, y, y2, C, weight, split), y) for split in splits]
            results[(C, weight)] = tuple(float(np.mean(v)) for v in zip(*runs))
            print(f"{C:>6} {weight:>6} {results[(C, weight)][0]:7.4f} {results[(C, weight)][1]:7.4f}  "
                  f"{time.perf_counter() - t0:5.1f}", flush=True)
    best = max(results, key=lambda key: results[key])
    print(f"{name} best: C {best[0]}, second {best[1]}: top1 {results[best][0]:.4f} top2 {results[best][1]:.4f}",
          flush=True)
    return results


def paired(base, emb, variants, y, y2, splits, C: float = 0.05, second_weight: float = 0.3) -> None:
    """A diagnostic after the verdict: at the setting the 57 features' grid chose, per seed of folds, top-1 and
    top-2 with and without the embedding, the photos it turns right and wrong (top-1), and per family."""
    y = np.asarray(y, dtype=object)
    today = [cross_validate(base, y, y2, C, second_weight, split) for split in splits]
    for variant in variants:
        layer, k = parse(variant)
        print(f"{variant} at C {C}, second {second_weight}:")
        gained = {}
        for seed, (split, before) in enumerate(zip(splits, today)):
            after = (cross_validate(np.hstack([base, emb[layer]]), y, y2, C, second_weight, split) if k is None
                     else cross_validate_pca(base, emb[layer], k, y, y2, C, second_weight, split))
            b, a = before[0] == y, after[0] == y
            print(f"  seed {seed}: top1 {b.mean():.4f} -> {a.mean():.4f}, top2 {scores(*before, y)[1]:.4f} -> "
                  f"{scores(*after, y)[1]:.4f}; turned right {int((a & ~b).sum())}, wrong {int((b & ~a).sum())}")
            for family in sorted(set(y)):
                gained[family] = gained.get(family, 0) + int(a[y == family].sum()) - int(b[y == family].sum())
        print("  top-1 photos gained per family, summed over the seeds: "
              + ", ".join(f"{f} {g:+d}/{int((y == f).sum())}" for f, g in sorted(gained.items(), key=lambda kv: kv[1])))


def cached(path: Path, relpaths: np.ndarray) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        if not np.array_equal(data["relpath"], relpaths):
            raise SystemExit(f"{path} holds other photos; remove it")
        return {k: data[k] for k in data.files if k != "relpath"}


def cached_or_computed(path: Path, relpaths: np.ndarray, paths: list, compute, what: str) -> dict:
    """``compute([str(p) for p in paths])`` once, saved to ``path`` beside ``relpaths``; later runs read it."""
    start = time.perf_counter()
    data = cached(path, relpaths)
    if data is None:
        data = compute([str(p) for p in paths])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, relpath=relpaths, **data)
        print(f"{what} of {len(paths)} photos computed and cached in {path}: {time.perf_counter() - start:.1f} s",
              flush=True)
    else:
        print(f"{what} of {len(paths)} photos from {path}")
    return data


def labelled_vectors(args, compute, what: str) -> tuple[list, list, np.ndarray, dict]:
    """The fit + dev photos of ``args.labels`` under ``args.root`` and their vectors, cached in ``args.cache``."""
    rows, paths = fit_photos(read_labels(args.labels), args.root)
    relpaths = np.array([r.relpath for r in rows])
    return rows, paths, relpaths, cached_or_computed(args.cache, relpaths, paths, compute, what)


def compare(base, vectors: dict, variants, rows, paired_only: bool, width: int, baseline: bool = False) -> None:
    """Each ``<vector>-pca<k>`` variant beside the 57 ``base`` features: the grid of settings (the best printed
    last, names ``width`` wide; ``baseline``: the 57 features' own grid too), or with ``paired_only`` the paired
    per-seed comparison at one setting. The folds: ``fit_colour_model``'s, on ``rows``' families."""
    y = [r.family for r in rows]
    y2 = [r.family_2 or "" for r in rows]
    splits = [folds(y, FOLDS, seed) for seed in SEEDS]
    if paired_only:
        paired(base, vectors, variants, y, y2, splits)
        return
    summary = {}
    for variant in variants:
        name, k = parse(variant)
        summary[variant] = grid(base, vectors[name], k, y, y2, splits, f"+{variant}")
    if baseline:
        summary["today (57)"] = grid(base, None, None, y, y2, splits, "today (57)")
    print_best(summary, width)


def prototype_parser(description: str, what: str, variants, only: str) -> argparse.ArgumentParser:
    """The options the colour prototypes share: photos, labels, the cache of ``what``, variants, ``--<only>-only``,
    ``--paired``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--cache", type=Path, required=True, help=f"the {what}' .npz (computed when missing)")
    parser.add_argument("--variants", nargs="+", choices=list(variants), default=list(variants))
    parser.add_argument(f"--{only}-only", action="store_true", help=f"compute and cache the {what}, no CV")
    parser.add_argument("--paired", action="store_true",
                        help="no grid: at C 0.05, second weight 0.3, each variant against the 57 features per seed")
    return parser


def main(argv=None) -> int:
    parser = prototype_parser(__doc__.splitlines()[0], "embeddings", VARIANTS, "embed")
    parser.add_argument("--features", type=Path,
                        help="the 57 features' .npz (array 'base'; default <cache stem>-features.npz, computed "
                             "when missing; scripts/colour_cam_prototype.py's cache holds the same)")
    parser.add_argument("--baseline", action="store_true",
                        help="also the 57 features' own grid (printed by scripts/fit_colour_model.py)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows, paths, relpaths, emb = labelled_vectors(args, compute_embeddings, "embeddings")
    if args.embed_only:
        return 0
    features = args.features or args.cache.with_name(args.cache.stem + "-features.npz")
    stored = cached(features, relpaths)
    if stored is None:
        base = np.array([read_garment(open_image(p, min_size=SIZE)).features for p in paths])
        np.savez_compressed(features, relpath=relpaths, base=base)
    else:
        base = stored["base"]
    print(f"{len(rows)} photos ({', '.join(f'{s} {sum(r.split == s for r in rows)}' for s in FIT_SPLITS)}), "
          f"{base.shape[1]} features read in {time.perf_counter() - start:.1f} s ({features})", flush=True)
    compare(base, emb, args.variants, rows, args.paired, width=12, baseline=args.baseline)
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
