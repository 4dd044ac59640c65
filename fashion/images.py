"""The one safe image opener used everywhere in the package.

:func:`open_image` returns a fully decoded RGB :class:`PIL.Image.Image` (EXIF orientation applied,
transparency composited on white, 16-bit and float images scaled to 8 bits, optional bbox crop) or
raises :class:`~fashion.errors.ImageError` with a short reason, so callers can count and skip bad
files instead of crashing halfway through a run.

The file's content decides how it is decoded, not its suffix: a PNG saved as ``.jpg`` opens fine.
Truncated files are errors (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set), and so are images over
Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), even in the range where Pillow itself
only warns. A caller may set a lower ``max_pixels`` (``fashion serve``'s uploads): it is checked from the
header before a byte of pixel data is decoded, and again on the decoded image. ``strict=True`` also
refuses a JPEG whose entropy-coded data is damaged (libjpeg only warns and fills the rest with grey: a
27 KB file claiming 9000 x 9000 px would decode to 240 MB of nothing); the check decodes at 1/8 scale
with libjpeg-turbo's stop-on-warning flag (simplejpeg), so it costs 1/64 of the memory of the image.
:func:`image_info` reads only the header (format, size, mode).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .jpeg import check_jpeg_data, decode_jpeg, jpeg_scale

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

# Pillow's format names for each extension: what a file of that name must hold (``fashion serve``'s /images)
FORMATS_BY_EXTENSION: dict[str, tuple[str, ...]] = {
    ".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO"), ".png": ("PNG",), ".bmp": ("BMP", "DIB"), ".gif": ("GIF",),
    ".webp": ("WEBP",), ".tif": ("TIFF",), ".tiff": ("TIFF",),
}

BBox = Sequence[float]  # (x1, y1, x2, y2), pixels, x2/y2 exclusive

_WHITE = (255, 255, 255, 255)
# The largest image file read (compressed bytes); pixels are limited by Image.MAX_IMAGE_PIXELS.
MAX_FILE_BYTES = 1 << 30
# Decoded bytes allowed per pixel of Image.MAX_IMAGE_PIXELS: an RGB(A) image at the pixel limit fits,
# a 32-bit mode only up to 3/4 of it.
MAX_DECODED_BYTES_PER_PIXEL = 3
_ORIENTATION = 0x0112  # the EXIF tag
_SCALE_BLOCK = 1 << 20  # pixels per block when scaling 16/32-bit images to 8 bits
# Errors Pillow's decoders raise on damaged data besides OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def open_image(path: str | os.PathLike, bbox: BBox | None = None, max_pixels: int | None = None,
               strict: bool = False, min_size: int | None = None) -> Image.Image:
    """Open ``path`` as a fully loaded RGB image, optionally cropped to ``bbox``.

    ``bbox`` is ``(x1, y1, x2, y2)`` in pixels of the upright image (after EXIF orientation),
    ``x2``/``y2`` exclusive; it is clipped to the image and an empty result is an error.
    Returns an RGB ``PIL.Image.Image`` of size (width, height).
    Raises :class:`ImageError` (path, reason) for a missing, empty, unreadable, truncated or
    oversized file, an unsupported mode, or an empty crop. ``max_pixels``, ``strict`` and ``min_size``
    (without ``bbox``, whose pixels are those of the full-size image): as for :func:`open_image_bytes`.
    """
    reduce_to = None if bbox is not None else min_size
    image = to_rgb(_decode(path, max_pixels=max_pixels, strict=strict, min_size=reduce_to), path)
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


def open_image_bytes(data: bytes, name: str = "<upload>", max_pixels: int | None = None,
                     strict: bool = False, min_size: int | None = None) -> Image.Image:
    """:func:`open_image` for an image held in memory (an upload): the same checks and the same
    :class:`ImageError` reasons, naming ``name``; nothing is written to disk. ``max_pixels``: a lower
    pixel limit than Pillow's (checked from the header, then on the decoded image); ``strict``: refuse
    damaged JPEG data that libjpeg would only warn about (see the module docstring); ``min_size``: the
    caller needs only ``min_size`` px a side (a network's input), so a JPEG at least twice that on both
    sides is decoded at a reduced scale (:func:`jpeg_scale`), its data checked in the same pass."""
    return to_rgb(_decode(name, bytes(data), max_pixels=max_pixels, strict=strict, min_size=min_size), name)


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says: Pillow's format name, width, height and mode."""

    format: str
    width: int
    height: int
    mode: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_info(path: str | os.PathLike, data: bytes | None = None, max_pixels: int | None = None) -> ImageInfo:
    """The header of ``path`` (or of ``data``, named ``path``), through the same gate as :func:`open_image`;
    no pixel data is decoded. Raises :class:`ImageError` for a file that is no image or whose header claims
    more than ``max_pixels`` (or Pillow's limit) pixels."""
    with _opened(path, data) as f, _image_errors(path, "unreadable image header"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as image:
                _check_pixels(image, path, max_pixels)
                return ImageInfo(str(image.format), image.width, image.height, image.mode)


@contextlib.contextmanager
def _image_errors(path, damaged: str):
    """Pillow's errors inside the block as one :class:`ImageError` naming ``path`` (``damaged``: the
    reason given for a decoder error)."""
    try:
        yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, f"too large (decompression bomb check): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(path, "cannot identify image file (not an image or unsupported format)") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(path, f"{damaged}: {exc}") from None


@contextlib.contextmanager
def _opened(path, data: bytes | None):
    """The image's bytes as a binary file: ``data``, or ``path`` opened through the file gate (a FIFO,
    device, directory, symlink loop, bad name or huge file is refused unread); an empty one is refused."""
    from .filegate import UnsafeFileError, open_regular

    if data is not None and len(data) > MAX_FILE_BYTES:
        raise ImageError(path, f"too large: {len(data):,} bytes (the limit for images is {MAX_FILE_BYTES:,})")
    try:
        f = open_regular(path, MAX_FILE_BYTES, what="image") if data is None else io.BytesIO(data)
    except UnsafeFileError as exc:
        raise ImageError(path, exc.reason) from None
    with f:
        if (os.fstat(f.fileno()).st_size if data is None else len(data)) == 0:
            raise ImageError(path, "empty file (0 bytes)")
        yield f


def _decode(path: str | os.PathLike, data: bytes | None = None, max_pixels: int | None = None,
            strict: bool = False, min_size: int | None = None) -> Image.Image:
    """Open, fully decode and EXIF-rotate ``path`` (or ``data``, named ``path``); every failure becomes
    an :class:`ImageError`. ``min_size``: see :func:`open_image_bytes`."""
    with _image_errors(path, "truncated or corrupt image data"):
        with _opened(path, data) as f:
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: make it an error too.
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(f)
                _check_pixels(image, path, max_pixels)  # from the header: nothing decoded yet
                factor = jpeg_scale(image.width, image.height, min_size) if min_size else 1
                # libjpeg (simplejpeg) decodes a reduced scale, and a strict full-size decode in one pass with
                # its data check: the same bytes as Pillow's decode, in about half Pillow's time + the check's
                if (factor > 1 or strict) and image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L"):
                    data = data if data is not None else _read_all(f)
                    reduced = Image.fromarray(decode_jpeg(data, path, factor, image.width, image.height))
                    return _upright(image, path, reduced)
                if strict and image.format in ("JPEG", "MPO"):
                    check_jpeg_data(data if data is not None else _read_all(f), path)
                image.load()
            _check_pixels(image, path, max_pixels)  # and the decoded image, whatever its header said
            return _upright(image, path)  # while the file is open: EXIF may be read lazily


def _read_all(f) -> bytes:
    f.seek(0)
    data = f.read()
    f.seek(0)
    return data


def _check_pixels(image: Image.Image, path, max_pixels: int | None = None) -> None:
    """Enforce the pixel limit ourselves too (warning filters are process-global and not thread-safe),
    and a limit on the decoded bytes, whatever the mode: ``MAX_DECODED_BYTES_PER_PIXEL`` bytes for each
    pixel Pillow allows (a 32-bit mode at the pixel limit would decode to 4x an 8-bit one). A caller's
    ``max_pixels`` (lower than Pillow's) is checked first."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = image.width * image.height
    if max_pixels is not None and pixels > max_pixels:
        raise ImageError(path, f"too large: {image.width}x{image.height} pixels is over this limit of "
                               f"{max_pixels:,} pixels")
    if limit is None:
        return
    if pixels > limit:
        raise ImageError(
            path,
            f"too large (decompression bomb check): {image.width}x{image.height} pixels "
            f"exceeds Image.MAX_IMAGE_PIXELS={limit}",
        )
    decoded = pixels * _bytes_per_pixel(image.mode)
    if decoded > limit * MAX_DECODED_BYTES_PER_PIXEL:
        raise ImageError(
            path,
            f"too large: {image.width}x{image.height} pixels of mode {image.mode} decode to {decoded:,} bytes "
            f"(limit {limit * MAX_DECODED_BYTES_PER_PIXEL:,}: Image.MAX_IMAGE_PIXELS x "
            f"{MAX_DECODED_BYTES_PER_PIXEL} bytes)",
        )


def _bytes_per_pixel(mode: str) -> float:
    """Decoded bytes of one pixel in a Pillow mode (I;16 → 2, I/F → 4, RGB → 3, 1 → 1/8)."""
    if mode == "1":
        return 0.125
    if mode.startswith("I;16"):
        return 2
    if mode in ("I", "F") or mode.startswith("I;32"):
        return 4
    try:
        return max(1, Image.getmodebands(mode))
    except (KeyError, ValueError):
        return 4  # an unusual raw mode: the widest common pixel


def _upright(image: Image.Image, path, pixels: Image.Image | None = None) -> Image.Image:
    """Apply the EXIF orientation of ``image`` to it, or to ``pixels`` (its pixels decoded apart, e.g. at a
    reduced scale); a malformed EXIF block is ignored rather than fatal. An upright image is returned as it
    is (``exif_transpose`` would copy every decoded pixel)."""
    target = image if pixels is None else pixels
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
        if orientation not in range(2, 9):
            return target
        if pixels is None:
            return ImageOps.exif_transpose(image)
        return pixels.transpose(_TRANSPOSES[orientation])
    except _DECODE_ERRORS + (KeyError, TypeError) as exc:
        log.debug("%s: ignoring unreadable EXIF orientation (%s)", path, exc)
        return target


# EXIF orientation → the transpose that makes the image upright (as ImageOps.exif_transpose)
_TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}


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

    Works on blocks of ``_SCALE_BLOCK`` pixels, so the float64 temporaries never exceed a few MB: the
    decoded image plus its 8-bit result is the peak (in one piece, a 9000×9900 image needs 0.7 GB per
    float64 temporary; benchmarks/README.md, "Decoding one giant 16-bit image").
    """
    import numpy as np

    values = np.asarray(image)  # the decoded buffer's own dtype (uint16 / int32 / float32): no copy
    flat = values.reshape(-1)
    rows = max(1, _SCALE_BLOCK // max(1, values.shape[1] if values.ndim > 1 else 1))
    step = rows * (values.shape[1] if values.ndim > 1 else 1)

    def blocks():
        for start in range(0, flat.size, step):
            yield np.nan_to_num(flat[start:start + step].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)

    if image.mode.startswith("I;16"):
        offset, factor = 0.0, 1 / 257.0
    else:
        lo, hi = np.inf, -np.inf
        for block in blocks():
            if block.size:
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        if not np.isfinite(lo):
            lo = hi = 0.0
        if image.mode == "F" and lo >= 0.0 and hi <= 1.0:
            offset, factor = 0.0, 255.0
        elif lo >= 0.0 and hi <= 255.0:
            offset, factor = 0.0, 1.0
        elif lo >= 0.0 and hi <= 65535.0:
            offset, factor = 0.0, 1 / 257.0
        elif hi > lo:
            offset, factor = lo, 255.0 / (hi - lo)
        else:  # constant out-of-range image
            offset, factor = None, 255.0 if hi > 0 else 0.0
    out = np.empty(flat.size, dtype=np.uint8)
    for n, block in enumerate(blocks()):
        part = np.full_like(block, factor) if offset is None else (block - offset) * factor
        out[n * step:n * step + block.size] = np.clip(np.rint(part), 0, 255)
    return Image.fromarray(out.reshape(values.shape[:2]), mode="L")


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
