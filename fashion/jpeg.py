"""JPEG decoding through libjpeg (simplejpeg) where Pillow's decoder is not enough: a strict check of the
entropy-coded data (stop at libjpeg's first warning) and decoding at a reduced scale (1/2, 1/4, 1/8: its
fast paths) when the photo is far larger than the network's input. Used by :mod:`fashion.images`, the
one gate every file goes through."""

from __future__ import annotations

from .errors import ImageError, first_line

JPEG_SCALES = (8, 4, 2)  # libjpeg's reduced-size decodes (1/8, 1/4, 1/2): its fast paths; n/8 ones are slower


def jpeg_scale(width: int, height: int, min_size: int) -> int:
    """The largest factor f of ``JPEG_SCALES`` that leaves both sides at least ``min_size`` px (a
    libjpeg decode at 1/f scale gives ceil(side / f)), or 1: decode at full size.

    >>> jpeg_scale(3000, 4000, 224), jpeg_scale(400, 534, 224), jpeg_scale(500, 900, 224)
    (8, 1, 2)
    """
    for factor in JPEG_SCALES:
        if -(-width // factor) >= min_size and -(-height // factor) >= min_size:
            return factor
    return 1


def check_jpeg_data(data: bytes, path) -> None:
    """Decode the JPEG at 1/8 scale, stopping at libjpeg's first warning (corrupt or missing entropy
    data, a premature end of a segment): :class:`ImageError` when there is one."""
    import simplejpeg

    try:
        header = simplejpeg.decode_jpeg_header(data)
        colorspace = "CMYK" if header[2] in ("CMYK", "YCCK") else "GRAY"  # GRAY: no colour conversion
        simplejpeg.decode_jpeg(data, colorspace=colorspace, min_height=1, min_width=1, min_factor=8, strict=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ImageError(path, f"truncated or corrupt image data: {first_line(exc)}") from None


def decode_jpeg(data: bytes, path, factor: int, width: int, height: int):
    """uint8 (ceil(height / factor), ceil(width / factor), 3) RGB pixels of a JPEG decoded at 1/factor scale,
    stopping at libjpeg's first warning as :func:`check_jpeg_data` does (the whole entropy-coded data is
    read at any scale, so damaged data is refused the same)."""
    import simplejpeg

    want = (-(-height // factor), -(-width // factor))
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=want[0], min_width=want[1], strict=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ImageError(path, f"truncated or corrupt image data: {first_line(exc)}") from None
    if pixels.shape[:2] != want:  # the header Pillow read is not the one libjpeg decoded
        raise ImageError(path, f"truncated or corrupt image data: decoded {pixels.shape[1]}x{pixels.shape[0]} px "
                               f"at 1/{factor} scale, expected {want[1]}x{want[0]}")
    return pixels
