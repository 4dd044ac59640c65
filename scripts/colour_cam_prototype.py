#!/usr/bin/env python
"""Offline prototype (issue 32, job colourcam): does the clothing network's own view of where the garment is
help the fitted colour-family decision?

Not part of the library. For every ``fit`` and ``dev`` photo of ``tests/data/colour_labels.csv`` (never a
``holdout`` one) it computes, once, with the bundled model (``fashion/data/model``, EfficientNet-Lite0 at 224 px,
the photo squish-resized as the embedding pass reads it) two 7 x 7 maps of the body's feature map:

- ``norm``: each cell's L2 norm over the 1,280 channels (needs no head: works for any backbone);
- ``gradcam``: Grad-CAM of the predicted class through the head (concat pool, BN, two linears; the gradient of
  the class logit with respect to the feature map, averaged per channel, weighting the channels; ReLU). The
  backward pass goes through the head only (the feature map is a leaf), so it costs little beside the body.

The maps are cached (``--cache``, an .npz). Each map, bilinearly upsampled to the colour code's 96 px Lab photo
(the squish makes the 7 x 7 grid span the whole frame) and scaled to a maximum of 1, weights the garment's
pixels into :data:`EXTRA` features, added to the 57 of :mod:`fashion.colour.features`:

- the map-weighted palette family shares of the light-corrected mask pixels (13);
- the map-weighted Lab mean of the light-corrected mask pixels (3);
- the median Lab of the light-corrected "hot" mask pixels (map >= ``HOT``; the mask where none are) (3);
- the share of the map's mass inside the mask (1: where the network and the border mask disagree);
- the map-weighted Lab mean of the whole frame, uncorrected (3: a cue independent of the mask).

Then the same cross-validation as ``scripts/fit_colour_model.py`` (stratified 5-fold x 3 seeds, the same
12 (C, second weight) settings, the same folds) for the 57 features alone and with each map's 23 features
added. The decision rule (written before the CV ran, commit message of this script): keep the cue only
if the best setting's CV top-1 beats 0.631 by >= 0.02 and its top-2 is not below 0.8217. It lost (best 0.6380 /
0.8222, gradcam; norm 0.6365 / 0.8256): the figures and the ``--paired`` diagnostic are in ``benchmarks/README.md``,
"Round of 2026-12-07 (fifth)"; nothing of it is in the library.

    PYTHONPATH=. OPENBLAS_NUM_THREADS=1 nice -n 19 python scripts/colour_cam_prototype.py --cache /tmp/colourcam/maps.npz

The garment features are cached beside the maps (``<cache stem>-features.npz``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fashion.colour.constancy import corrected  # noqa: E402
from fashion.colour.dominant import read_garment  # noqa: E402
from fashion.colour.features import FEATURE_NAMES  # noqa: E402
from fashion.colour.garment import SIZE  # noqa: E402
from fashion.colour.labels import read_labels  # noqa: E402
from fashion.colour.model import FIT_SPLITS, cross_validate, folds  # noqa: E402
from fashion.colour.palette import FAMILIES, family_of_pixels  # noqa: E402
from fashion.images import open_image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the maintainer script whose CV this repeats
from fit_colour_model import DEFAULT_ROOT, FOLDS, GRID_C, GRID_SECOND, LABELS, SEEDS, fit_photos, print_best, scores  # noqa: E402
MAPS = ("norm", "gradcam")
HOT = 0.5
EXTRA = (*(f"cam_share_{f}" for f in FAMILIES), "cam_mean_L", "cam_mean_a", "cam_mean_b",
         "hot_p50_L", "hot_p50_a", "hot_p50_b", "cam_in_mask",
         "frame_cam_mean_L", "frame_cam_mean_a", "frame_cam_mean_b")


def compute_maps(paths, batch: int = 8) -> dict[str, np.ndarray]:
    """(n, 7, 7) float32 maps of each kind, and the predicted class and its probability, per photo."""
    import torch

    from fashion.modelio import bundled_model_dir, load_model

    torch.set_num_threads(1)
    loaded = load_model(bundled_model_dir())
    body, head = loaded.body, loaded.head
    norm, grad, pred, prob = [], [], [], []
    for start in range(0, len(paths), batch):
        images = [open_image(p) for p in paths[start:start + batch]]
        x = loaded.preprocess(images)
        with torch.no_grad():
            fmap = body(x).float()
        fmap.requires_grad_(True)
        logits = head(fmap)
        top = logits.argmax(dim=1)
        logits.gather(1, top[:, None]).sum().backward()
        alpha = fmap.grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((alpha * fmap).sum(dim=1))
        norm.append(fmap.detach().norm(dim=1).numpy())
        grad.append(cam.detach().numpy())
        pred.append(top.numpy())
        prob.append(torch.softmax(logits.detach(), dim=1).max(dim=1).values.numpy())
        if start // batch % 20 == 0:
            print(f"  maps {start + len(images)} / {len(paths)}", flush=True)
    return {"norm": np.concatenate(norm).astype(np.float32), "gradcam": np.concatenate(grad).astype(np.float32),
            "pred": np.concatenate(pred), "prob": np.concatenate(prob)}


def upsampled(cell_map: np.ndarray, h: int, w: int) -> np.ndarray:
    """A 7 x 7 map over the whole frame, bilinear at the h x w photo's pixel centres, scaled to max 1."""
    from scipy.ndimage import map_coordinates

    n = cell_map.shape[0]
    yy = (np.arange(h) + 0.5) * n / h - 0.5
    xx = (np.arange(w) + 0.5) * n / w - 0.5
    grid = np.meshgrid(np.clip(yy, 0, n - 1), np.clip(xx, 0, n - 1), indexing="ij")
    up = map_coordinates(cell_map.astype(np.float64), grid, order=1)
    top = up.max()
    return up / top if top > 1e-12 else np.ones_like(up)


