"""The garment's dominant colours: a few CIELAB clusters of its pixels, their shares and colour families.

:func:`garment_colour` takes a photo (PIL image or RGB array), finds the garment and its core
(:mod:`fashion.colour.garment`: the half of its pixels farthest from its outline), corrects the core for the
room's light read from the background (:mod:`fashion.colour.constancy`), clusters the core's Lab
pixels with k-means (the dominant colours, each named by the palette, :mod:`fashion.colour.palette`) and
names every core pixel by the palette (through :func:`~fashion.colour.palette.family_of_pixels`' table of
rounded Lab colours, so that every pixel votes, not a sample): a family's share is the share of the core's
pixels it names. The garment's family and runner-up are then the two most probable families of the fitted
decision (:mod:`fashion.colour.model`, weights fitted to the hand-labelled photos) reading those shares, the
core's Lab statistics before and after the light correction, the dominant clusters and the background
(:func:`fashion.colour.features.garment_features`); ``multicolour`` is one of its families. On the fit and
dev photos it named 0.631 right in cross-validation where the largest share (``multicolour`` below 30 %)
named 0.596 (``benchmarks/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..images import BBox
from .constancy import corrected
from .features import garment_features
from .garment import SIZE, GarmentMask, downsized_lab, garment_mask, kmeans
from .model import shipped
from .palette import FAMILIES, MULTICOLOUR, distance_to_family, family_of, family_of_pixels, lab_to_hex

CLUSTERS = 5
MAX_PIXELS = 1000  # garment pixels clustered (a seeded sample of them when there are more)


@dataclass(frozen=True)
class ColourCluster:
    """One dominant colour: its ``hex``, CIELAB ``lab``, ``share`` of the garment's pixels and ``family``."""

    hex: str
    lab: tuple[float, float, float]
    share: float
    family: str


@dataclass(frozen=True)
class GarmentColour:
    """The colour of one garment.

    ``clusters``: the dominant colours, largest first; ``family``: a palette family or ``multicolour``;
    ``family_2``: the runner-up family (the decision's second most probable); ``share``: the share of the
    garment's pixels in ``family`` (for ``multicolour``, in its largest family); ``garment_share``: the
    share of the frame taken as garment; ``method``: how the garment was found (``border`` or ``centre``);
    ``shares``: (family, share of the garment's pixels), largest first.
    """

    clusters: tuple[ColourCluster, ...]
    family: str
    family_2: str | None
    share: float
    garment_share: float
    method: str
    shares: tuple[tuple[str, float], ...] = ()

    @property
    def hex(self) -> str:
        """The hex of the largest cluster of the garment's family; of the cluster nearest one of the family's
        swatches when none is of it (the fitted decision can name a family that no cluster's own colour falls
        in: a near-neutral dark navy read as black); of the largest cluster when multicolour."""
        for cluster in self.clusters:
            if cluster.family == self.family:
                return cluster.hex
        if self.family == MULTICOLOUR:
            return self.clusters[0].hex
        near = distance_to_family(np.array([c.lab for c in self.clusters]), self.family)
        return self.clusters[int(near.argmin())].hex

    def families(self) -> dict[str, float]:
        """Each palette family present and its share of the garment's pixels, largest first."""
        return dict(self.shares)


def _sample(pixels: np.ndarray, seed: int, most: int = MAX_PIXELS) -> np.ndarray:
    """``pixels``, or a seeded sample of ``most`` of them; ValueError when there are none."""
    if len(pixels) == 0:
        raise ValueError("no garment pixels")
    if len(pixels) > most:
        pixels = pixels[np.random.default_rng(seed).choice(len(pixels), most, replace=False)]
    return pixels


def dominant_colours(pixels: np.ndarray, k: int = CLUSTERS, seed: int = 0) -> tuple[ColourCluster, ...]:
    """k-means clusters of Lab ``pixels`` (n, 3), largest first, each named by the palette."""
    pixels = _sample(np.asarray(pixels, dtype=np.float64).reshape(-1, 3), seed)
    centres, labels = kmeans(pixels, k, seed)
    counts = np.bincount(labels, minlength=len(centres))
    families = family_of(centres)
    order = np.argsort(-counts, kind="stable")
    return tuple(
        ColourCluster(lab_to_hex(centres[i]), tuple(round(float(v), 2) for v in centres[i]),
                      float(counts[i] / counts.sum()), FAMILIES[int(families[i])])
        for i in order if counts[i] > 0
    )


def family_shares(pixels: np.ndarray) -> tuple[tuple[str, float], ...]:
    """(family, share of ``pixels`` (n, 3 Lab) the palette names so), largest first; every pixel votes
    (named through :func:`~fashion.colour.palette.family_of_pixels`' table)."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    if len(pixels) == 0:
        raise ValueError("no garment pixels")
    counts = np.bincount(family_of_pixels(pixels), minlength=len(FAMILIES))
    order = np.argsort(-counts, kind="stable")
    return tuple((FAMILIES[i], float(counts[i] / counts.sum())) for i in order if counts[i] > 0)


@dataclass(frozen=True)
class GarmentReading:
    """What is measured of a garment before its family is decided: the mask (``found``), the dominant
    ``clusters``, the palette's family ``shares`` of the corrected core and the decision's ``features``."""

    found: GarmentMask
    clusters: tuple[ColourCluster, ...]
    shares: tuple[tuple[str, float], ...]
    features: np.ndarray


def read_garment(image, bbox: BBox | None = None, size: int = SIZE, k: int = CLUSTERS,
                 seed: int = 0) -> GarmentReading:
    """The :class:`GarmentReading` of the garment in ``image`` (see :func:`garment_colour`)."""
    found = garment_mask(downsized_lab(image, bbox, size), seed=seed)
    core = found.core()
    raw = found.lab[core]
    pixels = corrected(found.lab, found.mask, raw)
    clusters = dominant_colours(pixels, k=k, seed=seed)
    shares = family_shares(pixels)
    features = garment_features(found.lab, found.mask, core, raw, pixels, dict(shares),
                                [(c.lab, c.share) for c in clusters], found.method == "centre")
    return GarmentReading(found, clusters, shares, features)


def garment_colour(image, bbox: BBox | None = None, size: int = SIZE, k: int = CLUSTERS,
                   seed: int = 0) -> GarmentColour:
    """The colour of the garment in ``image`` (a PIL image or an RGB array); ``bbox`` (x1, y1, x2, y2, px):
    the garment's bounding box where the dataset gives one. Pure: the same photo gives the same answer."""
    reading = read_garment(image, bbox, size, k, seed)
    family, family_2 = shipped().ranked(reading.features)
    shares = dict(reading.shares)
    share = shares.get(family, 0.0) if family != MULTICOLOUR else reading.shares[0][1]
    return GarmentColour(reading.clusters, family, family_2, share, reading.found.share, reading.found.method,
                         reading.shares)
