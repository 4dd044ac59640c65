"""Is an LR-finder curve fit to read a learning rate off? A pure check, and the LR a stage falls back to.

fastai's suggestion functions always return a number, whatever the curve looks like: with
``lr_find_iters=5`` the "valley" of a one-point curve is its first LR, 1e-7, and a run trained at it
ends at chance accuracy without a word. :func:`curve_problem` names what is wrong with a curve (too
few points, non-finite losses before the suggestion, a suggestion at the edge of the range searched,
no descent above the noise), and :func:`fallback_lr` is the stated LR a stage trains at instead.
"""

from __future__ import annotations

import math
from typing import Sequence

#: Fewer points than this on the curve fastai read (``recorder[num_it // 10:-5]``) are too coarse:
#: the finder spans 1e-7..10, so 20 points are 0.4 decades a step (lr_find_iters 27 or more gives them).
MIN_POINTS = 20
#: A suggestion in the lowest or highest 5 % of the LRs searched (log scale) is the edge, not a valley.
EDGE = 0.05
#: The loss must fall by at least 5 % of its starting level (fastai's curve is smoothed: on a flat one,
#: batch noise of 20 % of the loss passes for a 2 % descent one time in three, for 5 % one in sixty) ...
MIN_DROP = 0.05
#: ... and by 3 times the batch-to-batch noise (median absolute step), so noise alone is no descent.
NOISE_FACTOR = 3.0


def curve_problem(lrs: Sequence[float], losses: Sequence[float], suggestion: float | None,
                  min_points: int = MIN_POINTS, edge: float = EDGE, min_drop: float = MIN_DROP,
                  noise_factor: float = NOISE_FACTOR) -> str | None:
    """Why an LR-finder curve cannot be trusted (one plain sentence), or None when it can.

    lrs, losses: the curve the suggestion was read from (same length, lrs increasing); suggestion:
    the LR read off it. Losses after the suggestion may be NaN or infinite (the divergence that ends
    every finder run); before it they mean the curve is broken. The descent is measured on a moving
    average (window a tenth of the points) from its first value to its lowest.

    >>> import numpy as np
    >>> lrs = np.logspace(-7, 1, 60)
    >>> valley = 2.3 - 1.5 * np.exp(-((np.log10(lrs) + 2.5) ** 2))       # a dip around 3e-3
    >>> curve_problem(lrs, valley, 1e-3) is None
    True
    >>> curve_problem(lrs, np.full(60, 2.3), 1e-3)
    'the loss does not descend: it falls by 0 from 2.3 (needs more than 0.11)'
    >>> curve_problem(lrs[:5], valley[:5], 1e-7)
    'only 5 points on the curve, fewer than 20 (raise lr_find_iters)'
    >>> curve_problem(lrs, valley, 1e-7)
    'the suggestion 1.0e-07 is at the edge of the range searched (1.0e-07 to 1.0e+01)'
    """
    import numpy as np

    lrs, losses = np.asarray(lrs, dtype=float).ravel(), np.asarray(losses, dtype=float).ravel()
    if lrs.shape != losses.shape:
        raise ValueError(f"lrs and losses differ in length: {len(lrs)} and {len(losses)}")
    if suggestion is None or not math.isfinite(suggestion) or suggestion <= 0:
        return f"the suggestion is {suggestion!r}, not a positive learning rate"
    usable = np.isfinite(lrs) & (lrs > 0)
    lrs, losses = lrs[usable], losses[usable]
    broken = ~np.isfinite(losses) & (lrs <= suggestion)
    if broken.any():
        return (f"{int(broken.sum())} of the losses at or below the suggested LR {suggestion:.1e} are NaN or "
                "infinite")
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(lrs) < min_points:
        n = len(lrs)
        return f"only {n} point{'' if n == 1 else 's'} on the curve, fewer than {min_points} (raise lr_find_iters)"
    lo, hi = math.log10(lrs.min()), math.log10(lrs.max())
    where = (math.log10(suggestion) - lo) / (hi - lo) if hi > lo else 0.0
    if where < edge or where > 1 - edge:
        return (f"the suggestion {suggestion:.1e} is at the edge of the range searched "
                f"({lrs.min():.1e} to {lrs.max():.1e})")
    window = max(1, len(losses) // 10)
    level = np.convolve(losses, np.ones(window) / window, mode="valid")
    start, drop = float(level[0]), float(level[0] - level.min())
    noise = float(np.median(np.abs(np.diff(losses))))
    needed = max(min_drop * abs(start), noise_factor * noise)
    if drop <= needed:
        return f"the loss does not descend: it falls by {drop:.2g} from {start:.2g} (needs more than {needed:.2g})"
    return None


def fallback_lr(base: float, frozen: bool) -> float:
    """The peak LR a stage trains at when its LR-finder curve is not fit to read: ``base`` for a
    frozen body (the head alone), ``base / 2`` once unfrozen — fastai's ``fine_tune`` schedule
    (2e-3, then ``slice(1e-3 / 100, 1e-3)``).

    >>> fallback_lr(2e-3, frozen=True), fallback_lr(2e-3, frozen=False)
    (0.002, 0.001)
    """
    return base if frozen else base / 2
