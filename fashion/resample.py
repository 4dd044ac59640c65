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
400 × 533 photo to 224 × 224 (benchmarks/README.md, issue 31).
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


def _rows(pixels: np.ndarray, out_size: int) -> np.ndarray:
    """Resize uint8 ``pixels`` (H, ...) along its first axis to ``out_size`` rows (int32 sums: at most
    255 × 2**22 × (1 + a rounding) < 2**31)."""
    matrix, precision = axis_matrix(pixels.shape[0], out_size)
    block = np.ascontiguousarray(pixels, dtype=np.int32)  # a plain cast when pixels is C-contiguous
    acc = np.asarray(matrix @ block.reshape(pixels.shape[0], -1))
    if precision:
        acc += 1 << (precision - 1)
        acc >>= precision
    return np.clip(acc, 0, 255, out=acc).astype(np.uint8).reshape((out_size,) + pixels.shape[1:])


def _transposed(pixels) -> np.ndarray:
    """C-contiguous uint8 (W, H, C) of an (H, W, C) array or an RGB PIL image: through Pillow's transpose
    for 3 channels (4-byte pixels: ~4x faster than numpy's strided copy of 3-byte ones), else numpy."""
    from PIL import Image

    if isinstance(pixels, Image.Image):
        return np.asarray(pixels.transpose(Image.Transpose.TRANSPOSE))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return np.asarray(Image.fromarray(pixels).transpose(Image.Transpose.TRANSPOSE))
    return np.ascontiguousarray(pixels.transpose(1, 0, *range(2, pixels.ndim)))


def resize_bilinear_aa(pixels, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, C) → uint8 (height, width, C), as torch's antialiased bilinear resize of uint8;
    ``pixels`` may also be an RGB PIL image (no copy of it as an array first)."""
    out = pixels
    if isinstance(out, np.ndarray):
        w = out.shape[1]
    else:
        w = out.size[0]
    if w != width:  # along the width: on the transposed image, back in (H, width, C) order
        out = _transposed(_rows(_transposed(out), width))
    out = np.asarray(out)
    if out.shape[0] != height:
        out = _rows(out, height)
    if out is pixels or not (out.flags.writeable and out.flags.c_contiguous):
        out = np.array(out, dtype=np.uint8, order="C")  # the caller's own writable array
    return out
