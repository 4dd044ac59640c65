"""Recomposed training photos (#30 item 3): the garment on another *real* background, or the whole photo
smaller in the frame — a training lever aimed at the two perturbations the out-of-split check found the
model weakest on (:mod:`.backdrops`: the garment on another background, the garment smaller in the frame).

The lever and the check are kept apart where they can be, so that the check still measures photos unlike
the training ones:

- the check pastes the garment on a *procedural* texture (painted wall, wood, tiles …); here the new
  background is a *photographed* one: a strip of another training photo's own floor, bed or wall (one side
  of its border with no garment in it), mirror-tiled to fill the frame;
- the check shrinks the *cut-out garment* to 40–70 % of the frame on a canvas of the border's median colour
  and noise; here the *whole photo* is shrunk to :data:`SCALE` of the frame and laid on its own mirror-tiled
  border strip.

What they share: the garment is cut out with the same mask (:func:`fashion.training.backdrops.garment_alpha`,
feathered the same way), so the background check's cut-out edges are of a kind the model has seen; and the
two size ranges overlap (0.55–0.7). A photo with no garment-free side of its border (about a quarter of
clothing-dataset-small's training photos at 224 px) passes unchanged, so ``p`` is an upper bound on the share
recomposed (``--recompose 0.3``: about 22 %).

:func:`recompose_background` and :func:`recompose_smaller` are pure (numpy/PIL in and out, seeded);
:class:`Recompose` is the fastai item transform that applies one of them to a share of the training photos,
after the squish-resize (so a garment mask costs a few ms on a 224 px image) and never to validation or
test photos (fastai's ``split_idx = 0``; and left out of the test-time-augmentation passes, which run
the training transforms). It collects the background strips of the photos it recomposes and draws the
next photos' backgrounds from them.
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import torch
from fastai.vision.augment import RandTransform
from fastai.vision.core import PILImage
from PIL import Image

from .backdrops import garment_alpha, over, placement

__all__ = ["Recompose", "SCALE", "STRIP", "background_strip", "recompose_background", "recompose_smaller",
           "recomposers", "tile_strip"]

SCALE = (0.55, 0.9)  # the shrunk photo's side, a fraction of the frame's (the check's garment: 0.4–0.7)
STRIP = 0.15  # depth of a border strip, a fraction of the photo's shorter side
CLEAN = 0.02  # a strip is background when the garment's mean opacity in it is below this
POOL = 64  # background strips kept for the next photos
KINDS = ("background", "smaller", "unchanged")  # what the transform did to a photo
COUNTING_PROCESSES = 65  # rows of the shared tally: the training process and up to 64 DataLoader workers


def background_strip(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """The cleanest side of the photo's border as a horizontal strip (depth :data:`STRIP` of the shorter side,
    rotated so its outer edge is row 0), or None when every side holds some garment."""
    h, w = alpha.shape
    d = max(2, round(STRIP * min(h, w)))
    sides = [(rgb[:d], alpha[:d]), (rgb[::-1][:d], alpha[::-1][:d]),
             (np.rot90(rgb)[:d], np.rot90(alpha)[:d]), (np.rot90(rgb, -1)[:d], np.rot90(alpha, -1)[:d])]
    share, strip = min(((float(a.mean()), s) for s, a in sides), key=lambda t: t[0])
    return np.ascontiguousarray(strip) if share < CLEAN else None


def tile_strip(strip: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w, 3) float canvas of ``size`` (w, h): the strip resized to the width, then stacked with its
    mirror image (strip, flipped strip, strip …) down to the height — a seamless floor of the strip's texture.

    >>> tile_strip(np.arange(6, dtype=float).reshape(2, 1, 3).repeat(3, 1), (3, 5))[:, 0, 0].tolist()
    [0.0, 3.0, 3.0, 0.0, 0.0]
    """
    w, h = size
    if strip.shape[1] != w:
        strip = np.asarray(Image.fromarray(strip.astype(np.uint8)).resize((w, strip.shape[0]), Image.Resampling.BILINEAR))
    pair = np.concatenate([strip, strip[::-1]]).astype(np.float64)
    return np.concatenate([pair] * (h // len(pair) + 1))[:h]


def recompose_background(image: Image.Image, alpha: np.ndarray, strip: np.ndarray, seed: int) -> Image.Image:
    """The garment of ``image`` (opacity ``alpha``, :func:`fashion.training.backdrops.garment_alpha`) on a floor
    tiled from ``strip`` (another photo's :func:`background_strip`), flipped left-right at a seeded coin."""
    canvas = tile_strip(strip, image.size)
    if np.random.default_rng(seed).random() < 0.5:
        canvas = canvas[:, ::-1]
    return over(np.asarray(image.convert("RGB"), dtype=np.float64), alpha, canvas)


def recompose_smaller(image: Image.Image, strip: np.ndarray, seed: int) -> Image.Image:
    """The whole ``image`` shrunk to a seeded :data:`SCALE` of the frame, at a seeded place, on a canvas tiled
    from its own border ``strip``."""
    image = image.convert("RGB")
    w, h = image.size
    sw, sh, left, top = placement((w, h), SCALE, np.random.default_rng(seed))
    canvas = tile_strip(strip, (w, h))
    canvas[top:top + sh, left:left + sw] = np.asarray(image.resize((sw, sh), Image.Resampling.BILINEAR))
    return Image.fromarray(canvas.round().astype(np.uint8))


class Recompose(RandTransform):
    """fastai item transform (training photos only): with probability ``p`` a photo is recomposed, half the
    time on another photo's background (:func:`recompose_background`; its own when none is pooled yet) and
    half the time smaller in the frame (:func:`recompose_smaller`). A photo whose border has no clean side
    (a garment filling the frame, a busy background) passes unchanged. Draws from Python's ``random``, which
    fastai seeds for the run.

    ``counts``: the training photos it saw since :meth:`take_counts` last read them, by what it did to them
    (``unchanged``: not drawn, or drawn without a clean border side; :class:`fashion.training.callbacks.EpochLog`
    logs one epoch's and starts the next at zero), wherever they were decoded: the tally is a shared-memory
    tensor with one row per process (the training process, then each DataLoader worker of ``--workers N`` by
    its id), so every writer adds to its own row and the training process reads their sum between epochs,
    when the workers are idle."""

    split_idx, order = 0, 2  # after Resize (order 1), before ToTensor
    in_tta = False  # fastai's tta runs the training transforms on test photos: not this one (evaluate.predict_tta)

    def __init__(self, p: float = 0.5):
        super().__init__(p=p)
        self.strips: deque = deque(maxlen=POOL)
        self.tally = torch.zeros((COUNTING_PROCESSES, len(KINDS)), dtype=torch.int64).share_memory_()

    def before_call(self, b, split_idx: int):
        """fastai's draw (``self.do`` with probability ``p``); a training photo it leaves out counts as unchanged."""
        super().before_call(b, split_idx)
        if not self.do and split_idx == self.split_idx:
            self._count("unchanged")

    def encodes(self, x: PILImage):
        seed = random.getrandbits(32)
        alpha, method = garment_alpha(x)
        rgb = np.asarray(x.convert("RGB"))
        own = background_strip(rgb, alpha) if method == "border" else None
        if own is None:
            self._count("unchanged")
            return x
        if random.random() < 0.5:
            strip = self.strips[random.randrange(len(self.strips))] if self.strips else own
            out, kind = recompose_background(x, alpha, strip, seed), "background"
        else:
            out, kind = recompose_smaller(x, own, seed), "smaller"
        self.strips.append(own)
        self._count(kind)
        return out  # fastcore casts it back to PILImage

    def _count(self, kind: str) -> None:
        worker = torch.utils.data.get_worker_info()
        row = 0 if worker is None else 1 + worker.id % (COUNTING_PROCESSES - 1)
        self.tally[row, KINDS.index(kind)] += 1

    @property
    def counts(self) -> dict:
        """The training photos seen since the last :meth:`take_counts`, by kind, summed over the processes."""
        return dict(zip(KINDS, self.tally.sum(0).tolist()))

    def take_counts(self) -> dict:
        """The counts so far (background, smaller, unchanged), the tally set to zero."""
        counts = self.counts
        self.tally.zero_()
        return counts

    @staticmethod
    def describe(counts: dict) -> str:
        """One epoch's counts as a log line's words.

        >>> Recompose.describe({"background": 150, "smaller": 71, "unchanged": 3179})
        'recomposed 221 of 3400 photos: 150 on another background, 71 smaller'
        """
        changed = counts["background"] + counts["smaller"]
        return (f"recomposed {changed} of {changed + counts['unchanged']} photos: {counts['background']} on "
                f"another background, {counts['smaller']} smaller")


def recomposers(dl) -> list[Recompose]:
    """The :class:`Recompose` transforms among a fastai DataLoader's item transforms (none without the lever)."""
    return [t for t in getattr(getattr(dl, "after_item", None), "fs", ()) if isinstance(t, Recompose)]
