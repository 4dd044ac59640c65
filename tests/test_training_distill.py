"""Knowledge distillation (fashion.training.distill) on tiny hand-made images."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fashion import training  # noqa: E402
from fashion.errors import ConfigError  # noqa: E402
from fashion.training import TrainConfig  # noqa: E402
from fashion.training.distill import TEMPERATURE, Distill, distillation_loss, load_teachers, soft_targets  # noqa: E402

from factories import one_thread  # noqa: E402,F401  (one_thread: autouse)
from test_training_levers import items_of, quick_config  # noqa: E402


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A trained model directory over red / green / blue (random init, one epoch: a teacher of any quality)."""
    root = tmp_path_factory.mktemp("teacher")
    training.train(items_of(root / "data"), quick_config(seed=1), root / "model")
    return root / "model"


def test_soft_targets_average_the_teachers_softened_probabilities():
    a, b = torch.tensor([[2.0, 0.0, -2.0]]), torch.tensor([[0.0, 4.0, 0.0]])
    got = soft_targets([a, b], temperature=2.0)
    expected = (torch.softmax(a / 2, 1) + torch.softmax(b / 2, 1)) / 2
    assert torch.allclose(got, expected) and got.sum().item() == pytest.approx(1.0)


def test_distillation_loss_is_zero_on_the_teachers_own_logits_and_grows_away_from_them():
    logits = torch.tensor([[3.0, 1.0, -1.0], [0.0, 0.5, 2.0]])
    targets = soft_targets([logits])
    assert distillation_loss(logits, targets).item() == pytest.approx(0.0, abs=1e-6)
    near, far = distillation_loss(logits * 0.9, targets).item(), distillation_loss(-logits, targets).item()
    assert 0 < near < far
    p = torch.softmax(-logits / TEMPERATURE, 1)  # T² · KL(targets ‖ student) by hand, averaged over rows
    by_hand = (targets * (targets.log() - p.log())).sum(1).mean() * TEMPERATURE ** 2
    assert far == pytest.approx(by_hand.item(), rel=1e-5)


def test_teachers_of_other_classes_are_refused(teacher):
    with pytest.raises(ConfigError, match="same classes"):
        load_teachers([str(teacher)], ["red", "green", "yellow"])
    (loaded,) = load_teachers([str(teacher)], ["blue", "green", "red"])
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_config_and_cli_take_teachers_and_their_weight(teacher):
    cfg = TrainConfig(distill=f" {teacher}, /elsewhere ", distill_weight=0.5)
    assert cfg.distill == (str(teacher), "/elsewhere")
    assert TrainConfig(**json.loads(json.dumps(cfg.to_dict()))).distill == cfg.distill
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="distill_weight"):
            TrainConfig(distill_weight=bad)


def test_cli_options_reach_the_config(teacher):
    import argparse

    from fashion.cli.common import fields_of
    from fashion.cli.train import add_train_levers

    p = argparse.ArgumentParser()
    add_train_levers(p)
    args = p.parse_args(["--distill", f"{teacher},{teacher}2", "--distill-weight", "0.4"])
    cfg = TrainConfig(**fields_of(TrainConfig, args))
    assert cfg.distill == (str(teacher), f"{teacher}2") and cfg.distill_weight == 0.4
    assert TrainConfig().distill == () and TrainConfig().distill_weight == 0.7


