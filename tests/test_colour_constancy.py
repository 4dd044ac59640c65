"""fashion.colour.constancy: the room's light read from the background and taken out of the garment's colours."""

from __future__ import annotations

import numpy as np

from fashion.colour import constancy
from fashion.colour.constancy import REFERENCE_AB, corrected, lab_of, light, linear_rgb


def _scene(background_rgb, garment_rgb, cast, h=60, w=45):
    """A Lab photo (h x w x 3) of a garment (a central rectangle, mask returned) on a background, both
    lit by a light of linear-RGB gains ``cast``, with a little noise."""
    rng = np.random.default_rng(0)
    rgb = np.empty((h, w, 3))
    rgb[:] = background_rgb
    mask = np.zeros((h, w), dtype=bool)
    mask[15:45, 10:35] = True
    rgb[mask] = garment_rgb
    rgb = np.clip(rgb * np.asarray(cast) * (1 + rng.normal(0, 0.01, (h, w, 1))), 0, 1)
    return lab_of(rgb.reshape(-1, 3)).reshape(h, w, 3), mask


def test_lab_and_linear_rgb_round_trip():
    rgb = np.random.default_rng(1).uniform(0.01, 1, (200, 3))
    assert np.allclose(linear_rgb(lab_of(rgb)), rgb, atol=1e-6)


def test_a_cast_read_from_a_neutral_background_is_taken_out_of_the_garment(monkeypatch):
    """A mid-grey garment on a light grey sheet under a blue light comes back to the reference light's shade:
    its b* moves from clearly blue to slightly warm, and its lightness is kept (the guard opened wide,
    so that the full correction is what is tested)."""
    monkeypatch.setattr(constancy, "FULL_BELOW", 40.0)
    monkeypatch.setattr(constancy, "NONE_ABOVE", 50.0)
    lab, mask = _scene(0.6, 0.2, cast=(0.8, 0.95, 1.3))
    before = lab[mask]
    after = corrected(lab, mask, before)
    assert before[:, 2].mean() < -6  # blue before
    # the reference's warmth, scaled down with the garment's lightness (a gain per channel keeps ratios)
    assert 1 < after[:, 2].mean() <= REFERENCE_AB[1] + 0.5 and abs(after[:, 1].mean() - REFERENCE_AB[0]) < 1.5
    assert abs(after[:, 0].mean() - before[:, 0].mean()) < 3


def test_a_coloured_background_is_not_taken_for_the_light(monkeypatch):
    """A garment on a green floor (C* ~28) or a red bed (too saturated to be a reference at all): nothing is
    corrected; on a bright warm sheet (L* ~79, 20 a*b* units from the reference) only part of the correction
    is applied."""
    for floor in ((0.25, 0.4, 0.2), (0.6, 0.05, 0.05)):
        lab, mask = _scene(floor, 0.2, cast=(1, 1, 1))
        found = light(lab, ~mask)
        assert found is None or found[1] > constancy.NONE_ABOVE
        assert np.array_equal(corrected(lab, mask, lab[mask]), lab[mask])
    lab, mask = _scene((0.7, 0.52, 0.3), 0.2, cast=(1, 1, 1))
    before = lab[mask][:, 2].mean()
    partial = corrected(lab, mask, lab[mask])[:, 2].mean()
    monkeypatch.setattr(constancy, "NONE_ABOVE", 50.0)
    full = corrected(lab, mask, lab[mask])[:, 2].mean()
    assert full < partial < before - 1  # the floor's warmth taken out of the grey garment, only in part


def test_a_dim_reference_is_a_floor_not_the_light():
    """The brighter half of a warm wooden floor (L* ~62, as near the reference as the bright warm sheet above):
    not corrected, where the same floor's colour as a bright sheet is (white shoes on wood came out blue)."""
    lab, mask = _scene((0.4, 0.3, 0.15), 0.2, cast=(1, 1, 1))
    found = light(lab, ~mask)
    assert found is not None and found[1] < constancy.NONE_ABOVE  # near enough in a*b* to be corrected...
    assert float(lab_of(found[0][None])[0, 0]) < constancy.LIGHT_L_NONE  # ... but too dim
    assert np.array_equal(corrected(lab, mask, lab[mask]), lab[mask])
    assert constancy.lightness_strength(constancy.LIGHT_L_NONE) == 0.0
    assert constancy.lightness_strength(constancy.LIGHT_L_FULL) == 1.0
    assert 0 < constancy.lightness_strength((constancy.LIGHT_L_NONE + constancy.LIGHT_L_FULL) / 2) < 1


def test_no_background_to_read_leaves_the_garment_as_it_is():
    lab, _ = _scene(0.8, 0.2, cast=(0.8, 0.95, 1.3))
    everything = np.ones(lab.shape[:2], dtype=bool)
    assert light(lab, ~everything) is None
    assert np.array_equal(corrected(lab, everything, lab[everything]), lab[everything])


def test_the_correction_fades_out_between_its_bounds():
    assert constancy.strength(0.0) == 1.0 and constancy.strength(constancy.FULL_BELOW) == 1.0
    assert constancy.strength(constancy.NONE_ABOVE) == 0.0
    assert 0 < constancy.strength((constancy.FULL_BELOW + constancy.NONE_ABOVE) / 2) < 1
