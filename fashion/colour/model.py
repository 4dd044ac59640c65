"""The fitted colour-family decision: a multinomial logistic regression on a garment's features.

The palette (:mod:`fashion.colour.palette`) names every pixel of a garment's core; what family the
*garment* is was, before, the family with the largest share of those votes (``multicolour`` when no family
held 30 %). That rule's boundaries were placed by hand on 213 photos. This module replaces the rule by
weights fitted to 686 photos labelled by eye (``tests/data/colour_labels.csv``: the ``fit`` and ``dev``
rows; never ``holdout``): the probabilities of the 14 families (13 and ``multicolour``) from
:func:`fashion.colour.features.garment_features`' vector, standardised, through one linear layer and a
softmax. The garment's family is the most probable family, its runner-up the second.

The weights ship in ``fashion/data/colour_model.npz`` (a few KB), written by the maintainer script
``scripts/fit_colour_model.py`` from the CSV and the photos of clothing-dataset-small; reading them needs
NumPy only. The file records what it was fitted from (:func:`inputs_digest`: the labels of the fit and dev
rows, the palette, the feature names and the constants of the code computing them) and a digest of its weights; ``tests/test_colour_model.py`` fails
when the labels, palette or features change without a refit.

Fitting (:func:`fit`, :func:`cross_validate`; scikit-learn, imported only there): each photo counts once
with its label and, where the labeller gave a second family (a borderline shade, a two-coloured item),
once more with that family at ``second_weight``; ``C`` (the inverse L2 strength) and ``second_weight`` are
chosen by cross-validation on the fit and dev photos (``benchmarks/README.md``).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from .features import FEATURE_NAMES
from .palette import ALL_FAMILIES, palette_digest

MODEL_FILE = Path(__file__).resolve().parents[1] / "data" / "colour_model.npz"
FIT_SPLITS = ("fit", "dev")  # the labelled splits the model is fitted on; holdout never is


@dataclass(frozen=True)
class ColourModel:
    """Fitted weights: ``classes`` (family names), the features' ``mean`` and ``scale`` (standardisation),
    ``coef`` (classes x features) and ``intercept``; ``C`` and ``second_weight``: how it was fitted;
    ``inputs``: :func:`inputs_digest` of what it was fitted from."""

    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    C: float
    second_weight: float
    inputs: str

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """The probability of each of :attr:`classes` for a feature vector (n_features,) or a matrix of them
        (n, n_features)."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        logits = x @ self.coef.T + self.intercept
        logits = logits - logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=-1, keepdims=True)

    def top_two(self, features: np.ndarray) -> tuple[list[str], list[str]]:
        """The most probable family and the runner-up of each row of a (n, n_features) matrix."""
        order = np.argsort(-self.probabilities(np.atleast_2d(features)), axis=1, kind="stable")
        return [self.classes[i] for i in order[:, 0]], [self.classes[i] for i in order[:, 1]]

    def ranked(self, features: np.ndarray) -> tuple[str, str]:
        """The most probable family of one feature vector and the runner-up."""
        first, second = self.top_two(features)
        return first[0], second[0]

    @property
    def digest(self) -> str:
        """12 hex digits of SHA-256 over the weights (rounded to 6 significant digits, so that BLAS's last bits
        do not change it) and how they were fitted."""
        h = hashlib.sha256(repr((self.classes, FEATURE_NAMES, self.C, self.second_weight, self.inputs)).encode())
        for array in (self.mean, self.scale, self.coef, self.intercept):
            h.update(np.array([float(f"{v:.6g}") for v in np.ravel(array)]).tobytes())
        return h.hexdigest()[:12]

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, classes=np.array(self.classes), feature_names=np.array(FEATURE_NAMES),
                            mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept,
                            C=np.float64(self.C), second_weight=np.float64(self.second_weight),
                            inputs=np.array(self.inputs), digest=np.array(self.digest))


