"""Colour columns for a list of photos, one row per photo, ready to join into an item table by row.

``colour`` (a palette family or ``multicolour``), ``colour_2`` (the runner-up family: the fitted decision
always names one), ``colour_hex`` (``#rrggbb`` of the family's largest cluster, or of the cluster nearest the
family's swatches when none is of it) and ``colour_share`` (the share of the garment's pixels in that family
by the palette; 0 when the fitted decision names a family none of them fall in, as a dark navy read as black). A photo that cannot be opened (:class:`fashion.errors.ImageError`) or
holds no garment pixels gets empty columns and its reason is counted. :func:`photo_colour` is the one
function that names a photo's colour columns: the run's colour stage (:mod:`.stage`) calls it too.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pandas as pd

from ..errors import ImageError
from ..images import BBox, open_image
from .dominant import GarmentColour, garment_colour
from .garment import SIZE

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("colour", "colour_2", "colour_hex", "colour_share")


def file_colour(path, bbox: BBox | None = None, size: int = SIZE) -> GarmentColour:
    """The :class:`~fashion.colour.dominant.GarmentColour` of the photo file at ``path``, computed at ``size``
    px: a JPEG (without ``bbox``, whose coordinates are the full photo's) is decoded at the largest reduced
    scale that keeps both sides at least ``size`` px. ImageError for a file that cannot be read, ValueError
    for a photo without garment pixels."""
    return garment_colour(open_image(path, min_size=None if bbox is not None else size), bbox=bbox, size=size)


def photo_colour(path, bbox: BBox | None = None, size: int = SIZE) -> tuple[dict, str]:
    """(the colour columns of the photo at ``path`` (:func:`file_colour`), "") or (empty columns, the reason
    it was skipped)."""
    try:
        colour = file_colour(path, bbox=bbox, size=size)
    except ImageError as exc:
        return dict.fromkeys(COLUMNS), exc.reason
    except ValueError as exc:  # no garment pixels (a photo of a few pixels)
        return dict.fromkeys(COLUMNS), str(exc)
    return {"colour": colour.family, "colour_2": colour.family_2, "colour_hex": colour.hex,
            "colour_share": round(colour.share, 4)}, ""


@dataclass
class ColourTable:
    """``frame``: the colour columns, one row per input photo in input order (index 0..n-1; NA where the
    photo was skipped); ``skipped``: how many photos were skipped, by reason."""

    frame: pd.DataFrame
    skipped: Counter = field(default_factory=Counter)


def colour_table(paths: Iterable[str | os.PathLike], bboxes: Sequence[BBox | None] | None = None,
                 size: int = SIZE) -> ColourTable:
    """The colour columns of every photo of ``paths`` (``bboxes``: one garment box or None per photo)."""
    paths = list(paths)
    boxes = list(bboxes) if bboxes is not None else [None] * len(paths)
    if len(boxes) != len(paths):
        raise ValueError(f"got {len(paths)} paths but {len(boxes)} bboxes")
    rows: list[dict] = []
    skipped: Counter = Counter()
    for path, box in zip(paths, boxes):
        row, reason = photo_colour(path, box, size)
        rows.append(row)
        if reason:
            skipped[reason] += 1
    if skipped:
        log.info("colour: %d of %d photos skipped (%s)", sum(skipped.values()), len(paths),
                 ", ".join(f"{n} {reason}" for reason, n in skipped.most_common()))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["colour_share"] = frame["colour_share"].astype("float64")
    return ColourTable(frame, skipped)
