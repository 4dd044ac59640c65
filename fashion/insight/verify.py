"""Check candidate duplicate pairs on the pixels: the best normalised correlation of small grey thumbnails.

Why: embedding distance alone cannot separate copies from distinct photos of one class. On
clothing-dataset-small with planted copies (benchmarks/duplicates.py; the distances in benchmarks/README.md,
"Calibration with planted copies") the pretrained body features put greyscale copies as far from their
originals as distinct photos of the same class, so no threshold that keeps false pairs rare finds the grey
and cropped copies. The kNN table is therefore read with a generous threshold and each candidate pair is
confirmed here: a copy survives greyscale (thumbnails are grey), JPEG and resizing (thumbnails are tiny),
mirroring (the mirrored thumbnail is tried) and a slight crop (each side of one photo is cut by 0, 3.3, 6.6
or 10 % and the best of the 256 crops is kept, then refined by half steps around it). Grey thumbnails cannot tell an orange shirt from a white one
on the same backdrop, so two colour photos must also agree on a tiny opponent-colour thumbnail. Each involved file is decoded once; the crops are
area averages read from its summed-area table, so the cost is the decode plus a few ms per involved photo.
"""

from __future__ import annotations

import itertools
import logging
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

THUMB = 32  # side of the compared thumbnails (pixels)
CROP_GRID = (0.0, 0.033, 0.066, 0.10)  # fraction cut from each side, tried independently (4**4 crops)
CHROMA = 8  # side of the colour thumbnails
#: Mean difference (0-255 scale) of the two opponent-colour thumbnails over which two colour photos are
#: called different (a grey photo has no colour to compare, so a greyscale copy still matches).
CHROMA_MAX = 12.0
_GREY_CHROMA = 4.0  # a photo whose colour thumbnail nowhere exceeds this is grey
#: Correlation at or over which a candidate pair is confirmed as a copy (benchmarks/duplicates.py).
DEFAULT_MIN_SCORE = 0.98
_WORK_SIDE = 128  # photos are reduced to this long side once; crops are area averages of it


