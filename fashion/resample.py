"""torch's antialiased bilinear resize of uint8 images, bit for bit, in numpy (no torch import).

``F.interpolate(x, size, mode="bilinear", antialias=True)`` on uint8 (torch's port of Pillow-SIMD's
resampler) works in fixed point: per axis it computes each output's filter weights in float64
(support ``max(1, scale)`` taps either side, the triangle filter, normalised to sum 1), rounds them to
int16 at the largest precision ``p`` that keeps the largest weight under 2**15, sums ``weight ×
pixel`` in int32 from ``2**(p-1)``, shifts right by ``p`` and clamps to 0..255. The width is resized
first, then the height, each pass to uint8. :func:`resize_bilinear_aa` does the same operations in the
same order, so it returns the same bytes (tested against torch over many sizes,
``tests/test_resample.py``); a serving process uses it so that it need not import torch.

Each pass is one sparse matrix product (scipy's CSR times a dense int32 block, a C loop over the few
taps of each output) rather than a loop over the taps in numpy: int32 products and sums as the C
kernel's, so the same bytes, at 2-3x less CPU (``benchmarks/query_profile.py``). The sparse weight
matrices are kept per (input, output) size. The width pass works on the transposed image, transposed by
Pillow (4-byte pixels) rather than by numpy's strided copy of 3-byte ones: 15-18 % less CPU for a
400 × 533 photo to 224 × 224 (benchmarks/README.md, issue 31). A ``window`` of the output (a centre
crop) is computed from only the source rows and columns it reads, in both passes: the same bytes as the
whole output sliced, 22-34 % less CPU for the test photos' 224-px centre crops (issue 31 item 2).
"""

from __future__ import annotations

import functools
import math

import numpy as np


def axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(first source index (out,), int16 weights (out, taps), precision bits) of one axis."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0  # (interp_size / 2) * scale, interp_size 2 for bilinear
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    taps = int(math.ceil(support)) * 2 + 1
    center = scale * (np.arange(out_size) + 0.5)
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C casts truncate toward zero
    xsize = np.clip(np.minimum((center + support + 0.5).astype(np.int64), in_size) - xmin, 0, taps)
    j = np.arange(taps)
    x = np.abs(((j[None, :] + xmin[:, None]) - center[:, None] + 0.5) * invscale)
    w = np.where((x < 1.0) & (j[None, :] < xsize[:, None]), 1.0 - x, 0.0)
    total = np.zeros(out_size)
    for k in range(taps):  # summed in tap order, as the C loop does
        total = total + w[:, k]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    w_max = float(w.max()) if w.size else 0.0
    precision = 0
    while precision < 22 and int(0.5 + w_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    weights = (w * (1 << precision) + 0.5).astype(np.int64)  # non-negative: + 0.5, then truncation
    return xmin, weights, precision


@functools.lru_cache(maxsize=64)
def axis_matrix(in_size: int, out_size: int):
    """(scipy CSR int32 (out_size, in_size) of :func:`axis_weights`' taps, precision bits), kept per size."""
    from scipy import sparse

    xmin, weights, precision = axis_weights(in_size, out_size)
    taps = weights.shape[1]
    rows = np.repeat(np.arange(out_size), taps)
    cols = (xmin[:, None] + np.arange(taps)).ravel()
    values = weights.ravel()
    keep = (values != 0) & (cols < in_size)  # past an output's taps the weight is 0
    matrix = sparse.csr_matrix((values[keep].astype(np.int32), (rows[keep], cols[keep])),
                               shape=(out_size, in_size), dtype=np.int32)
    return matrix, precision


@functools.lru_cache(maxsize=256)
def axis_window(in_size: int, out_size: int, start: int, stop: int):
    """(CSR int32 (stop - start, hi - lo): the rows start..stop of :func:`axis_matrix`, precision bits, lo,
    hi): the outputs start..stop read the inputs lo..hi only (columns shifted by lo), kept per window."""
    matrix, precision = axis_matrix(in_size, out_size)
    if (start, stop) == (0, out_size):
        return matrix, precision, 0, in_size
    part = matrix[start:stop]
    if part.nnz == 0:
        return part[:, :0], precision, 0, 0
    lo, hi = int(part.indices.min()), int(part.indices.max()) + 1
    return part[:, lo:hi].tocsr(), precision, lo, hi


def _rows(pixels: np.ndarray, out_size: int, start: int = 0, stop: int | None = None,
          in_size: int | None = None) -> np.ndarray:
    """Resize uint8 ``pixels`` (H, ...) along its first axis to ``out_size`` rows, of which the rows
    ``start``..``stop`` (default all) are computed and returned (int32 sums: at most 255 × 2**22 × (1 + a
    rounding) < 2**31). ``in_size``: the axis' whole length when ``pixels`` holds only the rows lo..hi
    that those outputs read (:func:`axis_window`)."""
    stop = out_size if stop is None else stop
    matrix, precision, lo, hi = axis_window(in_size or pixels.shape[0], out_size, start, stop)
    if in_size is None:
        pixels = pixels[lo:hi]
    block = np.ascontiguousarray(pixels, dtype=np.int32)  # a plain cast when pixels is C-contiguous
    acc = np.asarray(matrix @ block.reshape(hi - lo, math.prod(block.shape[1:])))
    if precision:
        acc += 1 << (precision - 1)
        acc >>= precision
    return np.clip(acc, 0, 255, out=acc).astype(np.uint8).reshape((stop - start,) + pixels.shape[1:])


def _transposed(pixels) -> np.ndarray:
    """C-contiguous uint8 (W, H, C) of an (H, W, C) array or an RGB PIL image: through Pillow's transpose
    for 3 channels (4-byte pixels: ~4x faster than numpy's strided copy of 3-byte ones), else numpy."""
    from PIL import Image

    if isinstance(pixels, Image.Image):
        return np.asarray(pixels.transpose(Image.Transpose.TRANSPOSE))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).transpose(Image.Transpose.TRANSPOSE))
    return np.ascontiguousarray(pixels.transpose(1, 0, *range(2, pixels.ndim)))


