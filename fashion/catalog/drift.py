"""Whether new vectors still fit an IVF-PQ index's trained coarse quantiser (``fashion add``).

Measured as the total variation distance between two shares of the inverted lists: the lists the new
vectors fall in, and the lists the indexed vectors fill (0: the same distribution, 1: disjoint). A
sample of m vectors drawn from the indexed distribution has an expected distance of about
``sqrt(nlist / (2π m))`` by sampling noise alone, so the drift reported is the excess over that; above
:data:`RETRAIN_ABOVE` the log says to retrain (rebuild the run), since lists that swell or empty slow
the search and lower its recall at the same nprobe.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

RETRAIN_ABOVE = 0.2  # excess total variation distance


@dataclass
class Drift:
    """tv: total variation distance; noise: its expected value for a same-size sample of the indexed
    data; excess: tv − noise; m: new vectors; nlist: inverted lists."""

    tv: float
    noise: float
    excess: float
    m: int
    nlist: int

    @property
    def retrain(self) -> bool:
        return self.excess > RETRAIN_ABOVE

    def to_json(self) -> dict:
        return {**asdict(self), "retrain": self.retrain}


def tv_distance(new_lists: np.ndarray, sizes: np.ndarray) -> float:
    """Total variation distance between the list shares of ``new_lists`` (one list number per vector)
    and of ``sizes`` (vectors per list).

    >>> tv_distance(np.array([0, 1]), np.array([5, 5]))
    0.0
    >>> tv_distance(np.array([0, 0]), np.array([0, 4]))
    1.0
    """
    new = np.bincount(new_lists, minlength=len(sizes)) / max(len(new_lists), 1)
    old = sizes / max(int(sizes.sum()), 1)
    return float(0.5 * np.abs(new - old).sum())


def measure(index, new_vectors: np.ndarray) -> Drift | None:
    """The drift of ``new_vectors`` against ``index`` (a fitted ``faiss-ivfpq`` backend); None when none."""
    if not len(new_vectors):
        return None
    sizes = index.list_sizes()
    m, nlist = len(new_vectors), len(sizes)
    tv = tv_distance(index.coarse_lists(new_vectors), sizes)
    noise = min(1.0, math.sqrt(nlist / (2 * math.pi * m)))
    drift = Drift(round(tv, 4), round(noise, 4), round(max(0.0, tv - noise), 4), m, nlist)
    if drift.retrain:
        log.warning("the %d new vectors fall in the %d coarse lists unlike the indexed ones (total variation "
                    "distance %.3f, %.3f expected by chance): the IVF-PQ quantiser was trained on other data; "
                    "rebuild the run to retrain it", m, nlist, tv, noise)
    else:
        log.info("coarse-assignment drift of the %d new vectors: total variation distance %.3f (%.3f expected "
                 "by chance)", m, tv, noise)
    return drift
