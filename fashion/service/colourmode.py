"""Colour modes of a photo (or item) search: ``colour=same|any|<family>`` (:class:`ColourModes`).

- ``same``: visual similarity, the query's colour first: the nearest items of the query's colour family
  (exact under that filter), then, when fewer than k have it, the nearest of the others.
- ``<family>`` ("this, but in blue"): the nearest items of that family only, ranked by the
  colour-invariant distance below (a blue item is compared with a red query on its shape, not on the
  colour it cannot share); exact over the family's items (and the request's other filters). Where the
  run has a trained classifier, the items labelled with the query's predicted category come first
  (the same kind of garment, in blue), then the rest of the family.
- ``any``: colour-invariant ranking over every item: cosine distance between the vectors with their
  colour directions projected out.

The colour directions (:func:`colour_directions`): the run's own vectors say which directions of the
embedding carry colour. On a sample of the gallery (``FIT_ROWS``), each vector minus its category's mean
(so that what separates categories stays), a ridge regression predicts the colour family (one-hot, also
centred per category); the span of its weights is projected out; this is repeated ``ROUNDS`` times on the
projected vectors (iterative nullspace projection, Ravfogel et al. 2020), each round removing the
directions the previous ones left predictive. No second embedding of the photos is needed, nothing is
stored in the run: the projection is fitted at the first colour query (~0.5 s on 4k × 1280 vectors)
and kept. ``benchmarks/colour.py --modes`` measures what it buys (the category and colour shares of the
top 10).

Cost: ``any`` and ``<family>`` compute the projected cosine over the allowed items exactly when they
number at most ``EXACT_ROWS``; above that, over the ``CANDIDATES`` nearest by the projected query
through the run's index (exact over those candidates only).
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from ..colour.palette import ALL_FAMILIES
from .columns import shared_strings

MODES = ("same", "any")  # besides a family name
FIT_ROWS = 20_000  # gallery vectors the colour directions are fitted on (a seeded sample above that)
ROUNDS = 3  # nullspace projection rounds
RIDGE = 1e-2  # ridge strength, a fraction of the mean eigenvalue of the vectors' covariance
EXACT_ROWS = 20_000  # allowed items scored exactly by the projected cosine
CANDIDATES = 2_000  # above EXACT_ROWS: candidates taken from the index, then scored exactly


def check_mode(colour: str | None) -> str | None:
    """``colour`` as a mode (None: no colour mode); ValueError (one line) for an unknown one."""
    if colour is None or not str(colour).strip():
        return None
    mode = str(colour).strip().lower()
    if mode not in MODES and mode not in ALL_FAMILIES:
        raise ValueError(f"colour must be same, any or a colour family ({', '.join(ALL_FAMILIES)}), got {colour!r}")
    return mode


def colour_directions(vectors: np.ndarray, labels: np.ndarray, families: np.ndarray,
                      rounds: int = ROUNDS, ridge: float = RIDGE) -> np.ndarray:
    """An orthonormal (d, m) basis of the directions of ``vectors`` (n, d) that predict ``families`` (n,
    family names) once each ``labels`` (n,) category's mean is removed (see the module docstring)."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    names, fam = np.unique(np.asarray(families).astype(str), return_inverse=True)
    y = np.eye(len(names))[fam]
    _, lab = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    for group in range(lab.max() + 1 if len(lab) else 0):  # centre both per category
        rows = lab == group
        x[rows] -= x[rows].mean(axis=0)
        y[rows] -= y[rows].mean(axis=0)
    d = x.shape[1]
    basis = np.zeros((d, 0))
    for _ in range(rounds):
        xp = x - (x @ basis) @ basis.T
        gram = xp.T @ xp
        lam = ridge * max(np.trace(gram) / d, 1e-12)
        weights = np.linalg.solve(gram + lam * np.eye(d), xp.T @ y)  # (d, families)
        u, s, _ = np.linalg.svd(weights, full_matrices=False)
        keep = u[:, s > 1e-6 * max(s.max(initial=0.0), 1e-12)]
        keep = keep - basis @ (basis.T @ keep)
        if not keep.size:
            break
        q, r = np.linalg.qr(keep)
        basis = np.hstack([basis, q[:, np.abs(np.diag(r)) > 1e-8]])
    return basis


