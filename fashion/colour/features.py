"""What the fitted colour-family decision reads of a garment: one vector of numbers a photo.

:func:`garment_features` turns what :mod:`fashion.colour.dominant` has already computed (the palette's
per-pixel family shares of the light-corrected core, the core's Lab pixels before and after the light
correction, the dominant clusters, the mask and the background around it) into :data:`FEATURE_NAMES`'
values. Nothing here is fitted; :mod:`fashion.colour.model` holds the fitted weights that read the vector.

The groups, each chosen because a kind of dev mistake depends on it (``benchmarks/README.md``):

- ``share_<family>``: the palette's vote (13). The hand-placed palette is the starting point; the model
  learns where its votes should be read otherwise (a navy vote on a near-neutral dark core is black).
- the corrected core's Lab: mean, spread and the 10th / 50th / 90th percentiles of L*, a*, b*; the median
  and 90th percentile of C*; the chroma-weighted mean hue direction (shade boundaries: black / navy,
  grey / beige / white, brown / orange).
- the core's median Lab before the light correction, and the correction's shift of it (how much the
  background's light moved the garment).
- the three largest dominant clusters' Lab and shares (two-coloured garments, stripes).
- the background's median Lab and the spread of its L* (a coloured bed, a dark floor).
- the garment's share of the frame, whether the mask fell back to the centre ellipse, and the core's
  texture (the mean Lab distance between neighbouring core pixels: prints, checks, stripes).
"""

from __future__ import annotations

import numpy as np

from .palette import FAMILIES

_AXES = ("L", "a", "b")
_CLUSTERS = 3

FEATURE_NAMES: tuple[str, ...] = (
    *(f"share_{family}" for family in FAMILIES),
    *(f"core_mean_{axis}" for axis in _AXES),
    *(f"core_std_{axis}" for axis in _AXES),
    *(f"core_p{q}_{axis}" for q in (10, 50, 90) for axis in _AXES),
    "core_chroma_p50", "core_chroma_p90", "core_hue_a", "core_hue_b",
    *(f"raw_p50_{axis}" for axis in _AXES),
    *(f"shift_p50_{axis}" for axis in _AXES),
    *(f"cluster{i}_{part}" for i in range(_CLUSTERS) for part in (*_AXES, "share")),
    *(f"background_p50_{axis}" for axis in _AXES),
    "background_std_L",
    "garment_share", "centre_fallback", "texture",
)


def garment_features(lab: np.ndarray, mask: np.ndarray, core: np.ndarray, raw: np.ndarray, pixels: np.ndarray,
                     shares: dict[str, float], clusters: list[tuple[tuple[float, float, float], float]],
                     centre: bool) -> np.ndarray:
    """The feature vector (:data:`FEATURE_NAMES`, float64) of one garment.

    ``lab``: the downsized photo (h x w x 3 Lab); ``mask`` / ``core``: the garment's pixels and its core (h x w
    bool); ``raw`` / ``pixels``: the core's Lab pixels (n, 3) before and after the light correction;
    ``shares``: family -> share of the core's pixels the palette names so; ``clusters``: (Lab, share) of the
    dominant colours, largest first; ``centre``: the mask is the centre fallback."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, 3)
    chroma = np.hypot(pixels[:, 1], pixels[:, 2])
    weight = chroma.sum()
    hue = (pixels[:, 1:].sum(axis=0) / weight) if weight > 1e-9 else np.zeros(2)
    quantiles = np.percentile(pixels, [10, 50, 90], axis=0)  # (3 quantiles, 3 axes)
    raw_median = np.median(raw, axis=0)
    top = list(clusters)[:_CLUSTERS]
    cluster_values = []
    for i in range(_CLUSTERS):
        if i < len(top):
            (L, a, b), share = top[i]
            cluster_values += [L, a, b, share]
        else:  # fewer distinct colours: the largest cluster again, with no share
            (L, a, b), _ = top[0]
            cluster_values += [L, a, b, 0.0]
    background = lab[~mask]
    if len(background) == 0:
        background = lab.reshape(-1, 3)
    values = [
        *(shares.get(family, 0.0) for family in FAMILIES),
        *pixels.mean(axis=0), *pixels.std(axis=0), *quantiles.ravel(),
        float(np.median(chroma)), float(np.percentile(chroma, 90)), *hue,
        *raw_median, *(quantiles[1] - raw_median),
        *cluster_values,
        *np.median(background, axis=0), float(background[:, 0].std()),
        float(mask.mean()), float(centre), texture(lab, core),
    ]
    return np.asarray(values, dtype=np.float64)


def texture(lab: np.ndarray, core: np.ndarray) -> float:
    """The mean Lab distance between horizontally and vertically neighbouring pixels both in ``core``: near 0
    on a plain garment, large on stripes, checks and prints."""
    steps = []
    for axis in (0, 1):
        here = core[:-1, :] & core[1:, :] if axis == 0 else core[:, :-1] & core[:, 1:]
        diff = np.diff(lab, axis=axis)
        if here.any():
            steps.append(np.linalg.norm(diff[here], axis=1))
    return float(np.concatenate(steps).mean()) if steps else 0.0
