"""fashion.training.lrguard: which LR-finder curves are fit to read an LR off, on synthetic curves."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.training.lrguard import MIN_POINTS, curve_problem, fallback_lr

N = 85  # the points fastai reads with lr_find_iters=100: recorder[10:-5]
LRS = np.logspace(-7, 1, 100)[10:-5]


def _valley(noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A healthy curve: flat, a descent around 1e-3..1e-2, then divergence."""
    x = np.log10(LRS)
    loss = 2.3 - 1.2 / (1 + np.exp(-(x + 3.5) * 3)) + np.where(x > -1.5, (x + 1.5) ** 2 * 2.0, 0.0)
    return loss + np.random.default_rng(seed).normal(0, noise, len(x))


def _fastai_valley(losses) -> float:
    """The suggestion fastai's "valley" reads off the curve (the function the stages use by default)."""
    from fastai.callback.schedule import valley

    return valley(list(LRS[:len(losses)]), list(losses), 100)[0]


def test_a_curve_with_a_valley_is_accepted():
    losses = _valley(noise=0.01)
    suggestion = _fastai_valley(losses)
    assert 1e-5 < suggestion < 1e-1
    assert curve_problem(LRS, losses, suggestion) is None


def test_a_flat_curve_has_no_descent():
    assert "does not descend" in curve_problem(LRS, np.full(N, 1.1), 1e-3)


def test_a_rising_curve_has_no_descent():
    assert "does not descend" in curve_problem(LRS, np.linspace(1.0, 3.0, N), 1e-3)


@pytest.mark.parametrize("seed", range(5))
def test_noise_is_no_descent(seed):
    """Batch noise around one level: the moving average dips, but not by three times the step noise."""
    losses = 2.3 + np.random.default_rng(seed).normal(0, 0.1, N)
    assert "does not descend" in curve_problem(LRS, losses, 1e-3)


@pytest.mark.parametrize("suggestion", [1e-7, LRS[0], LRS[-1], 10.0])
def test_a_suggestion_at_the_edge_of_the_range_is_refused(suggestion):
    assert "at the edge of the range searched" in curve_problem(LRS, _valley(), suggestion)


def test_a_curve_of_five_iterations_is_too_short():
    """lr_find_iters=5: fastai runs 6 batches and reads recorder[0:-5], one point; its valley is 1e-7."""
    lrs, losses = np.logspace(-7, 1, 6)[:-5], np.array([1.1])
    assert curve_problem(lrs, losses, float(lrs[0])) == (
        f"only 1 point on the curve, fewer than {MIN_POINTS} (raise lr_find_iters)")
    assert "only 0 points" in curve_problem([], [], 1e-3)


def test_nan_losses_before_the_suggestion_break_the_curve_but_not_after_it():
    losses = _valley()
    suggestion = _fastai_valley(losses)
    diverged = losses.copy()
    diverged[LRS > suggestion * 10] = np.nan  # the divergence that ends every finder run
    assert curve_problem(LRS, diverged, suggestion) is None
    broken = losses.copy()
    broken[5] = np.inf
    assert "NaN or infinite" in curve_problem(LRS, broken, suggestion)


@pytest.mark.parametrize("suggestion", [None, float("nan"), 0.0, -1e-3, float("inf")])
def test_a_suggestion_that_is_no_learning_rate_is_refused(suggestion):
    assert "not a positive learning rate" in curve_problem(LRS, _valley(), suggestion)


def test_lrs_and_losses_of_other_lengths_are_an_error():
    with pytest.raises(ValueError, match="differ in length: 85 and 3"):
        curve_problem(LRS, [1.0, 2.0, 3.0], 1e-3)


def test_fallback_is_halved_for_an_unfrozen_body():
    assert fallback_lr(2e-3, frozen=True) == 2e-3
    assert fallback_lr(2e-3, frozen=False) == 1e-3
