"""Colour constancy from the background: the room's light estimated from the floor, sheet or wall around
the garment, and taken out of the garment's colours.

Phone photos of clothes are taken under whatever light the room has: a window's blue daylight makes a black
tee read as navy, a warm lamp turns white into beige and grey into brown. The background these garments lie
on is mostly a neutral sheet, floor or wall (white, grey, light beige), so its colour is mostly the light's:

1. The background's pixels (outside the garment's mask, away from its outline) that are bright and of low
   chroma are the neutral reference: the brightest ``REFERENCE_SHARE`` of the background's pixels with C* at
   most ``REFERENCE_MAX_CHROMA``.
2. The light is their mean in linear RGB (grey-world on the bright, near-neutral background).
3. The garment's pixels are corrected by a von Kries gain per linear-RGB channel that turns the light into
   the reference light of the same lightness: ``REFERENCE_AB``, the median light of the dev half of the
   hand-labelled photos (a*, b* 0.8, 5.1: slightly warm), not a neutral grey. The palette's swatches were
   placed where garments fall in these photos, under that typical light; correcting to neutral instead
   shifted every garment bluer than the palette expects (dev top-1 0.634 -> 0.596: black read as navy,
   grey as blue), correcting to the typical light removes only each photo's departure from it.
4. Guard: a background of its own colour (a red bed, a green floor, a wooden floor) is not the light. The
   correction's strength falls linearly from 1 where the light is within ``FULL_BELOW`` (a*b* distance) of
   the reference to 0 at ``NONE_ABOVE`` (the gain is raised to that power), and nothing is corrected with
   fewer than ``MIN_REFERENCE`` reference pixels. A dim reference is a floor, not a lit sheet or wall (the
   brighter half of a wooden floor reads L* 50-65 and a* b* of its own): the strength falls again from 1 at
   ``LIGHT_L_FULL`` to 0 at ``LIGHT_L_NONE`` (the reference's L*). Without it a warm wooden floor was taken for
   a warm light and white shoes on it came out blue (dev: white read as blue 4 of 16 white labels; with
   it 0; top-1 0.638 -> 0.657, the plateau 60-70 to 70-80 L* within two photos; held out, run once: top-1
   0.587 -> 0.596, white read as blue 7 -> 2 of 28).

On the dev half of the hand-labelled photos (``benchmarks/colour.py --split dev``) this took top-1 from
0.634 to 0.638 and within-top-2 from 0.803 to 0.850 (benchmarks/README.md); the constants are a plateau of
a grid on dev (``FULL_BELOW`` 6-12, ``NONE_ABOVE`` 20-30, ``REFERENCE_SHARE`` 0.3-0.5 all within a photo
or two).

Where it fails: a bright background whose own colour is near the light's (a cream sheet, pale wood, a pale
blue wall) is taken, within the guard, for the light (the garment comes out shifted away from it); a garment lit
differently from its background (a shadow across it, a flash) keeps its cast; a garment that fills the frame
leaves no background to read.
"""

from __future__ import annotations

import numpy as np

from .garment import XYZ_FROM_RGB

REFERENCE_SHARE = 0.5  # the brightest share of the low-chroma background pixels the light is read from
REFERENCE_MAX_CHROMA = 30.0  # C* of a background pixel that can be a neutral reference
MIN_REFERENCE = 30  # fewer reference pixels than this: no correction
FULL_BELOW = 10.0  # the light's a*b* distance from REFERENCE_AB below which the correction is full
NONE_ABOVE = 25.0  # ... from which nothing is corrected
REFERENCE_AB = (0.8, 5.0)  # the light every photo is corrected to (a*, b*): the dev photos' median light
OUTLINE = 2  # background pixels within this many px of the garment's mask are not used
LIGHT_L_NONE = 65.0  # a light (the reference's L*) this dark or darker is not corrected for (a floor, not a sheet)...
LIGHT_L_FULL = 75.0  # ... from this L* on, fully


def light(lab: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The room's light from the background's pixels of the Lab photo ``lab`` (h x w x 3; ``background``:
    h x w bool): (its linear RGB, 3, its a*b* distance from ``REFERENCE_AB``), or None when the background has too few neutral, bright pixels."""
    pixels = lab[background]
    chroma = np.hypot(pixels[:, 1], pixels[:, 2])
    pixels = pixels[chroma <= REFERENCE_MAX_CHROMA]
    if len(pixels) < MIN_REFERENCE:
        return None
    bright = pixels[pixels[:, 0] >= np.quantile(pixels[:, 0], 1 - REFERENCE_SHARE)]
    if len(bright) < MIN_REFERENCE:
        return None
    rgb = linear_rgb(bright).mean(axis=0)
    _, a, b = lab_of(rgb[None])[0]
    return rgb, float(np.hypot(a - REFERENCE_AB[0], b - REFERENCE_AB[1]))


def strength(chroma: float) -> float:
    """How much of the correction to apply for a light ``chroma`` (a*b* units) from the reference (1 full, 0 none)."""
    return float(np.clip((NONE_ABOVE - chroma) / (NONE_ABOVE - FULL_BELOW), 0.0, 1.0))


def lightness_strength(L: float) -> float:
    """How much of the correction to apply for a light of lightness ``L`` (1 full, 0 none)."""
    return float(np.clip((L - LIGHT_L_NONE) / (LIGHT_L_FULL - LIGHT_L_NONE), 0.0, 1.0))


def corrected(lab: np.ndarray, mask: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (n, 3 Lab) of a garment corrected for the light read from the background of the Lab photo
    ``lab`` (outside ``mask``, the garment, by more than ``OUTLINE`` px); unchanged when there is no light
    to read or the background is coloured."""
    from scipy.ndimage import binary_dilation

    background = ~binary_dilation(mask, iterations=OUTLINE) if OUTLINE else ~mask
    found = light(lab, background)
    if found is None:
        return pixels
    rgb, chroma = found
    L = float(lab_of(rgb[None])[0, 0])
    weight = strength(chroma) * lightness_strength(L)
    if weight <= 0 or np.any(rgb <= 1e-4):
        return pixels
    target = linear_rgb(np.array([[L, REFERENCE_AB[0], REFERENCE_AB[1]]]))[0]
    gain = (target / rgb) ** weight
    return lab_of(np.clip(linear_rgb(pixels) * gain, 0.0, 1.0))


_RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)  # CIE XYZ -> linear sRGB (D65), garment's matrix inverted


def linear_rgb(lab: np.ndarray) -> np.ndarray:
    """Linear-light sRGB (n, 3) of Lab colours (n, 3), D65."""
    from skimage.color import lab2xyz

    return lab2xyz(np.asarray(lab, dtype=np.float64).reshape(-1, 1, 3)).reshape(-1, 3) @ _RGB_FROM_XYZ.T


def lab_of(rgb: np.ndarray) -> np.ndarray:
    """Lab (n, 3) of linear-light sRGB colours (n, 3), D65."""
    from skimage.color import xyz2lab

    return xyz2lab((np.asarray(rgb, dtype=np.float64) @ XYZ_FROM_RGB.T).reshape(-1, 1, 3)).reshape(-1, 3)