def test_each_training_batch_mixes_the_distillation_loss_in_before_the_metric_loss(tmp_path, teacher):
    from fastai.callback.core import Callback
    from pytorch_metric_learning import losses

    from fashion.training.metric import MetricLoss
    from fashion.training.stages import lever_callbacks

    run = training.prepare(items_of(tmp_path / "data"), quick_config(metric_loss="supcon", metric_weight=0.5,
                                                                      distill=(str(teacher), str(teacher)),
                                                                      distill_weight=0.7), tmp_path / "out")
    cbs = lever_callbacks(run)
    assert sorted(type(c).__name__ for c in cbs) == ["Distill", "MetricLoss"]
    (taught,) = load_teachers([str(teacher)], run.splits.classes)

    class Check(Callback):
        order = MetricLoss.order + 1

        def before_fit(self):
            self.seen, self.valid = [], []
            self.hook = self.learn.model[1][-1].register_forward_pre_hook(self.grab)

        def grab(self, module, inputs):
            self.feats = inputs[0].detach()

        def after_loss(self):
            if not self.training:  # validation: the plain classification loss (it picks the best epoch)
                plain = self.learn.loss_func(self.learn.pred, *self.learn.yb)
                self.valid.append((float(self.learn.loss), float(plain)))
                return
            with torch.no_grad():
                x = self.learn.xb[0]
                plain = self.learn.loss_func(self.learn.pred, *self.learn.yb)
                kd = distillation_loss(self.learn.pred, soft_targets([taught.model(x)] * 2))
                supcon = losses.SupConLoss(temperature=0.1)(self.feats, self.learn.yb[0])
            self.seen.append((float(self.learn.loss_grad.detach()), float(0.3 * plain + 0.7 * kd + 0.5 * supcon),
                              float(plain + 0.5 * supcon)))

        def after_fit(self):
            self.hook.remove()

    check = Check()
    run.learn.fit(1, 1e-3, cbs=[*cbs, check])
    assert check.seen
    for got, expected, without in check.seen:
        assert got == pytest.approx(expected, rel=1e-4) and got != pytest.approx(without, rel=1e-3)
    assert check.valid and all(got == pytest.approx(plain, rel=1e-6) for got, plain in check.valid)
    # the teachers only predict: their weights and BatchNorm statistics are as loaded
    (distill,) = [c for c in cbs if isinstance(c, Distill)]
    fresh = taught.model.state_dict()
    assert len(distill.teachers) == 2 and all(torch.equal(v, fresh[k]) for t in distill.teachers
                                              for k, v in t.model.state_dict().items())


def test_a_teacher_of_another_normalisation_gets_the_photo_it_expects(teacher):
    (loaded,) = load_teachers([str(teacher)], ["blue", "green", "red"])
    other = dataclasses.replace(loaded.info, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    cb = Distill([str(teacher)], 0.5, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    side = loaded.info.input_size
    pixels = torch.rand(2, 3, side, side)
    student_x = (pixels - torch.tensor(cb.mean).view(1, 3, 1, 1)) / torch.tensor(cb.std).view(1, 3, 1, 1)
    assert torch.allclose(cb._teacher_input(student_x, other), (pixels - 0.5) / 0.5, atol=1e-5)
    assert cb._teacher_input(student_x, dataclasses.replace(other, mean=cb.mean, std=cb.std)) is student_x


def test_a_teacher_kept_at_another_size_sees_the_batch_at_its_own_size(teacher):
    (loaded,) = load_teachers([str(teacher)], ["blue", "green", "red"])
    cb = Distill([str(teacher)], 0.5, mean=loaded.info.mean, std=loaded.info.std)
    x = torch.rand(2, 3, 12, 12)
    larger = dataclasses.replace(loaded.info, size=12, final_size=18)  # kept at 18 px, as a Lite2 at 288
    got = cb._teacher_input(x, larger)
    assert got.shape == (2, 3, 18, 18)
    assert torch.allclose(got, torch.nn.functional.interpolate(x, size=(18, 18), mode="bilinear", align_corners=False))
    smaller = cb._teacher_input(x, dataclasses.replace(larger, final_size=6))  # anti-aliased when it shrinks
    shrink = dict(size=(6, 6), mode="bilinear", align_corners=False)
    assert torch.allclose(smaller, torch.nn.functional.interpolate(x, antialias=True, **shrink))
    assert not torch.allclose(smaller, torch.nn.functional.interpolate(x, **shrink))
    assert cb._teacher_input(x, dataclasses.replace(larger, final_size=None)) is x  # its size is the batch's


def test_a_distilled_run_exports_a_model_that_loads_and_records_its_teachers(tmp_path, teacher):
    out = tmp_path / "out"
    result = training.train(items_of(tmp_path / "data"), quick_config(distill=(str(teacher),)), out)
    config = json.loads((out / "model.json").read_text())["train_config"]
    assert config["distill"] == [str(teacher)] and config["distill_weight"] == 0.7
    assert training.load_model(out).classes == ["blue", "green", "red"]
    assert np.isfinite(result.metrics["test"]["accuracy"])
