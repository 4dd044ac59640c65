"""Planted copies for calibrating and testing duplicate finders: the transforms a real copy goes through.

Used by ``benchmarks/duplicates.py`` (the calibration on clothing-dataset-small) and the tests, so both
plant the same copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: jpeg: re-encoded at quality 40; resize: half size; crop: each side cut by its own random 2-8 %
#: (off-centre); mirror: left-right; grey: greyscale. The others are saved at JPEG quality 95.
TRANSFORMS = ("jpeg", "resize", "crop", "mirror", "grey")


def plant_copy(src, dest, transform: str, rng: np.random.Generator | None = None) -> Path:
    """Write a ``transform``-ed copy of the photo ``src`` to ``dest`` (JPEG) and return ``dest``."""
    from PIL import Image, ImageOps

    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; valid: {', '.join(TRANSFORMS)}")
    rng = rng if rng is not None else np.random.default_rng(0)
    with Image.open(src) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    quality = 40 if transform == "jpeg" else 95
    if transform == "resize":
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.LANCZOS)
    elif transform == "crop":
        f = rng.uniform(0.02, 0.08, 4)
        w, h = image.size
        image = image.crop((round(w * f[0]), round(h * f[1]), w - round(w * f[2]), h - round(h * f[3])))
    elif transform == "mirror":
        image = ImageOps.mirror(image)
    elif transform == "grey":
        image = ImageOps.grayscale(image).convert("RGB")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest, format="JPEG", quality=quality)
    return dest
