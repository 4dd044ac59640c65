"""The perturbed-photo check's parts (fashion.training.robustness, .backdrops): each step alone, another
background and a smaller garment — seeded, the same for the same seed, and doing what they say."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from factories import PHOTO_COLOURS, garment_photo, make_garment_folder
from fashion.training import backdrops
from fashion.training.robustness import PERTURBATIONS, STEPS, perturb_image, perturbation


def noise_image(seed=0, size=(80, 60)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


class RecordedGenerator:
    """A numpy Generator that logs every draw (method, arguments, value)."""

    def __init__(self, seed, log):
        self._rng, self._log = np.random.Generator(np.random.PCG64(seed)), log

    def __getattr__(self, name):
        method = getattr(self._rng, name)

        def draw(*args, **kwargs):
            value = method(*args, **kwargs)
            self._log.append((name, args, tuple(sorted(kwargs.items())), np.asarray(value).tolist()))
            return value
        return draw


def draws(monkeypatch, image, seed, only):
    log = []
    monkeypatch.setattr(np.random, "default_rng", lambda s=None: RecordedGenerator(s, log))
    perturb_image(image, seed, only=only)
    return log


@pytest.mark.parametrize("seed", range(3))
def test_every_random_number_is_drawn_whichever_steps_apply(monkeypatch, seed):
    # what keeps a step alone the one the full perturbation applies, and metrics.json test.perturbed comparable
    image = noise_image()
    full = draws(monkeypatch, image, seed, None)
    assert len(full) >= 10  # crop (4), mirror, angle, light (3), blur, quality
    for only in [()] + [(step,) for step in STEPS]:
        assert draws(monkeypatch, image, seed, only) == full, only


def test_no_step_is_the_photo_itself():
    image = noise_image()
    assert perturb_image(image, 5, only=()).tobytes() == image.tobytes()


def test_a_step_alone_is_the_one_the_full_perturbation_draws():
    image = noise_image()
    for seed in range(8):  # the mirror is drawn with p = 0.5
        alone = np.asarray(perturb_image(image, seed, only=("mirror",)))
        assert np.array_equal(alone, np.asarray(image)) or np.array_equal(alone, np.asarray(image)[:, ::-1])
    mirrored = [not np.array_equal(np.asarray(perturb_image(image, s, only=("mirror",))), np.asarray(image))
                for s in range(8)]
    # the seeds whose full perturbation mirrors (rng.random() < 0.5 after the crop's four draws): pinned
    assert mirrored == [True, False, True, False, True, True, True, True]


def test_unknown_steps_and_perturbations_are_refused():
    with pytest.raises(ValueError, match="unknown perturbation steps"):
        perturb_image(noise_image(), 0, only=("spin",))
    with pytest.raises(ValueError, match="unknown perturbation 'spin'"):
        perturbation("spin")


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_every_perturbation_is_seeded_and_keeps_the_size(name):
    image = garment_photo(PHOTO_COLOURS["red"], "wood", size=(90, 120))
    a, b = perturbation(name)(image, 3), perturbation(name)(image, 3)
    assert a.size == image.size and a.mode == "RGB" and a.tobytes() == b.tobytes()
    if name != "none":
        assert perturbation(name)(image, 3).tobytes() != image.tobytes() or name == "mirror"


@pytest.mark.parametrize("kind", backdrops.TEXTURES)
def test_textures_are_seeded_and_differ_by_seed(kind):
    a, b, c = (backdrops.texture((64, 48), s, kind) for s in (1, 1, 2))
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_swap_background_keeps_the_garment_and_replaces_the_floor():
    image = garment_photo(PHOTO_COLOURS["red"], "sheet", size=(120, 160))
    alpha, method = backdrops.garment_alpha(image)
    assert method == "border" and 0.2 < alpha.mean() < 0.6
    out = np.asarray(backdrops.swap_background(image, 0), float)
    before = np.asarray(image, float)
    garment, floor = alpha > 0.99, alpha < 0.01
    assert np.abs(out[garment] - before[garment]).mean() < 1  # the garment's pixels are kept
    assert np.abs(out[floor] - before[floor]).mean() > 20  # the white sheet is gone
    assert np.abs(np.asarray(backdrops.swap_background(image, 1), float) - out)[floor].mean() > 5  # seeded


def test_swap_background_leaves_a_photo_without_a_background_unchanged():
    image = noise_image()  # noise to the edges: no border cluster, the mask falls back to the centre
    assert backdrops.garment_alpha(image)[1] == "centre"
    assert backdrops.swap_background(image, 0).tobytes() == image.tobytes()


def test_zoom_out_shrinks_the_garment_onto_its_own_background():
    image = garment_photo(PHOTO_COLOURS["blue"], "sheet", size=(120, 160))
    blue = PHOTO_COLOURS["blue"]

    def garment_share(im):
        rgb = np.asarray(im, float)
        return float((np.abs(rgb - blue).sum(-1) < 60).mean())

    before = garment_share(image)
    for seed in range(3):
        out = backdrops.zoom_out(image, seed)
        ratio = garment_share(out) / before
        assert backdrops.SCALE[0] ** 2 * 0.6 < ratio < backdrops.SCALE[1] ** 2 * 1.3
        rgb = np.asarray(out, float)
        corners = np.concatenate([rgb[:4, :4].reshape(-1, 3), rgb[-4:, -4:].reshape(-1, 3)])
        assert corners.mean() > 200  # the canvas is the white sheet's colour, not a new texture


def test_perturbed_probs_take_a_perturbation(tmp_path):
    from torch import nn

    from fashion import datasets
    from fashion.training.robustness import perturbed_probs

    items = datasets.load(make_garment_folder(tmp_path / "data", ["red", "blue"], shapes=("tee",), per_family=2,
                                              size=(60, 80)), format="folder").frame

    class MeanColour(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)) * 10

    plain = perturbed_probs(MeanColour(), items, 24, (0.5,) * 3, (0.5,) * 3, kind="none")
    moved = perturbed_probs(MeanColour(), items, 24, (0.5,) * 3, (0.5,) * 3, kind="background")
    assert plain.shape == moved.shape == (len(items), 3) and not np.allclose(plain, moved)
    assert np.array_equal(moved, perturbed_probs(MeanColour(), items, 24, (0.5,) * 3, (0.5,) * 3, kind="background"))