def read_model(path: str | Path) -> ColourModel:
    """The model saved at ``path``; ValueError when it was saved for other features or is damaged."""
    with np.load(path) as data:
        if tuple(str(n) for n in data["feature_names"]) != FEATURE_NAMES:
            raise ValueError(f"{path} was fitted on other features; refit it: python scripts/fit_colour_model.py")
        model = ColourModel(tuple(str(c) for c in data["classes"]), data["mean"], data["scale"], data["coef"],
                            data["intercept"], float(data["C"]), float(data["second_weight"]), str(data["inputs"]))
        if str(data["digest"]) != model.digest:
            raise ValueError(f"{path}: its weights do not match its digest")
    return model


@cache
def shipped() -> ColourModel:
    """The package's model (:data:`MODEL_FILE`), read once per process. RuntimeError when it cannot be read:
    not a ValueError, which callers take for a photo without garment pixels and skip the photo."""
    try:
        return read_model(MODEL_FILE)
    except (OSError, KeyError, ValueError) as exc:
        raise RuntimeError(f"the colour model {MODEL_FILE} cannot be read ({exc}); "
                           "refit it: python scripts/fit_colour_model.py") from exc


def inputs_digest(rows, settings: dict) -> str:
    """12 hex digits of SHA-256 over what a model is fitted from: the (relpath, family, family_2) of the
    labelled rows of :data:`FIT_SPLITS` (``rows``: :class:`fashion.colour.labels.ColourLabel`), in file
    order, the palette's digest, the feature names, and ``settings``: the constants of the code that computes
    the features (:func:`fashion.colour.stage.feature_settings`), so that a change to the mask, the light
    correction or the clusters marks the shipped model as fitted to other features."""
    import json

    labelled = [(r.relpath, r.family, r.family_2 or "") for r in rows if r.split in FIT_SPLITS]
    shaped = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(repr((labelled, palette_digest(), FEATURE_NAMES, shaped)).encode()).hexdigest()[:12]


def _design(X, y, y2, second_weight: float):
    """The training rows: every photo with its label (weight 1) and, where it has one, again with its second
    family (weight ``second_weight``)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=object)
    y2 = np.asarray(y2, dtype=object)
    extra = np.flatnonzero([bool(v) for v in y2]) if second_weight > 0 else np.array([], dtype=int)
    return (np.vstack([X, X[extra]]), np.concatenate([y, y2[extra]]),
            np.concatenate([np.ones(len(X)), np.full(len(extra), second_weight)]))


def fit(X, y, y2, C: float, second_weight: float, inputs: str = "") -> ColourModel:
    """A model fitted to features ``X`` (n, n_features), labels ``y`` and second families ``y2`` ("" or None
    where none): standardisation, then scikit-learn's multinomial logistic regression (lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(X, dtype=np.float64)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    rows, labels, weights = _design((X - mean) / scale, y, y2, second_weight)
    lr = LogisticRegression(C=C, max_iter=5000).fit(rows, labels, sample_weight=weights)
    classes = tuple(str(c) for c in lr.classes_)
    unknown = set(classes) - set(ALL_FAMILIES)
    if unknown:
        raise ValueError(f"labels outside the palette's families: {sorted(unknown)}")
    return ColourModel(classes, mean, scale, lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64),
                       float(C), float(second_weight), inputs)


def folds(y, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays of a stratified, shuffled ``k``-fold split of labels ``y``."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=object)
    with warnings.catch_warnings():  # a family with fewer photos than folds is still spread as far as it goes
        warnings.simplefilter("ignore", UserWarning)
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def cross_validate(X, y, y2, C: float, second_weight: float, splits) -> tuple[np.ndarray, np.ndarray]:
    """The held-out (family, runner-up) of every photo over ``splits`` (:func:`folds`): each fold's photos
    named by a model fitted to the others."""
    X = np.asarray(X, dtype=np.float64)
    y, y2 = np.asarray(y, dtype=object), np.asarray(y2, dtype=object)
    first = np.empty(len(y), dtype=object)
    second = np.empty(len(y), dtype=object)
    for train, test in splits:
        first[test], second[test] = fit(X[train], y[train], y2[train], C, second_weight).top_two(X[test])
    return first, second
