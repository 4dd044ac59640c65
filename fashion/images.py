"""The one safe image opener used everywhere in the package.

:func:`open_image` returns a fully decoded RGB :class:`PIL.Image.Image` (EXIF orientation applied,
transparency composited on white, 16-bit and float images scaled to 8 bits, optional bbox crop) or
raises :class:`~fashion.errors.ImageError` with a short reason, so callers can count and skip bad
files instead of crashing halfway through a run.

The file's content decides how it is decoded, not its suffix: a PNG saved as ``.jpg`` opens fine.
Truncated files are errors (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set), and so are images over
Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), even in the range where Pillow itself
only warns.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from typing import Iterable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

BBox = Sequence[float]  # (x1, y1, x2, y2), pixels, x2/y2 exclusive

_WHITE = (255, 255, 255, 255)
# Errors Pillow's decoders raise on damaged data besides OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def open_image(path: str | os.PathLike, bbox: BBox | None = None) -> Image.Image:
    """Open ``path`` as a fully loaded RGB image, optionally cropped to ``bbox``.

    ``bbox`` is ``(x1, y1, x2, y2)`` in pixels of the upright image (after EXIF orientation),
    ``x2``/``y2`` exclusive; it is clipped to the image and an empty result is an error.
    Returns an RGB ``PIL.Image.Image`` of size (width, height).
    Raises :class:`ImageError` (path, reason) for a missing, empty, unreadable, truncated or
    oversized file, an unsupported mode, or an empty crop.
    """
    image = to_rgb(_decode(path), path)
    if bbox is not None:
        image = crop_bbox(image, bbox, path)
    return image


def check_images(
    paths: Iterable[str | os.PathLike], bboxes: Iterable[BBox | None] | None = None
) -> list[tuple[str, str]]:
    """Open every image and return ``[(path, reason), ...]`` for those that fail (empty if all open)."""
    paths = list(paths)
    boxes = list(bboxes) if bboxes is not None else [None] * len(paths)
    if len(boxes) != len(paths):
        raise ValueError(f"got {len(paths)} paths but {len(boxes)} bboxes")
    bad = []
    for path, box in zip(paths, boxes):
        try:
            open_image(path, box)
        except ImageError as exc:
            bad.append((os.fspath(path), exc.reason))
    if bad:
        log.info("%d of %d images cannot be used", len(bad), len(paths))
    return bad


def open_image_bytes(data: bytes, name: str = "<upload>") -> Image.Image:
    """:func:`open_image` for an image held in memory (an upload): the same checks and the same
    :class:`ImageError` reasons, naming ``name``; nothing is written to disk."""
    return to_rgb(_decode(name, bytes(data)), name)


def _decode(path: str | os.PathLike, data: bytes | None = None) -> Image.Image:
    """Open, fully decode and EXIF-rotate ``path`` (or ``data``, named ``path``); every failure becomes
    an :class:`ImageError`."""
    try:
        size = os.stat(path).st_size if data is None else len(data)
        with (open(path, "rb") if data is None else io.BytesIO(data)) as f:
            if size == 0:
                raise ImageError(path, "empty file (0 bytes)")
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: make it an error too.
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(f)
                _check_pixels(image, path)
                image.load()
            return _upright(image, path)  # while the file is open: EXIF may be read lazily
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory, not an image") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, f"too large (decompression bomb check): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(path, "cannot identify image file (not an image or unsupported format)") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(path, f"truncated or corrupt image data: {exc}") from None


def _check_pixels(image: Image.Image, path) -> None:
    """Enforce the pixel limit ourselves too: warning filters are process-global and not thread-safe."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageError(
            path,
            f"too large (decompression bomb check): {image.width}x{image.height} pixels "
            f"exceeds Image.MAX_IMAGE_PIXELS={limit}",
        )


