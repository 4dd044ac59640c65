"""The accuracy and retrieval levers of fashion.training (#15) on tiny hand-made images."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fashion import datasets, training  # noqa: E402
from fashion.errors import ConfigError  # noqa: E402
from fashion.training import TrainConfig  # noqa: E402

from factories import make_folder, one_thread  # noqa: E402,F401  (one_thread: autouse)

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}




def items_of(root, per_class=4, splits=("train", "valid", "test")):
    return datasets.load(make_folder(root, COLOURS, per_class, splits=splits, size=(40, 40)), format="folder").frame


def quick_config(**kw) -> TrainConfig:
    """One frozen epoch at a given LR (no LR finder), random weights: what shapes and plumbing need."""
    base = dict(size=32, final_size=32, epochs=(1, 0, 0), lr=1e-3, batch_size=4, seed=0, pretrained=False,
                leak_check=False, hard_check=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture()
def run(tmp_path):
    return training.prepare(items_of(tmp_path / "data"), quick_config(), tmp_path / "out")


# ----------------------------------------------------------------------------------------- config + CLI


@pytest.mark.parametrize("bad", [dict(label_smoothing=1.0), dict(label_smoothing=-0.1), dict(mix="blend"),
                                 dict(mix_alpha=0.0), dict(augment="wild"), dict(min_scale=0.0),
                                 dict(min_scale=1.5), dict(ema=1.0), dict(clean_labels="fix"),
                                 dict(metric_loss="triplet"), dict(metric_weight=0.0),
                                 dict(mix="mixup", metric_loss="supcon"),
                                 dict(arch="efficientnet_lite0", ensemble=("efficientnet_lite0",))])
def test_config_rejects_bad_lever_values(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_config_reads_the_ensemble_from_text_and_round_trips():
    cfg = TrainConfig(ensemble="efficientnet_lite1, efficientnet_lite2", label_smoothing=0.1, ema=0.99)
    assert cfg.ensemble == ("efficientnet_lite1", "efficientnet_lite2")
    back = TrainConfig(**json.loads(json.dumps(cfg.to_dict())))
    assert back.ensemble == cfg.ensemble and back.label_smoothing == 0.1 and back.ema == 0.99


def test_cli_maps_every_lever_onto_train_config():
    from fashion.cli import build_parser
    from fashion.cli.common import fields_of

    args = build_parser().parse_args(
        ["train", "data", "--output-dir", "out", "--freeze-early", "5", "--label-smoothing", "0.1", "--mix", "cutmix", "--mix-alpha", "0.5",
         "--augment", "strong", "--min-scale", "0.6", "--ema", "0.98", "--tta", "--no-hard-check",
         "--ensemble", "efficientnet_lite1,efficientnet_lite2", "--clean-labels", "drop"])
    cfg = TrainConfig(**fields_of(TrainConfig, args))
    assert (cfg.label_smoothing, cfg.mix, cfg.mix_alpha, cfg.augment, cfg.min_scale, cfg.ema, cfg.tta,
            cfg.hard_check, cfg.ensemble, cfg.clean_labels) == (
        0.1, "cutmix", 0.5, "strong", 0.6, 0.98, True, False, ("efficientnet_lite1", "efficientnet_lite2"), "drop")
    metric = build_parser().parse_args(["train", "--output-dir", "o", "--metric-loss", "arcface", "--metric-weight", "2"])
    assert (metric.metric_loss, metric.metric_weight) == ("arcface", 2.0)
    assert cfg.freeze_early == 5
    plain = TrainConfig(**fields_of(TrainConfig, build_parser().parse_args(["train", "--output-dir", "o"])))
    assert plain.to_dict() == TrainConfig().to_dict()  # every default is the dataclass's


def test_cli_reports_a_bad_lever_combination_in_one_line(tmp_path, capsys):
    from fashion.cli import main

    root = make_folder(tmp_path / "d", COLOURS, 2)
    code = main(["train", str(root), "--output-dir", str(tmp_path / "o"), "--mix", "mixup", "--metric-loss", "supcon"])
    assert code != 0 and "mix and metric_loss" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- augmentation


def test_train_transforms_follow_the_augment_and_min_scale_options():
    from fastai.vision.augment import RandomResizedCropGPU

    from fashion.training.data import train_transforms

    def lighting(tfms):
        return [getattr(t, "max_lighting", None) for t in tfms if type(t).__name__ == "Brightness"]

    default, strong = train_transforms(32, quick_config()), train_transforms(32, quick_config(augment="strong"))
    assert default and strong and lighting(strong) != lighting(default)
    assert train_transforms(32, quick_config(augment="none")) == []
    crop = train_transforms(32, quick_config(augment="none", min_scale=0.5))
    assert len(crop) == 1 and isinstance(crop[0], RandomResizedCropGPU) and crop[0].min_scale == 0.5


def test_random_resized_crop_leaves_validation_images_whole(tmp_path):
    items = items_of(tmp_path / "data", per_class=2)
    cfg_plain, cfg_crop = quick_config(augment="none"), quick_config(augment="none", min_scale=0.3)
    splits = training.split_items(items, cfg_plain)
    plain = training.make_dataloaders(splits, 32, cfg_plain, (0.5,) * 3, (0.5,) * 3)
    crop = training.make_dataloaders(splits, 32, cfg_crop, (0.5,) * 3, (0.5,) * 3)
    xv_plain, xv_crop = plain.valid.one_batch()[0], crop.valid.one_batch()[0]
    assert torch.allclose(xv_plain, xv_crop, atol=1e-4)   # valid: the whole squished image
    train_batch = crop.train.one_batch()[0]
    assert train_batch.shape[-2:] == (32, 32)


# ----------------------------------------------------------------------------------------- loss + callbacks


def test_label_smoothing_picks_fastais_loss(tmp_path):
    from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat

    items = items_of(tmp_path / "data", per_class=2)
    smooth = training.prepare(items, quick_config(label_smoothing=0.1), tmp_path / "a").learn.loss_func
    plain = training.prepare(items, quick_config(), tmp_path / "b").learn.loss_func
    assert isinstance(smooth, LabelSmoothingCrossEntropyFlat) and smooth.eps == 0.1
    assert isinstance(plain, CrossEntropyLossFlat)


def test_lever_callbacks_follow_the_config(run):
    from fastai.callback.mixup import CutMix, MixUp

    from fashion.training.callbacks import WeightAverage
    from fashion.training.metric import MetricLoss
    from fashion.training.stages import lever_callbacks

    assert lever_callbacks(run) == []
    run.config = quick_config(mix="mixup", ema=0.9)
    kinds = [type(c) for c in lever_callbacks(run)]
    assert kinds == [MixUp, WeightAverage]
    run.config = quick_config(mix="cutmix", mix_alpha=0.3)
    (cut,) = lever_callbacks(run)
    assert isinstance(cut, CutMix) and float(cut.distrib.concentration1) == pytest.approx(0.3)
    run.config = quick_config(metric_loss="supcon")
    assert [type(c) for c in lever_callbacks(run)] == [MetricLoss]


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_a_stage_trains_with_mixup_and_cutmix(tmp_path, mix):
    run = training.prepare(items_of(tmp_path / "data"), quick_config(mix=mix), tmp_path / "out")
    result = training.run_stage(run, run.config.stages[0])
    assert result.epochs_run == 1 and np.isfinite(result.best_valid_loss)


def test_weight_average_is_what_the_stage_validates_and_keeps(tmp_path):
    from fastai.callback.core import Callback

    from fashion.training.callbacks import WeightAverage

    run = training.prepare(items_of(tmp_path / "data"), quick_config(), tmp_path / "out")

    class Watch(Callback):
        order = WeightAverage.order + 1  # after_epoch: once the raw weights are back

        def after_epoch(self):
            self.raw = {k: v.clone() for k, v in self.learn.model.state_dict().items()}

    average, watch = WeightAverage(0.5), Watch()
    training.run_stage(run, run.config.stages[0], cbs=[average, watch])  # one epoch: its weights are kept
    kept, averaged = run.learn.model.state_dict(), average.averaged.module.state_dict()
    floats = [k for k in kept if kept[k].dtype.is_floating_point]
    assert all(torch.allclose(kept[k], averaged[k]) for k in floats)
    assert any(not torch.allclose(kept[k], watch.raw[k]) for k in floats)  # the average, not the raw weights


def test_metric_loss_adds_the_weighted_loss_on_the_penultimate_features(run):
    from fastai.callback.core import Callback
    from pytorch_metric_learning import losses

    from fashion.training.metric import MetricLoss

    class Check(Callback):
        order = MetricLoss.order + 1

        def before_fit(self):
            self.seen = []
            self.hook = self.learn.model[1][-1].register_forward_pre_hook(self.grab)

        def grab(self, module, inputs):
            self.feats = inputs[0].detach()

        def after_loss(self):
            if self.training:
                plain = self.learn.loss_func(self.learn.pred, *self.learn.yb).detach()
                expected = plain + 2.0 * losses.SupConLoss(temperature=0.1)(self.feats, self.learn.yb[0])
                self.seen.append((float(self.learn.loss_grad.detach()), float(expected), float(plain)))

        def after_fit(self):
            self.hook.remove()

    check = Check()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.learn.fit(1, 1e-3, cbs=[MetricLoss("supcon", 2.0, len(run.splits.classes)), check])
    assert not [w for w in caught if "shadowing" in str(w.message)]  # no fastai warning at every stage
    assert check.seen
    for got, expected, plain in check.seen:
        assert got == pytest.approx(expected, rel=1e-4) and got != pytest.approx(plain)


def test_metric_loss_hook_is_off_the_model_after_a_stage_even_one_that_raises(tmp_path):
    from fastai.callback.core import Callback

    class Boom(Callback):
        def after_batch(self):
            raise RuntimeError("boom")

    run = training.prepare(items_of(tmp_path / "data"), quick_config(metric_loss="supcon"), tmp_path / "out")
    last = run.learn.model[1][-1]
    training.run_stage(run, run.config.stages[0])
    assert not last._forward_hooks and not last._forward_pre_hooks
    with pytest.raises(RuntimeError, match="boom"):
        training.run_stage(run, run.config.stages[0], cbs=[Boom()])
    # fastai skips after_fit, where the hook would come off
    assert not last._forward_hooks and not last._forward_pre_hooks


def test_arcface_trains_its_own_class_centres(run):
    from fashion.training.metric import MetricLoss

    metric = MetricLoss("arcface", 1.0, len(run.splits.classes))
    run.learn.fit(1, 1e-3, cbs=[metric])
    centres = metric.metric.W.detach().clone()
    run.learn.fit(1, 1e-3, cbs=[metric])  # a new fit: a new loss, whose centres start afresh
    assert centres.shape == (run.learn.model[1][-1].in_features, len(run.splits.classes))
    assert metric.centres_opt is not None and not torch.equal(centres, metric.metric.W.detach())


@pytest.mark.parametrize("loss", ["supcon", "arcface"])
def test_a_metric_learning_model_exports_and_loads_through_load_model_without_pickle(tmp_path, loss):
    from fashion.backbones import read_state_dict
    from fashion.images import open_image

    items = items_of(tmp_path / "data")
    out = tmp_path / "out"
    result = training.train(items, quick_config(metric_loss=loss, metric_weight=0.5), out)
    assert json.loads((out / "model.json").read_text())["train_config"]["metric_loss"] == loss
    assert not [p for p in out.rglob("*") if p.suffix in {".pkl", ".pth", ".pt"}]  # safetensors + JSON only
    loaded = training.load_model(out)
    # the network alone: ArcFace's class centres belong to the training loss, not to the exported model
    assert set(read_state_dict(out / "model.safetensors")) == set(loaded.model.state_dict())
    test = items[items["split"] == "test"]
    images = [open_image(p) for p in test["path"]]
    probs = loaded.predict(images).numpy()
    accuracy = float(np.mean(np.array(loaded.classes)[probs.argmax(1)] == test["label"].to_numpy()))
    assert accuracy == pytest.approx(result.metrics["test"]["accuracy"])
    # the embedding retrieval uses (measure_sim --model: the head's penultimate features)
    features = loaded.penultimate(loaded.body(loaded.preprocess(images)))
    assert features.shape[0] == len(images) and torch.isfinite(features).all()


# ----------------------------------------------------------------------------------------- harder check


def test_perturb_image_is_deterministic_and_strong():
    from PIL import Image

    from fashion.training.robustness import perturb_image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    a, b, c = perturb_image(image, 1), perturb_image(image, 1), perturb_image(image, 2)
    assert a.size == image.size and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))
    assert np.abs(np.asarray(a, float) - np.asarray(image, float)).mean() > 10  # not a near copy


def test_perturbed_probs_are_probabilities_in_row_order(tmp_path):
    from torch import nn

    from fashion.training.robustness import perturbed_probs

    items = items_of(tmp_path / "data", per_class=2, splits=("",))

    class MeanColour(nn.Module):  # logits = the mean of each channel: red, green, blue
        def forward(self, x):
            return x.mean(dim=(2, 3)) * 10

    probs = perturbed_probs(MeanColour(), items, 24, (0.5,) * 3, (0.5,) * 3)
    assert probs.shape == (len(items), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    channel = {"red": 0, "green": 1, "blue": 2}
    assert (probs.argmax(1) == items["label"].map(channel).to_numpy()).mean() >= 0.8  # colours survive it


def test_evaluate_reports_tta_perturbed_and_valid_accuracy(tmp_path):
    out = tmp_path / "out"
    result = training.train(items_of(tmp_path / "data"), quick_config(tta=True, hard_check=True), out)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("topk", "tta", "perturbed", "perturbed_background", "perturbed_scale"):
        assert set(metrics["test"][key]) == {"1", "3"} and all(0 <= v <= 1 for v in metrics["test"][key].values())
    # the perturbed checks on valid too: what a lever against a perturbation is chosen on (#30)
    assert set(metrics["valid"]) >= {"n", "topk", "tta", "perturbed", "perturbed_background", "perturbed_scale"}
    assert metrics["valid"]["n"] == 12
    assert "with TTA top-1" in result.summary() and "valid top-1" in result.summary()
    assert "garment smaller in the frame top-1" in result.summary()


# ----------------------------------------------------------------------------------------- label cleanup


def test_out_of_fold_probs_predict_each_row_without_it():
    from fashion.training.cleanup import out_of_fold_probs

    rng = np.random.default_rng(0)
    targets = np.repeat([0, 1, 2], 10)
    features = np.eye(3)[targets] * 3 + rng.normal(0, 0.3, (30, 3))
    features[4] = np.array([0, 3, 0])  # a class-0 photo that looks like class 1
    probs = out_of_fold_probs(features, targets, seed=0)
    assert probs.shape == (30, 3) and np.allclose(probs.sum(1), 1)
    assert probs[4].argmax() == 1  # out of fold: its own label never taught the model
    assert (np.delete(probs.argmax(1), 4) == np.delete(targets, 4)).all()


def test_clean_labels_drop_removes_a_flipped_training_photo(tmp_path):
    items = items_of(tmp_path / "data", per_class=8)
    flipped = items.index[(items["split"] == "train") & (items["label"] == "red")][0]
    items.loc[flipped, "label"] = "blue"
    cfg = quick_config(clean_labels="drop", pretrained=True)
    run = training.prepare(items, cfg, tmp_path / "out")
    issues = (tmp_path / "out" / "train_label_issues.csv").read_text()
    assert items.loc[flipped, "path"] in issues
    assert items.loc[flipped, "path"] not in set(run.splits.train["path"])
    assert len(run.splits.train) < (items["split"] == "train").sum()


# ------------------------------------------------------------------------------------------ freeze_early


def test_freeze_early_keeps_the_first_layers_and_their_batchnorm_statistics_fixed(tmp_path):
    from fashion.backbones import body_units

    cfg = quick_config(freeze_early=3, epochs=(0, 1, 0), size=32, final_size=32)
    run = training.prepare(items_of(tmp_path / "data"), cfg, tmp_path / "out")
    units = body_units(run.learn.model[0])
    before = {k: v.clone() for k, v in run.learn.model.state_dict().items()}
    early = {id(p) for u in units[:3] for p in u.parameters()}
    prefixes = tuple(name + "." for name, m in run.learn.model.named_modules() if any(m is u for u in units[:3]))
    early_keys = {k for k in before if k.startswith(prefixes)}
    assert early_keys and any("running_mean" in k for k in early_keys)
    result = training.run_stage(run, run.config.stages[1])  # unfrozen: all but the first three layers train
    assert result.epochs_run == 1
    grads = {id(p): p.requires_grad for p in run.learn.model.parameters()}
    assert not any(grads[i] for i in early) and all(v for i, v in grads.items() if i not in early)
    after = run.learn.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not changed & early_keys  # weights and BatchNorm statistics of the early layers untouched
    assert any(k.startswith("0.") for k in changed) and any(k.startswith("1.") for k in changed)


def test_freeze_early_must_leave_part_of_the_body_to_train(tmp_path):
    run = training.prepare(items_of(tmp_path / "data", per_class=2), quick_config(freeze_early=99), tmp_path / "o")
    with pytest.raises(ConfigError, match="freeze_early=99 leaves nothing"):
        training.run_stage(run, run.config.stages[0])
    with pytest.raises(ConfigError, match="freeze_early"):
        quick_config(freeze_early=-1)


def test_clean_labels_weight_samples_a_flipped_training_photo_less(tmp_path):
    from fastai.callback.data import WeightedDL

    items = items_of(tmp_path / "data", per_class=8)
    flipped = items.index[(items["split"] == "train") & (items["label"] == "red")][0]
    items.loc[flipped, "label"] = "blue"
    run = training.prepare(items, quick_config(clean_labels="weight", pretrained=True), tmp_path / "out")
    train = run.splits.train
    assert len(train) == (items["split"] == "train").sum()  # kept, not dropped
    weight = dict(zip(train["path"], train["sample_weight"]))
    assert weight[items.loc[flipped, "path"]] < 0.5 and max(weight.values()) == 1.0
    assert items.loc[flipped, "path"] in (tmp_path / "out" / "train_label_issues.csv").read_text()
    dl = run.learn.dls.train
    valid = run.learn.dls.valid  # fastai makes it a WeightedDL too, unshuffled: every photo once, in order
    assert isinstance(dl, WeightedDL) and not valid.shuffle and list(valid.get_idxs()) == list(range(valid.n))
    assert dl.wgts == pytest.approx(train["sample_weight"].to_numpy() / train["sample_weight"].sum())
    result = training.run_stage(run, run.config.stages[0])
    assert result.epochs_run == 1 and np.isfinite(result.best_valid_loss)