def project(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``vectors`` (n, d) without their components along ``basis`` (d, m), at unit length (float32)."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x - (x @ basis) @ basis.T
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class ColourModes:
    """The colour columns of one run and its colour-invariant projection (fitted on first use).

    ``run``: the open :class:`~fashion.run.reader.Run` (its items, ``vectors(ids)``, ``index``);
    ``gallery``: the sorted ids its index holds."""

    def __init__(self, run, gallery: np.ndarray):
        items = run.items
        self.run = run
        self.available = "colour" in items.columns
        # "" where an item has none; cells share their few strings (.columns: no string per row at start)
        self.family = (shared_strings(items["colour"]) if self.available
                       else np.full(len(items), "", dtype=object))
        self.hex = (shared_strings(items["colour_hex"]) if "colour_hex" in items.columns
                    else np.full(len(items), "", dtype=object))
        self.labels = shared_strings(items["label"])
        self.gallery = np.asarray(gallery, dtype=np.int64)
        self._basis = None
        self._projected = None  # the gallery's projected vectors, kept when it has at most EXACT_ROWS items
        self._lock = threading.Lock()

    def check(self, mode: str | None) -> str | None:
        """:func:`check_mode`, and a ValueError when the run has no colour columns."""
        mode = check_mode(mode)
        if mode is not None and not self.available:
            raise ValueError("this run's items have no colour columns: rerun it or run `fashion upgrade RUN` on it")
        return mode

    def basis(self) -> np.ndarray:
        """The colour directions of this run's vectors (fitted once, on a seeded sample of the gallery)."""
        with self._lock:
            if self._basis is None:
                ids = self.gallery[self.family[self.gallery] != ""]
                if len(ids) > FIT_ROWS:
                    ids = np.sort(np.random.default_rng(0).choice(ids, FIT_ROWS, replace=False))
                vectors = self.run.vectors(ids) if len(ids) else np.zeros((0, 1), np.float32)
                self._basis = (colour_directions(vectors, self.labels[ids], self.family[ids]) if len(ids) > 1
                               else np.zeros((vectors.shape[1], 0)))
                if len(self.gallery) <= EXACT_ROWS:
                    self._projected = np.concatenate([project(self.run.vectors(self.gallery[s:s + 4096]), self._basis)
                                                      for s in range(0, len(self.gallery), 4096)] or
                                                     [np.zeros((0, self._basis.shape[0]), np.float32)])
            return self._basis

    def _projected_rows(self, ids: np.ndarray, basis: np.ndarray) -> np.ndarray:
        """The projected vectors of gallery items ``ids`` (from the kept matrix, else read and projected)."""
        if self._projected is not None:
            return self._projected[np.searchsorted(self.gallery, ids)]
        return np.concatenate([project(self.run.vectors(ids[s:s + 4096]), basis) for s in range(0, len(ids), 4096)])

    @functools.cached_property
    def _codes(self) -> dict:
        """``family`` and ``labels`` factorised once, at the first colour query: {column: (int code per item,
        value → code)}, so that a query compares integers, not strings, over its allowed items."""
        import pandas as pd

        out = {}
        for name, values in (("family", self.family), ("label", self.labels)):
            codes, uniques = pd.factorize(values)
            out[name] = (codes, {value: i for i, value in enumerate(uniques)})
        return out

    def _having(self, column: str, value: str, ids: np.ndarray) -> np.ndarray:
        """The items of ``ids`` whose ``column`` ("family" or "label") is ``value``."""
        codes, index = self._codes[column]
        return ids[codes[ids] == index.get(value, -2)]

    def allowed(self, mode: str, allowed: np.ndarray | None) -> np.ndarray | None:
        """The ids a ``<family>`` mode searches (``allowed`` narrowed to the family); ``allowed`` otherwise."""
        if mode in MODES:
            return allowed
        return self._having("family", mode, self.gallery if allowed is None else np.asarray(allowed, dtype=np.int64))

    def _candidates(self, query: np.ndarray, ids: np.ndarray, exclude: int | None) -> np.ndarray:
        """``ids`` (sorted) when they number at most ``EXACT_ROWS``; else the ``CANDIDATES`` of them nearest to
        the projected ``query`` through the run's index (sorted)."""
        if len(ids) <= EXACT_ROWS:
            return ids
        _, found = self.run.index.search(query, min(CANDIDATES, len(ids)), allowed=ids)
        return np.unique(found[0][(found[0] >= 0) & (found[0] != (exclude if exclude is not None else -1))])

    def invariant(self, vector: np.ndarray, k: int, exclude: int | None, allowed: np.ndarray | None,
                  category: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosine distances) of the ``k`` items of ``allowed`` (None: the gallery) nearest to
        ``vector`` with the colour directions projected out, nearest first, ties by id. With ``category``:
        the nearest items labelled ``category`` first, then the nearest of the rest; every candidate is
        scored once."""
        basis = self.basis()
        ids = self.gallery if allowed is None else np.intersect1d(np.asarray(allowed, np.int64), self.gallery)
        if exclude is not None:
            ids = ids[ids != exclude]
        if not len(ids):
            return ids, np.zeros(0, np.float32)
        query = project(np.asarray(vector, np.float32)[None, :], basis)
        pools = [self._candidates(query, ids, exclude)]
        if category is not None:
            pools.insert(0, self._candidates(query, self._having("label", category, ids), exclude))
        scored = functools.reduce(np.union1d, pools)
        dist = 1.0 - self._projected_rows(scored, basis).astype(np.float64) @ query[0].astype(np.float64)
        ranked = []
        for pool in pools:  # each pool's k nearest, ties by id
            pool_dist = dist[np.searchsorted(scored, pool)]
            order = np.lexsort((pool, pool_dist))[:k]
            ranked.append((pool[order], pool_dist[order]))
        out_ids, out_dist = ranked[0]
        if category is not None:  # the category's nearest, then the nearest of the others
            first, (near, near_dist) = ranked
            rest = ~np.isin(near, first[0])
            out_ids = np.concatenate([first[0], near[rest]])[:k]
            out_dist = np.concatenate([first[1], near_dist[rest]])[:k]
        return out_ids, out_dist.astype(np.float32)

    def search(self, mode: str, vector: np.ndarray, k: int, exclude: int | None, allowed: np.ndarray | None,
               family: str | None, search, match, category: str | None = None) -> list:
        """The matches of a colour ``mode`` for a query of colour ``family`` and predicted ``category``
        (None: no classifier): ``search(vector, k, exclude, allowed)`` is the service's index search (a list
        of matches), ``match(rank, id, distance)`` makes one match."""
        if mode == "same":
            first = list(search(vector, k, exclude, self.allowed(family, allowed))) if family else []
            if len(first) < k:
                seen = {m.id for m in first}
                first += [m for m in search(vector, k + len(first), exclude, allowed) if m.id not in seen]
            return [match(rank, m.id, m.distance) for rank, m in enumerate(first[:k], start=1)]
        # <family>: the query's kind of garment first where there is a classifier, then the rest
        ids, dist = self.invariant(vector, k, exclude, self.allowed(mode, allowed),
                                   category if mode not in MODES else None)
        return [match(rank, int(i), float(d)) for rank, (i, d) in enumerate(zip(ids, dist), start=1)]

    @staticmethod
    def of_picture(picture) -> str | None:
        """The colour family of a query photo (a decoded RGB picture), as the run's items' are named
        (:func:`fashion.colour.dominant.garment_colour`); None when it holds no garment pixels."""
        from ..colour.dominant import garment_colour

        try:
            return garment_colour(picture).family
        except ValueError:
            return None