def _upright(image: Image.Image, path) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block is ignored rather than fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS + (KeyError, TypeError) as exc:
        log.debug("%s: ignoring unreadable EXIF orientation (%s)", path, exc)
        return image


def to_rgb(image: Image.Image, path: str | os.PathLike = "<image>") -> Image.Image:
    """Convert any Pillow mode to RGB: alpha is composited on white, 16-bit/float scaled to 8 bits.

    >>> to_rgb(Image.new("LA", (2, 1), (0, 0))).getpixel((0, 0))
    (255, 255, 255)
    >>> to_rgb(Image.new("I;16", (1, 1), 65535)).getpixel((0, 0))
    (255, 255, 255)
    """
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _scale_to_8bit(image).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
        return image if mode == "RGB" else image.convert("RGB")
    except ValueError as exc:
        raise ImageError(path, f"unsupported image mode {mode!r}: {exc}") from None


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    """Map a 16/32-bit integer or float single-channel image to mode L.

    I;16 uses its full range (0..65535 -> 0..255). I and F are taken as 8-bit when their values fit
    0..255 (floats in 0..1 as fractions), as 16-bit when they fit 0..65535, else min-max stretched.
    """
    import numpy as np

    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if image.mode == "F" and lo >= 0.0 and hi <= 1.0:
            scaled = values * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            scaled = values
        elif lo >= 0.0 and hi <= 65535.0:
            scaled = values / 257.0
        elif hi > lo:
            scaled = (values - lo) * (255.0 / (hi - lo))
        else:  # constant out-of-range image
            scaled = np.full_like(values, 255.0 if hi > 0 else 0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def crop_bbox(image: Image.Image, bbox: BBox, path: str | os.PathLike = "<image>") -> Image.Image:
    """Crop ``image`` to ``bbox`` = (x1, y1, x2, y2) clipped to its bounds; empty → :class:`ImageError`.

    >>> crop_bbox(Image.new("RGB", (10, 8)), (2, -5, 20, 4)).size
    (8, 4)
    """
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in bbox)
    except (TypeError, ValueError):
        raise ImageError(path, f"bbox must be 4 numbers (x1, y1, x2, y2), got {bbox!r}") from None
    width, height = image.size
    box = (max(0, x1), max(0, y1), min(width, x2), min(height, y2))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ImageError(path, f"bbox {tuple(bbox)} is empty inside the {width}x{height} image")
    return image.crop(box)


# ------------------------------------------------------------------ square inputs for the networks


def _resized(image, width: int, height: int) -> "np.ndarray":
    """uint8 (height, width, 3) bilinear resize of an RGB image, antialiased when shrinking.

    torch's uint8 antialiased bilinear kernel (the one torchvision uses) instead of Pillow's
    ``Image.resize``: within one grey level of Pillow's BILINEAR (tested) and faster (measured in
    benchmarks/embed.py, benchmarks/README.md).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    pixels = np.array(image, dtype=np.uint8)  # writable (height, width, 3) copy
    if pixels.shape[:2] == (height, width):
        return pixels
    chw = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # a channels-last view: no copy
    out = F.interpolate(chw, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


def resize_center_crop(image, size: int) -> "np.ndarray":
    """Shorter side to ``size`` (bilinear), then the central ``size × size``; returns uint8 (size, size, 3)."""
    import numpy as np

    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    pixels = _resized(image, nw, nh)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.ascontiguousarray(pixels[top:top + size, left:left + size])


RESIZES = ("crop", "squish")


def resize_image(image, size: int, method: str = "crop") -> "np.ndarray":
    """uint8 (size, size, 3): "crop" = :func:`resize_center_crop`; "squish" = bilinear resize of the whole
    image to size × size (aspect not kept: what `fashion train` uses, fastai ``ResizeMethod.Squish``)."""
    if method == "crop":
        return resize_center_crop(image, size)
    if method == "squish":
        return _resized(image, size, size)
    raise ValueError(f"resize must be one of {RESIZES}, got {method!r}")