def cam_features(reading, cell_map: np.ndarray) -> np.ndarray:
    """The :data:`EXTRA` values of one garment reading weighted by one map."""
    lab, mask = reading.found.lab, reading.found.mask
    h, w, _ = lab.shape
    m = upsampled(cell_map, h, w)
    pixels = corrected(lab, mask, lab[mask])
    weights = m[mask]
    total = weights.sum()
    if total <= 1e-12:
        weights, total = np.ones(len(pixels)), float(len(pixels))
    votes = np.bincount(family_of_pixels(pixels), weights=weights, minlength=len(FAMILIES)) / total
    mean = (pixels * weights[:, None]).sum(axis=0) / total
    hot = m[mask] >= HOT
    hot_median = np.median(pixels[hot] if hot.any() else pixels, axis=0)
    inside = float(m[mask].sum() / m.sum())
    frame = (lab.reshape(-1, 3) * m.reshape(-1, 1)).sum(axis=0) / m.sum()
    return np.array([*votes, *mean, *hot_median, inside, *frame])


def grid(X, y, y2, splits, name: str) -> dict:
    print(f"{name}: {X.shape[1]} features; stratified {FOLDS}-fold x {len(SEEDS)} seeds (mean of the seeds)")
    print(f"{'C':>6} {'second':>6} {'top1':>7} {'top2':>7}")
    results = {}
    for C in GRID_C:
        for weight in GRID_SECOND:
            runs = [scores(*cross_validate(X, y, y2, C, weight, split), y) for split in splits]
            results[(C, weight)] = tuple(float(np.mean(v)) for v in zip(*runs))
            print(f"{C:>6} {weight:>6} {results[(C, weight)][0]:7.4f} {results[(C, weight)][1]:7.4f}", flush=True)
    best = max(results, key=lambda key: results[key])
    print(f"{name} best: C {best[0]}, second {best[1]}: top1 {results[best][0]:.4f} top2 {results[best][1]:.4f}")
    return results


