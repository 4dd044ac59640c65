"""fashion.colour.model: the fitted colour-family decision, its fit, and the shipped weights' provenance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashion.colour import model as colour_model
from fashion.colour.features import FEATURE_NAMES, texture
from fashion.colour.labels import read_labels
from fashion.colour.model import ColourModel, cross_validate, fit, folds, inputs_digest, read_model, shipped
from fashion.colour.palette import ALL_FAMILIES
from fashion.colour.stage import feature_settings

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "tests" / "data" / "colour_labels.csv"
DATASET = REPO.parent / "shared" / "data" / "clothing-dataset-small"


def _synthetic(n_per_class=40, seed=0):
    """Features of three well-separated families (each its own centre in feature space, unit noise), and a
    second family for a few photos of each."""
    rng = np.random.default_rng(seed)
    families = ("red", "blue", "multicolour")
    centres = rng.normal(0, 4, (len(families), len(FEATURE_NAMES)))
    X = np.vstack([centres[i] + rng.normal(0, 1, (n_per_class, len(FEATURE_NAMES))) for i in range(len(families))])
    y = np.repeat(families, n_per_class)
    y2 = np.where(np.arange(len(y)) % 5 == 0, "pink", "")
    return X, y, y2


def test_fit_recovers_separable_families_and_round_trips(tmp_path):
    X, y, y2 = _synthetic()
    model = fit(X, y, y2, C=1.0, second_weight=0.3, inputs="abc")
    assert set(model.classes) == {"red", "blue", "multicolour", "pink"}  # the second families are classes too
    probabilities = model.probabilities(X)
    assert probabilities.shape == (len(X), 4) and np.allclose(probabilities.sum(axis=1), 1)
    assert np.mean([model.ranked(x)[0] == label for x, label in zip(X, y)]) == 1.0
    path = tmp_path / "m.npz"
    model.save(path)
    again = read_model(path)
    assert again.digest == model.digest and again.inputs == "abc" and again.classes == model.classes
    assert np.allclose(again.probabilities(X), probabilities)


def test_second_family_weight_moves_the_runner_up():
    """Photos labelled red with a second family pink: with a weight on the second family, pink becomes the
    runner-up of red photos; without, it is not a class at all."""
    X, y, _ = _synthetic()
    y2 = np.where(y == "red", "pink", "")
    with_second = fit(X, y, y2, C=1.0, second_weight=0.5)
    without = fit(X, y, y2, C=1.0, second_weight=0.0)
    red = X[y == "red"]
    assert all(with_second.ranked(x) == ("red", "pink") for x in red)
    assert "pink" not in without.classes


def test_read_model_refuses_damaged_or_foreign_weights(tmp_path):
    X, y, y2 = _synthetic()
    model = fit(X, y, y2, C=1.0, second_weight=0.0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["coef"] = arrays["coef"] + 0.5
    np.savez(tmp_path / "damaged.npz", **arrays)
    with pytest.raises(ValueError, match="do not match its digest"):
        read_model(tmp_path / "damaged.npz")
    arrays = dict(np.load(path))
    arrays["feature_names"] = arrays["feature_names"][:-1]
    np.savez(tmp_path / "foreign.npz", **arrays)
    with pytest.raises(ValueError, match="other features"):
        read_model(tmp_path / "foreign.npz")


def test_an_unreadable_shipped_model_is_an_error_not_a_skipped_photo(tmp_path, monkeypatch):
    """A missing or damaged model file must fail the colour loudly: a ValueError would be taken for a photo
    without garment pixels, and every photo's colour silently left empty."""
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    monkeypatch.setattr(colour_model, "MODEL_FILE", tmp_path / "broken.npz")
    shipped.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="cannot be read"):
            shipped()
    finally:
        shipped.cache_clear()


def test_cross_validation_names_every_photo_from_a_model_that_did_not_see_it():
    X, y, y2 = _synthetic(n_per_class=20)
    splits = folds(y, 5, seed=0)
    assert sorted(np.concatenate([test for _, test in splits]).tolist()) == list(range(len(y)))
    assert all(not set(train) & set(test) for train, test in splits)
    first, second = cross_validate(X, y, y2, C=1.0, second_weight=0.3, splits=splits)
    assert np.mean(first == y) == 1.0
    # labels with no signal at all: held-out accuracy falls to about chance, not the training fit's
    rng = np.random.default_rng(1)
    shuffled = rng.permutation(y)
    first, _ = cross_validate(X, shuffled, y2, C=1.0, second_weight=0.0, splits=folds(shuffled, 5, seed=0))
    assert np.mean(first == shuffled) < 0.6


def test_texture_is_zero_on_a_plain_core_and_large_on_stripes():
    plain = np.zeros((10, 10, 3)) + [50, 10, 10]
    core = np.ones((10, 10), dtype=bool)
    assert texture(plain, core) == 0.0
    stripes = plain.copy()
    stripes[::2, :, 0] = 90
    assert texture(stripes, core) == pytest.approx(20.0)  # the vertical steps are 40, the horizontal ones 0


def test_the_shipped_model_was_fitted_from_these_labels():
    """fashion/data/colour_model.npz was fitted from the current labels, palette and features (refit it with
    scripts/fit_colour_model.py after changing any of them); it names every family and its digest holds."""
    model = shipped()
    assert model.inputs == inputs_digest(read_labels(LABELS), feature_settings()), \
        "refit it: python scripts/fit_colour_model.py"
    assert set(model.classes) == set(ALL_FAMILIES)
    assert model.coef.shape == (len(ALL_FAMILIES), len(FEATURE_NAMES))
    assert colour_model.MODEL_FILE.stat().st_size < 50_000
    assert read_model(colour_model.MODEL_FILE).digest == model.digest


def test_inputs_digest_ignores_holdout_rows_and_sees_fit_rows():
    labels = read_labels(LABELS)
    settings = feature_settings()
    before = inputs_digest(labels, settings)
    changed = [label for label in labels]
    holdout = next(i for i, label in enumerate(labels) if label.split == "holdout")
    fitted = next(i for i, label in enumerate(labels) if label.split == "fit")
    changed[holdout] = type(labels[holdout])(labels[holdout].relpath, "purple", None, "holdout")
    assert inputs_digest(changed, settings) == before
    changed[fitted] = type(labels[fitted])(labels[fitted].relpath, "purple", None, "fit")
    assert inputs_digest(changed, settings) != before
    moved = {**settings, "fashion.colour.garment": {**settings["fashion.colour.garment"], "SIZE": 97}}
    assert inputs_digest(labels, moved) != before  # the code computing the features changed: refit


@pytest.mark.slow
@pytest.mark.skipif(not DATASET.is_dir(), reason="needs ../shared/data/clothing-dataset-small")
def test_the_script_refits_the_shipped_model(tmp_path):
    """scripts/fit_colour_model.py, with the shipped model's settings, makes the same model from the CSV and
    the photos: its inputs digest, and weights within 1e-3 (not the weights' digest, whose last digits other
    maths libraries and JPEG decoders would move)."""
    model: ColourModel = shipped()
    out = tmp_path / "model.npz"
    subprocess.run([sys.executable, str(REPO / "scripts" / "fit_colour_model.py"), "--root", str(DATASET),
                    "--out", str(out), "--C", str(model.C), "--second-weight", str(model.second_weight)],
                   check=True, cwd=REPO, capture_output=True)
    refit = read_model(out)
    assert refit.inputs == model.inputs
    assert np.allclose(refit.coef, model.coef, atol=1e-3) and np.allclose(refit.intercept, model.intercept, atol=1e-3)
