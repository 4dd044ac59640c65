"""The square uint8 input of a network from a decoded RGB image (:func:`resize_image`): the shorter side
to the size and the centre cropped (``"crop"``), or the whole image squeezed to a square (``"squish"``,
what ``fashion train`` uses). Decoding is :mod:`fashion.images`'s; the bilinear kernel is torch's, or
where torch is not imported its bit-for-bit numpy port (:mod:`fashion.resample`).
"""

from __future__ import annotations

import math


def _resized(image, width: int, height: int, window: tuple[int, int, int, int] | None = None) -> "np.ndarray":
    """uint8 (height, width, 3) bilinear resize of an RGB image, antialiased when shrinking; ``window`` (top,
    left, rows, cols): only that part of it (without torch, only that part is computed).

    torch's uint8 antialiased bilinear kernel (the one torchvision uses) instead of Pillow's
    ``Image.resize``: within one grey level of Pillow's BILINEAR (tested) and faster (measured in
    benchmarks/embed.py, benchmarks/README.md). In a process that has not imported torch (a server of a
    saved OpenVINO network, :mod:`fashion.embedding.ir`) the same kernel in numpy
    (:func:`fashion.resample.resize_bilinear_aa`, bitwise equal, slower), so torch is never imported for it.
    """
    import sys

    import numpy as np

    if "torch" not in sys.modules:
        from .resample import resize_bilinear_aa

        # an RGB PIL image is read as it is (no array copy of it first); the result is always a new array
        source = image if getattr(image, "mode", None) == "RGB" else np.asarray(image, dtype=np.uint8)
        return resize_bilinear_aa(source, height, width, window)
    pixels = np.array(image, dtype=np.uint8)  # writable (height, width, 3) copy
    if pixels.shape[:2] != (height, width):
        pixels = _torch_resized(pixels, width, height)
    if window is None:
        return pixels
    top, left, rows, cols = window
    return np.ascontiguousarray(pixels[top:top + rows, left:left + cols])


def _torch_resized(pixels, width: int, height: int) -> "np.ndarray":
    """torch's uint8 antialiased bilinear resize of (H, W, 3) ``pixels`` to (height, width, 3)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    chw = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # a channels-last view: no copy
    out = F.interpolate(chw, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


def resize_center_crop(image, size: int) -> "np.ndarray":
    """Shorter side to ``size`` (bilinear), then the central ``size × size``; returns uint8 (size, size, 3)."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if max(nw, nh) > _MAX_ASPECT * size:
        # an extreme aspect ratio (a 1 × 100,000 px strip would be resized to 224 × 22 million first):
        # keep only the central part of the source that can reach the final crop
        keep_w, keep_h = min(w, math.ceil(_MAX_ASPECT * size / scale)), min(h, math.ceil(_MAX_ASPECT * size / scale))
        left, top = (w - keep_w) // 2, (h - keep_h) // 2
        image = image.crop((left, top, left + keep_w, top + keep_h))
        w, h = image.size
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    return _resized(image, nw, nh, window=(top, left, size, size))  # only the crop is computed


RESIZES = ("crop", "squish")
_MAX_ASPECT = 8  # longest intermediate side of resize_center_crop, in multiples of the output size


def resize_image(image, size: int, method: str = "crop") -> "np.ndarray":
    """uint8 (size, size, 3): "crop" = :func:`resize_center_crop`; "squish" = bilinear resize of the whole
    image to size × size (aspect not kept: what `fashion train` uses, fastai ``ResizeMethod.Squish``)."""
    if method == "crop":
        return resize_center_crop(image, size)
    if method == "squish":
        return _resized(image, size, size)
    raise ValueError(f"resize must be one of {RESIZES}, got {method!r}")