def paired(base, extra, y, y2, splits, C: float = 0.05, second_weight: float = 0.3) -> None:
    """A diagnostic after the verdict: at the setting both grids chose, per seed, the photos the map's features
    turn right and wrong against the 57 alone; the accuracy on the photos where the mask fell back to the centre
    ellipse and where the map's mass lies mostly outside the border mask; how the map and the mask overlap."""
    y = np.asarray(y, dtype=object)
    centre = base[:, list(FEATURE_NAMES).index("centre_fallback")] > 0.5
    today = [cross_validate(base, y, y2, C, second_weight, split)[0] == y for split in splits]
    for kind in MAPS:
        inside = extra[kind][:, EXTRA.index("cam_in_mask")]
        outside = inside < 0.5
        print(f"{kind}: the map's mass inside the mask: median {np.median(inside):.2f}, under half on "
              f"{int(outside.sum())} of {len(y)} photos; centre fallback on {int(centre.sum())}")
        X = np.hstack([base, extra[kind]])
        for seed, (split, before) in enumerate(zip(splits, today)):
            after = cross_validate(X, y, y2, C, second_weight, split)[0] == y
            print(f"  seed {seed}: top1 {before.mean():.4f} -> {after.mean():.4f}; turned right {int((after & ~before).sum())}, "
                  f"wrong {int((before & ~after).sum())}; centre-fallback photos {int(before[centre].sum())} -> "
                  f"{int(after[centre].sum())} of {int(centre.sum())} right; map mostly outside the mask "
                  f"{int(before[outside].sum())} -> {int(after[outside].sum())} of {int(outside.sum())}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--cache", type=Path, required=True, help="the maps' .npz (computed when missing)")
    parser.add_argument("--maps-only", action="store_true", help="compute and cache the maps, no CV")
    parser.add_argument("--paired", action="store_true",
                        help="no grid: at C 0.05, second weight 0.3, which photos each map turns right or wrong")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the 57 features' own grid (printed by scripts/fit_colour_model.py)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows, paths = fit_photos(read_labels(args.labels), args.root)
    relpaths = np.array([r.relpath for r in rows])
    if args.cache.is_file():
        with np.load(args.cache) as data:
            if not np.array_equal(data["relpath"], relpaths):
                raise SystemExit(f"{args.cache} holds other photos; remove it")
            maps = {k: data[k] for k in data.files}
        print(f"maps of {len(rows)} photos from {args.cache}")
    else:
        maps = compute_maps([str(p) for p in paths])
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.cache, relpath=relpaths, **maps)
        print(f"maps of {len(rows)} photos computed and cached in {args.cache}: {time.perf_counter() - start:.1f} s")
    if args.maps_only:
        return 0
    features = args.cache.with_name(args.cache.stem + "-features.npz")
    if features.is_file():
        with np.load(features) as data:
            if not np.array_equal(data["relpath"], relpaths):
                raise SystemExit(f"{features} holds other photos; remove it")
            base, extra = data["base"], {kind: data[kind] for kind in MAPS}
    else:
        readings = [read_garment(open_image(p, min_size=SIZE)) for p in paths]
        base = np.array([r.features for r in readings])
        extra = {kind: np.array([cam_features(r, maps[kind][i]) for i, r in enumerate(readings)]) for kind in MAPS}
        np.savez_compressed(features, relpath=relpaths, base=base, **extra)
    print(f"{len(rows)} photos ({', '.join(f'{s} {sum(r.split == s for r in rows)}' for s in FIT_SPLITS)}), "
          f"features read in {time.perf_counter() - start:.1f} s (cached in {features})")
    y = [r.family for r in rows]
    y2 = [r.family_2 or "" for r in rows]
    splits = [folds(y, FOLDS, seed) for seed in SEEDS]
    if args.paired:
        paired(base, extra, y, y2, splits)
        return 0
    summary = {}
    for kind in MAPS:
        name = f"+{kind} ({base.shape[1] + len(EXTRA)})"
        summary[name] = grid(np.hstack([base, extra[kind]]), y, y2, splits, name)
    if not args.no_baseline:
        summary["today (57)"] = grid(base, y, y2, splits, "today (57)")
    print_best(summary, 18)
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