def _load(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Summed-area tables of the photo (long side ``_WORK_SIDE``): grey (h + 1, w + 1) and opponent colour
    (2, h + 1, w + 1) — R - G and (R + G) / 2 - B — or None for a grey photo."""
    from PIL import Image

    from ..images import open_image

    image = open_image(path)
    image.thumbnail((_WORK_SIDE, _WORK_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(image, dtype=np.float64)
    planes = np.stack([rgb @ np.array([0.299, 0.587, 0.114]), rgb[..., 0] - rgb[..., 1],
                       (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]])
    sat = np.zeros((3, image.height + 1, image.width + 1))
    sat[:, 1:, 1:] = planes.cumsum(1).cumsum(2)
    colour = np.abs(_box_means(sat[1:], np.zeros((1, 4)), CHROMA)).max() > _GREY_CHROMA
    return sat[0], (sat[1:] if colour else None)


def _box_means(sat: np.ndarray, fractions: np.ndarray, side: int) -> np.ndarray:
    """(B, [C,] side, side) area means of B crops of a photo from its summed-area table(s) ([C,] h + 1, w + 1);
    fractions (B, 4) = cut of left, top, right, bottom."""
    h, w = sat.shape[-2] - 1, sat.shape[-1] - 1
    steps = np.arange(side + 1) / side
    x0, x1 = fractions[:, 0] * w, (1 - fractions[:, 2]) * w
    y0, y1 = fractions[:, 1] * h, (1 - fractions[:, 3]) * h
    xs = np.rint(x0[:, None] + (x1 - x0)[:, None] * steps).astype(np.int64).clip(0, w)
    ys = np.rint(y0[:, None] + (y1 - y0)[:, None] * steps).astype(np.int64).clip(0, h)
    v = sat[..., ys[:, :, None], xs[:, None, :]]  # ([C,] B, side + 1, side + 1)
    sums = v[..., 1:, 1:] - v[..., :-1, 1:] - v[..., 1:, :-1] + v[..., :-1, :-1]
    area = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]  # 0 only for photos < side px
    means = sums / np.maximum(area, 1)
    return np.moveaxis(means, 0, 1) if sat.ndim == 3 else means


def _thumbs(sat: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """(B, THUMB²) zero-mean unit-norm grey thumbnails of B crops (a flat crop scores 0 against anything)."""
    x = _box_means(sat, fractions, THUMB).reshape(len(fractions), -1).astype(np.float32)
    x -= x.mean(1, keepdims=True)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)


_GRID = np.array(list(itertools.product(CROP_GRID, repeat=4)))
_STEP = (CROP_GRID[1] - CROP_GRID[0]) / 2
_STEPS = np.array(list(itertools.product((-_STEP, 0.0, _STEP), repeat=4)))
REFINE_FROM = 0.85  # pairs whose best grid crop correlates at least this well get a finer crop search


def _mirror(v: np.ndarray) -> np.ndarray:
    return v.reshape(-1, THUMB, THUMB)[:, :, ::-1].reshape(v.shape)


def match_scores(paths: Sequence, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Best thumbnail correlation (float64 (m,), in [-1, 1]) of each pair (paths[a[i]], paths[b[i]]).

    The best over: each photo's 256 crops against the other's whole thumbnail, plain and mirrored. Where
    both photos have colour, the best crop's opponent-colour thumbnail must also be within ``CHROMA_MAX``
    of the other's, else that match scores -1; a pair with an unreadable photo scores -1.
    """
    from ..errors import ImageError

    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    scores = np.full(len(a), -1.0)
    if len(a) == 0:
        return scores
    grey, colour, full, full_colour = {}, {}, {}, {}
    for row in np.unique(np.concatenate([a, b])).tolist():
        try:
            grey[row], colour[row] = _load(paths[row])
        except (ImageError, OSError, ValueError) as exc:
            log.debug("not verified (unreadable) %s: %s", paths[row], exc)
            continue
        full[row] = _thumbs(grey[row], np.zeros((1, 4)))[0]
        if colour[row] is not None:
            full_colour[row] = _box_means(colour[row], np.zeros((1, 4)), CHROMA)[0]
    by_row: dict[int, list[int]] = {}
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        if x in full and y in full:
            by_row.setdefault(x, []).append(i)
            by_row.setdefault(y, []).append(i)
    for row, pairs in by_row.items():
        partners = [int(b[i]) if int(a[i]) == row else int(a[i]) for i in pairs]
        others = np.stack([full[p] for p in partners])
        crops = _thumbs(grey[row], _GRID)  # (256, THUMB²)
        plain, mirrored = crops @ others.T, crops @ _mirror(others).T  # (256, p)
        flip = mirrored.max(0) > plain.max(0)
        sims = np.where(flip, mirrored, plain)
        best_crop = sims.argmax(0)
        best = sims[best_crop, np.arange(len(partners))].astype(np.float64)
        fractions = _GRID[best_crop]
        for j in np.flatnonzero(best >= REFINE_FROM):  # the crop grid is coarse: search around its best
            near = np.clip(fractions[j] + _STEPS, 0.0, CROP_GRID[-1] + _STEP)
            target = _mirror(others[j:j + 1])[0] if flip[j] else others[j]
            refined = _thumbs(grey[row], near) @ target
            if refined.max() > best[j]:
                best[j], fractions[j] = float(refined.max()), near[refined.argmax()]
        if colour[row] is not None:
            mine = _box_means(colour[row], fractions, CHROMA)  # (p, 2, CHROMA, CHROMA)
            for j, p in enumerate(partners):
                theirs = full_colour.get(p)
                if theirs is not None:
                    theirs = theirs[:, :, ::-1] if flip[j] else theirs
                    if np.abs(mine[j] - theirs).mean() > CHROMA_MAX:
                        best[j] = -1.0
        scores[pairs] = np.maximum(scores[pairs], best)
    return scores
