"""Two perturbations a phone photo brings that crops, light and blur do not (#30 item 3): another
*background* under the garment, and the garment *smaller in the frame*.

Both cut the garment out with the colour module's mask (:func:`fashion.colour.garment.garment_mask`: the
background is what the frame's border looks like), upsampled to the photo and feathered:

- :func:`swap_background` pastes it, where it lies, on a seeded procedural texture — a painted wall
  with uneven light, a wood floor, tiles, a folded sheet, a carpet, a checked cloth, in random colours.
  When the mask falls back to the frame's centre (the border showed no background: a garment filling
  the frame, a busy background) the photo is returned unchanged and :func:`garment_alpha` says so.
- :func:`zoom_out` shrinks the garment to 40–70 % of the frame's size and pastes it at a random place on
  the photo's own background, widened: a plain canvas of the border's median colour and noise. On a
  centre fallback the whole photo is shrunk instead (a photo of the photo, on the border's colour).

Both are pure: an image and a seed in, a new image of the same size out, the same for the same seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

TEXTURES = ("wall", "wood", "tiles", "sheet", "carpet", "check")
SCALE = (0.4, 0.7)  # the shrunk garment's size, a fraction of the frame's
FEATHER = 1.5  # Gaussian blur radius (px of the full photo) of the upsampled mask's edge


def texture(size: tuple[int, int], seed: int, kind: str | None = None) -> np.ndarray:
    """A (h, w, 3) uint8 background of ``size`` (w, h): ``kind`` of :data:`TEXTURES` (None: a seeded
    choice), in a seeded colour, with uneven light and sensor noise.

    >>> a, b = texture((30, 20), 4), texture((30, 20), 4)
    >>> a.shape, a.dtype, bool((a == b).all())
    ((20, 30, 3), dtype('uint8'), True)
    """
    rng = np.random.default_rng(seed)
    w, h = size
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))] if kind is None else kind
    colour = rng.uniform(40, 230, 3)
    second = np.clip(colour * rng.uniform(0.6, 0.9) + rng.normal(0, 15, 3), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    scale = max(w, h) / 400  # patterns are drawn for a 400 px photo
    if kind == "wall":
        rgb = np.broadcast_to(colour, (h, w, 3)).copy()
    elif kind == "wood":  # planks of three tones with grain along them
        plank = (xx // max(4, round(rng.uniform(40, 90) * scale))).astype(int) % 3
        tones = np.stack([colour, colour * 0.88, np.clip(colour * 1.08, 0, 255)])
        grain = 10 * np.sin(xx / (2.5 * scale) + 3 * np.sin(yy / (40 * scale))) * rng.uniform(0.5, 1.5)
        rgb = tones[plank] + grain[..., None]
    elif kind == "tiles":
        step = max(4, round(rng.uniform(35, 80) * scale))
        grout = ((xx % step) < max(1, 3 * scale)) | ((yy % step) < max(1, 3 * scale))
        rgb = np.where(grout[..., None], second, colour)
    elif kind == "sheet":  # soft folds
        angle = rng.uniform(0, np.pi)
        u = (xx * np.cos(angle) + yy * np.sin(angle)) / (rng.uniform(15, 40) * scale)
        folds = 18 * np.sin(u + 2 * np.sin(u / 3.1)) * np.cos((yy - xx) / (55 * scale))
        rgb = colour + folds[..., None]
    elif kind == "carpet":  # blurred noise, then fine noise
        low = Image.fromarray(np.uint8(rng.uniform(0, 255, (max(2, h // 8), max(2, w // 8)))))
        blotch = np.asarray(low.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64) / 255 - 0.5
        rgb = colour + 40 * blotch[..., None] + rng.normal(0, 14, (h, w, 1))
    elif kind == "check":  # a checked cloth: two sets of stripes
        step = max(4, round(rng.uniform(20, 60) * scale))
        stripes = ((xx // step) % 2 + (yy // step) % 2)[..., None] / 2
        rgb = colour * (1 - stripes) + second * stripes
    else:
        raise ValueError(f"unknown texture {kind!r}; known: {', '.join(TEXTURES)}")
    light = 1 + rng.uniform(-0.25, 0.25) * (xx / w - 0.5) + rng.uniform(-0.25, 0.25) * (yy / h - 0.5)
    rgb = rgb * light[..., None] + rng.normal(0, 3, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def garment_alpha(image: Image.Image, seed: int = 0) -> tuple[np.ndarray, str]:
    """The garment's opacity at the photo's size (float (h, w) in [0, 1], feathered edge) and how its
    mask was found: "border" or "centre" (the fallback, :func:`fashion.colour.garment.garment_mask`)."""
    from ..colour.garment import downsized_lab, garment_mask

    image = image.convert("RGB")
    found = garment_mask(downsized_lab(image), seed=seed)
    mask = Image.fromarray(np.uint8(found.mask) * 255).resize(image.size, Image.Resampling.BILINEAR)
    mask = mask.filter(ImageFilter.GaussianBlur(FEATHER * max(image.size) / 400))
    return np.asarray(mask, dtype=np.float64) / 255, found.method


def over(front: np.ndarray, alpha: np.ndarray, back: np.ndarray) -> Image.Image:
    """``front`` over ``back`` (float (h, w, 3) arrays) with opacity ``alpha`` ((h, w) in [0, 1]), as a uint8 image."""
    return Image.fromarray(np.clip(front * alpha[..., None] + back * (1 - alpha[..., None]), 0, 255)
                           .round().astype(np.uint8))


def swap_background(image: Image.Image, seed: int) -> Image.Image:
    """The garment of ``image`` on a seeded :func:`texture`; ``image`` unchanged (as RGB) when its mask
    falls back to the centre."""
    image = image.convert("RGB")
    alpha, method = garment_alpha(image)
    if method != "border":
        return image
    return over(np.asarray(image, dtype=np.float64), alpha, texture(image.size, seed).astype(np.float64))


def _border_canvas(rgb: np.ndarray, seed: int) -> np.ndarray:
    """A canvas of ``rgb``'s shape: the median colour of the border strip the colour module reads the
    background from (:func:`fashion.colour.garment.border_sides`, each pixel once) and its noise level."""
    from ..colour.garment import border_sides

    h, w, _ = rgb.shape
    border = rgb[np.logical_or.reduce(border_sides(h, w))]
    median = np.median(border, axis=0)
    noise = float(np.clip(np.median(np.abs(border - median)), 1, 12))
    return median + np.random.default_rng(seed).normal(0, noise, (h, w, 1))


def placement(size: tuple[int, int], scale: tuple[float, float], rng) -> tuple[int, int, int, int]:
    """Where a shrunk copy of a (w, h) ``size`` frame goes: (sw, sh, left, top), its side a ``rng``-drawn
    fraction in ``scale`` of the frame's, at a drawn place inside it (three draws, in this order)."""
    w, h = size
    factor = float(rng.uniform(*scale))
    sw, sh = max(1, round(w * factor)), max(1, round(h * factor))
    return sw, sh, int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))


def zoom_out(image: Image.Image, seed: int) -> Image.Image:
    """``image`` with the garment shrunk to a seeded 40–70 % of the frame's size, at a seeded place, on
    the photo's widened background (see the module docstring)."""
    rng = np.random.default_rng(seed)
    image = image.convert("RGB")
    w, h = image.size
    sw, sh, left, top = placement((w, h), SCALE, rng)
    rgb = np.asarray(image, dtype=np.float64)
    canvas = _border_canvas(rgb, seed)
    alpha, method = garment_alpha(image)
    if method != "border":
        alpha = np.ones((h, w))
    small = np.asarray(image.resize((sw, sh), Image.Resampling.LANCZOS), dtype=np.float64)
    small_alpha = np.asarray(Image.fromarray(np.uint8(alpha * 255)).resize((sw, sh), Image.Resampling.BILINEAR),
                             dtype=np.float64) / 255
    front, full_alpha = canvas.copy(), np.zeros((h, w))
    front[top:top + sh, left:left + sw] = small
    full_alpha[top:top + sh, left:left + sw] = small_alpha
    return over(front, full_alpha, canvas)