def resize_bilinear_aa(pixels, height: int, width: int, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """uint8 (H, W, C) → uint8 (height, width, C), as torch's antialiased bilinear resize of uint8;
    ``pixels`` may also be an RGB PIL image (no copy of it as an array first). ``window`` (top, left, rows,
    cols): only that part of the output, computed from only the source pixels it reads (the same bytes as
    the whole output sliced: each output pixel is its own sum; a centre crop skips the rows or columns it
    drops, in both passes)."""
    from PIL import Image

    w, h = (pixels.shape[1], pixels.shape[0]) if isinstance(pixels, np.ndarray) else pixels.size
    top, left, rows, cols = window if window is not None else (0, 0, height, width)
    if not (0 <= top and 0 <= left and rows >= 0 and cols >= 0 and top + rows <= height and left + cols <= width):
        raise ValueError(f"window {window} is not inside the {height} x {width} output")
    # the source rows the height pass reads for the output rows top..top+rows; columns likewise
    r0, r1 = (axis_window(h, height, top, top + rows)[2:] if h != height else (top, top + rows))
    c0, c1 = (axis_window(w, width, left, left + cols)[2:] if w != width else (left, left + cols))
    out = pixels
    if (r0, r1, c0, c1) != (0, h, 0, w):
        out = out.crop((c0, r0, c1, r1)) if isinstance(out, Image.Image) else out[r0:r1, c0:c1]
    if w != width:  # along the width: on the transposed image, back in (rows, cols, C) order
        out = _transposed(_rows(_transposed(out), width, left, left + cols, in_size=w))
    out = np.asarray(out)
    if h != height:
        out = _rows(out, height, top, top + rows, in_size=h)
    if out is pixels or (isinstance(pixels, np.ndarray) and np.may_share_memory(out, pixels)) or not (
            out.flags.writeable and out.flags.c_contiguous):  # a window of full rows at the same size is a view
        out = np.array(out, dtype=np.uint8, order="C")  # the caller's own writable array
    return out
