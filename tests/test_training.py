"""Tests of fashion.training / fashion.modelio on tiny hand-made images."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from fashion import training  # noqa: E402
from fashion.training import Stage, TrainConfig  # noqa: E402

from factories import one_thread  # noqa: E402,F401  (autouse: one torch thread for the module)

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}
OUTPUT_FILES = ["model.safetensors", "model.json", "history.csv", "metrics.json", "confusion_matrix.png",
                "top_losses.png", "suspect_labels.csv", "suspect_labels.png", "test_predictions.csv",
                "lr_find_stage1.png", "lr_find_stage2.png", "lr_find_stage3.png",
                "loss_stage1.png", "loss_stage2.png", "loss_stage3.png", "run.json"]


def make_items(root, per_split=(4, 2, 2), corrupt=True, size=40) -> pd.DataFrame:
    """Noisy solid-colour JPEGs, one class per colour, splits train/valid/test; plus a corrupt file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for split, n in zip(("train", "valid", "test"), per_split):
        for label, colour in COLOURS.items():
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                path = root / split / label / f"{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
                rows.append({"path": str(path), "label": label, "split": split})
    if corrupt:
        bad = root / "train" / "red" / "broken.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        rows.append({"path": str(bad), "label": "red", "split": "train"})
    return pd.DataFrame(rows)


def tiny_config(**kw) -> TrainConfig:
    base = dict(size=32, final_size=40, epochs=(1, 1, 1), batch_size=4, lr_find_iters=5, seed=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One end-to-end tiny run shared by the tests that inspect its outputs."""
    root = tmp_path_factory.mktemp("data")
    items = make_items(root)
    out = tmp_path_factory.mktemp("run")
    result = training.train(items, tiny_config(), out)
    return items, out, result


# ----------------------------------------------------------------------------------------- config


def test_config_derives_the_three_stages():
    cfg = TrainConfig(size=160, final_size=224, epochs=2)
    assert cfg.epochs == (2, 2, 2)
    assert [(s.name, s.frozen, s.size, s.lr) for s in cfg.stages] == [
        ("stage1", True, 160, None), ("stage2", False, 160, None), ("stage3", False, 224, None)]
    cfg = TrainConfig(epochs=(1, 2, 3), lr=1e-3)
    assert [s.epochs for s in cfg.stages] == [1, 2, 3]
    assert [s.lr for s in cfg.stages] == [1e-3, 5e-4, 5e-4]


@pytest.mark.parametrize("bad", [dict(crop="box"), dict(epochs=(1, 2)), dict(epochs=-1), dict(size=0), dict(lr=-1.0),
                                 dict(fallback_lr=0.0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_config_round_trips_through_json():
    cfg = TrainConfig(epochs=(1, 0, 2), weights=None)
    again = TrainConfig(**json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


# ------------------------------------------------------------------------------------------ splits


def test_split_items_skips_bad_images_and_holds_out_valid(tmp_path):
    items = make_items(tmp_path, per_split=(5, 0, 0))
    splits = training.split_items(items, tiny_config(valid_pct=0.2))
    assert [p for p, _ in splits.skipped] == [str(tmp_path / "train" / "red" / "broken.jpg")]
    assert splits.valid_from_train and splits.test_split == "valid"
    assert len(splits.train) + len(splits.valid) == 15
    assert 1 <= len(splits.valid) < 15
    assert splits.classes == sorted(COLOURS)
    again = training.split_items(items, tiny_config(valid_pct=0.2))
    assert list(again.valid["path"]) == list(splits.valid["path"])  # seeded


def test_crop_bbox_needs_a_bbox_column(tmp_path):
    items = make_items(tmp_path, per_split=(1, 1, 1), corrupt=False)
    with pytest.raises(ValueError, match="bbox"):
        training.split_items(items, tiny_config(crop="bbox"))


def test_crop_bbox_crops_through_open_image(tmp_path):
    items = make_items(tmp_path, per_split=(2, 1, 1), corrupt=False)
    items["bbox"] = [(0, 0, 20, 10)] * len(items)
    splits = training.split_items(items, tiny_config(crop="bbox"))
    image = training.ReadImage(True)(splits.train.iloc[0])
    assert image.size == (20, 10)


# ---------------------------------------------------------------------------------- stage bookkeeping


@pytest.fixture()
def run(tmp_path):
    items = make_items(tmp_path / "data", per_split=(4, 2, 2), corrupt=False)
    return training.prepare(items, tiny_config(), tmp_path / "out")


def _is_bn(module) -> bool:
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


def test_layer_groups_cover_every_parameter_once(run):
    groups = run.learn.splitter(run.learn.model)
    assert len(groups) == 3
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) == len(list(run.learn.model.parameters()))
    head_ids = {id(p) for p in run.learn.model[1].parameters()}
    assert {id(p) for p in groups[2]} == head_ids


def test_freeze_trains_the_head_only_and_unfreeze_everything(run):
    run.learn.freeze()
    body, head = run.learn.model
    frozen_body = [p.requires_grad for m in body.modules() if not _is_bn(m)
                   for p in m.parameters(recurse=False)]
    assert frozen_body and not any(frozen_body)  # fastai keeps BatchNorm trainable (train_bn)
    assert all(p.requires_grad for p in head.parameters())
    run.learn.unfreeze()
    assert all(p.requires_grad for p in run.learn.model.parameters())


class _RecordLRs:
    """fastai callback factory recording every parameter group's LR at each batch."""

    @staticmethod
    def create():
        from fastai.callback.core import Callback

        class RecordLRs(Callback):
            order = 99

            def before_fit(self):
                self.lrs = []

            def after_batch(self):
                if self.training:
                    self.lrs.append([h["lr"] for h in self.learn.opt.hypers])

        return RecordLRs()


def test_unfrozen_stage_spreads_discriminative_lrs(run):
    recorder = _RecordLRs.create()
    result = training.run_stage(run, Stage("s", 1, lr=1e-3, frozen=False, size=32, lr_div=100), cbs=[recorder])
    assert result.lr == (1e-5, 1e-3)
    lrs = np.array(recorder.lrs)
    assert lrs.shape[1] == 3
    np.testing.assert_allclose(lrs[:, 0] / lrs[:, 2], 1e-2, rtol=1e-6)
    np.testing.assert_allclose(lrs[:, 1] / lrs[:, 2], 1e-1, rtol=1e-6)  # geometric middle


def test_frozen_stage_uses_lr_finder_suggestion(tmp_path):
    """A pretrained head learns the colours: the curve descends, its suggestion is trained at."""
    items = make_items(tmp_path / "data", per_split=(4, 2, 2), corrupt=False)
    run = training.prepare(items, tiny_config(lr_find_iters=30), tmp_path / "out")
    result = training.run_stage(run, Stage("s1", 1, lr=None, frozen=True, size=32))
    found = run.lr_finds["s1"]
    assert found.problem is None, found.problem
    assert result.lr_suggestion == found.suggestion > 0 and result.lr == (found.suggestion, found.suggestion)
    assert result.lr_source == "lr_finder" and result.lr_problem is None
    assert (run.output_dir / "lr_find_s1.png").is_file() and (run.output_dir / "loss_s1.png").is_file()


def test_lr_finder_restores_the_weights_without_writing_a_file(run):
    """fastai's finder writes models/tmp*/_tmp.pth, and torch reports a full disk there as a RuntimeError
    without errno; ours keeps the snapshot in memory, so an unusable model dir does not matter."""
    blocker = run.output_dir / "a_file"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("")
    before = {k: v.clone() for k, v in run.learn.model.state_dict().items()}
    old, run.learn.model_dir = run.learn.model_dir, blocker / "models"  # fastai's finder: NotADirectoryError
    try:
        found = training.lr_find(run, Stage("probe", 1, lr=None, frozen=True, size=32))
    finally:
        run.learn.model_dir = old
    assert found.suggestion > 0 and _same_weights(run.learn.model, before)


class _NoStep:
    """Callback factory: skips every optimiser step, so the loss cannot fall whatever the LR."""

    @staticmethod
    def create():
        from fastai.callback.core import Callback, CancelStepException

        class NoStep(Callback):
            def before_step(self):
                raise CancelStepException()

        return NoStep()


def test_stage_falls_back_when_the_curve_has_no_valley(tmp_path, caplog):
    """A model that cannot learn (random weights, no optimiser steps): a flat LR-finder curve. The
    stage trains at the stated fallback LR, says why in a warning, and records it."""
    items = make_items(tmp_path / "data", per_split=(4, 2, 2), corrupt=False)
    config = tiny_config(pretrained=False, lr_find_iters=30, fallback_lr=3e-3)
    run = training.prepare(items, config, tmp_path / "out")
    stage = Stage("s1", 1, lr=None, frozen=True, size=32)
    with caplog.at_level(logging.INFO, logger="fashion.training"), run.learn.added_cbs(_NoStep.create()):
        found = training.lr_find(run, stage)
    assert found.problem.startswith("the loss does not descend") and found.fallback == 3e-3
    assert "\nnot used: the loss does not descend" in found.figure.axes[0].get_title()
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and f"not used because {found.problem}" in warning[0].getMessage()
    assert "fallback LR 3.00e-03" in warning[0].getMessage()
    assert "s1 LR finder: 30/30 batches" in caplog.text  # progress, as log lines when not on a terminal
    result = training.run_stage(run, stage)
    assert result.lr == (3e-3, 3e-3) and result.lr_suggestion == found.suggestion
    assert result.lr_source == "fallback" and result.lr_problem == found.problem
    state = json.loads((run.checkpoints / "state.json").read_text())
    assert state["results"]["s1"]["lr_source"] == "fallback"


def test_lr_finder_progress_in_a_log_and_on_a_terminal(caplog, capsys):
    from types import SimpleNamespace

    from fashion.training.callbacks import BatchProgress

    for mode in ("log", "terminal"):
        bar = BatchProgress(8, f"finder ({mode})", mode=mode)
        bar.learn = SimpleNamespace(training=True)
        with caplog.at_level(logging.INFO, logger="fashion.training"):
            bar.before_fit()
            for _ in range(8):
                bar.after_batch()
            bar.after_fit()
    assert [r.getMessage() for r in caplog.records] == [f"finder (log): {i}/8 batches" for i in (2, 4, 6, 8)]
    assert "finder (terminal)" in capsys.readouterr().err  # tqdm's bar


class _SpoilSecondEpoch:
    """Callback factory: snapshots weights after epoch 1, wrecks the head before epoch ``spoil_at``'s validation."""

    @staticmethod
    def create(spoil_at: int):
        from fastai.callback.core import Callback

        class Spoil(Callback):
            order = 99

            def after_epoch(self):
                if self.epoch == 0:
                    self.snapshot = {k: v.clone() for k, v in self.learn.model.state_dict().items()}

            def before_validate(self):
                if self.epoch == spoil_at:
                    with torch.no_grad():
                        last = self.learn.model[1][-1]
                        last.weight.mul_(-40.0)

        return Spoil()


def _same_weights(model, snapshot) -> bool:
    return all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())


def test_stage_keeps_its_best_epoch_not_the_last(run):
    spoil = _SpoilSecondEpoch.create(spoil_at=1)
    result = training.run_stage(run, Stage("s1", 2, lr=1e-3, frozen=True, size=32), cbs=[spoil])
    values = [float(v[1]) for v in run.learn.recorder.values]
    assert values[1] > values[0]
    assert result.best_epoch == 1 and result.best_valid_loss == pytest.approx(values[0])
    assert _same_weights(run.learn.model, spoil.snapshot)
    assert [r["epoch"] for r in run.history] == [1, 2]


def test_worse_later_stage_is_rolled_back(run):
    training.run_stage(run, Stage("s1", 1, lr=1e-3, frozen=True, size=32))
    kept = {k: v.clone() for k, v in run.learn.model.state_dict().items()}
    result = training.run_stage(run, Stage("s2", 1, lr=1e-4, frozen=False, size=32),
                                cbs=[_SpoilSecondEpoch.create(spoil_at=0)])
    assert not result.kept and run.best["stage"] == "s1"
    assert _same_weights(run.learn.model, kept)


def test_resume_continues_with_the_next_stage(tmp_path, caplog):
    items = make_items(tmp_path / "data", per_split=(3, 1, 1), corrupt=False)
    config = tiny_config(lr=1e-3)
    first = training.prepare(items, config, tmp_path / "out")
    training.run_stage(first, config.stages[0])  # then the process "dies"
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        training.train(items, config, tmp_path / "out", resume=True)
    assert "stage1 already done (resumed)" in caplog.text
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert list(history["stage"]) == ["stage1", "stage2", "stage3"]
    info = json.loads((tmp_path / "out" / "run.json").read_text())  # the resumed stage's decision kept
    assert [(d["stage"], d["source"], d["used"][1]) for d in info["lr_decisions"]] == [
        ("stage1", "given", 1e-3), ("stage2", "given", 5e-4), ("stage3", "given", 5e-4)]


# ------------------------------------------------------------------------------------ end to end


def test_train_writes_every_output(trained):
    _, out, result = trained
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["skipped_images"] == 1
    assert metrics["skipped_images"][0]["path"].endswith("broken.jpg")
    assert set(metrics["test"]["topk"]) == {"1", "3"}  # 3 classes: top-5 is meaningless
    assert metrics["test"]["n"] == 6
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == training.HISTORY_COLUMNS
    assert list(history["stage"]) == ["stage1", "stage2", "stage3"]
    suspects = pd.read_csv(out / "suspect_labels.csv")
    assert list(suspects.columns) == ["path", "label", "predicted", "label_prob", "predicted_prob"]
    assert "test" in result.summary()


def test_train_writes_run_json(trained):
    """run.json: the manifest's run id, command, dataset counts, config, versions, git revision,
    wall time per stage and the LR decisions (lr_find_iters=5: a curve too short, the fallback used)."""
    import subprocess

    from fashion import rundir

    _, out, _ = trained
    info = json.loads((out / "run.json").read_text())
    manifest = rundir.verify(out, kind="train")
    assert info["run_id"] == manifest["run_id"] and "run.json" in manifest["files"]
    assert info["kind"] == "train" and isinstance(info["command"], list)
    assert info["dataset"]["splits"] == {"test": 6, "train": 13, "valid": 6}  # as loaded, the corrupt file too
    assert info["dataset"]["used"] == {"train": 12, "valid": 6, "test": 6, "test_split": "test",
                                       "valid_from_train": False, "skipped_images": 1, "classes": 3}
    assert info["config"] == json.loads(json.dumps(tiny_config().to_dict()))
    import fastai

    assert info["versions"]["fastai"] == fastai.__version__
    head = subprocess.run(["git", "-C", str(Path(training.__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (this repository's tests run in one)
        assert info["git"]["commit"] == head.stdout.strip() and isinstance(info["git"]["dirty"], bool)
    else:
        assert info["git"] is None
    stages = info["timing"]["stages"]
    assert list(stages) == ["stage1", "stage2", "stage3"]
    assert all(t["fit"] > 0 and t["lr_find"] > 0 for t in stages.values())
    assert info["timing"]["evaluate"] > 0 and info["timing"]["total"] >= sum(t["fit"] for t in stages.values())
    decisions = info["lr_decisions"]
    assert [d["source"] for d in decisions] == ["fallback"] * 3
    assert all(d["problem"] == "only 1 point on the curve, fewer than 20 (raise lr_find_iters)" for d in decisions)
    assert decisions[0]["used"] == [2e-3, 2e-3] and decisions[1]["used"] == [1e-5, 1e-3]  # fastai's fine_tune LRs
    assert all(d["suggested"] == pytest.approx(1e-7) for d in decisions)  # what the 5-point finder said


def test_load_model_reproduces_the_test_accuracy(trained):
    from fashion.images import open_image

    items, out, result = trained
    loaded = training.load_model(out)
    config = json.loads((out / "model.json").read_text())
    assert loaded.classes == sorted(COLOURS) and not loaded.model.training
    assert config["mean"] == [0.5, 0.5, 0.5] and config["arch"] == "efficientnet_lite0"
    assert config["train_config"]["epochs"] == [1, 1, 1]
    test = items[items["split"] == "test"]
    probs = loaded.predict([open_image(p) for p in test["path"]]).numpy()
    accuracy = float(np.mean(np.array(loaded.classes)[probs.argmax(1)] == test["label"].to_numpy()))
    assert accuracy == pytest.approx(result.metrics["test"]["accuracy"])
    saved = pd.read_csv(out / "test_predictions.csv")
    np.testing.assert_allclose(probs.max(1), saved["prob"], atol=1e-4)
    # retrieval's "head" embeddings: penultimate features of the head
    fmap = loaded.body(loaded.preprocess([open_image(test["path"].iloc[0])]))
    assert loaded.penultimate(fmap).shape == (1, 512)


def test_exported_model_is_the_best_by_valid_loss(trained):
    _, out, _ = trained
    from fashion.backbones import read_state_dict

    state = json.loads((out / "checkpoints" / "state.json").read_text())
    best_stage = state["best"]["stage"]
    losses = {name: r["best_valid_loss"] for name, r in state["results"].items()}
    assert best_stage == min(losses, key=losses.get)
    exported, best = read_state_dict(out / "model.safetensors"), read_state_dict(out / "checkpoints" / "best.safetensors")
    assert all(torch.equal(exported[k], best[k]) for k in best)


def test_load_model_refuses_pickled_code(trained, tmp_path):
    _, out, _ = trained
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "model.json").write_text((out / "model.json").read_text())
    torch.save({"weight": Evil()}, tmp_path / "model.pth")
    with pytest.raises(Exception) as info:
        training.load_model(tmp_path)
    assert "weights" in str(info.value).lower() or "unpickl" in str(info.value).lower()
    assert not marker.exists()


def test_load_model_errors_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.json"):
        training.load_model(tmp_path)


# ------------------------------------------------------------------------------------- evaluation


def test_classification_metrics_on_hand_made_arrays():
    from fashion.training.evaluate import classification_metrics

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    targets = np.array([0, 1, 1, 2])
    m = classification_metrics(targets, probs, ["a", "b", "c"])
    assert m["topk"] == {1: 0.5, 3: 1.0}
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    assert m["per_class"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert ["b", "c", 1] in m["most_confused"] and ["c", "a", 1] in m["most_confused"]


def test_suspect_labels_flag_a_flipped_label():
    from fashion.training.evaluate import find_suspect_labels

    rng = np.random.default_rng(0)
    targets = np.repeat([0, 1, 2], 20)
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), targets] = 0.9
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    probs[5] = [0.98, 0.01, 0.01]
    targets = targets.copy()
    targets[5] = 2  # the model is sure it is class 0
    items = pd.DataFrame({"path": [f"img{i}.jpg" for i in range(60)]})
    suspects = find_suspect_labels(items, targets, probs, ["a", "b", "c"])
    assert list(suspects["path"]) == ["img5.jpg"]
    assert suspects.iloc[0]["label"] == "c" and suspects.iloc[0]["predicted"] == "a"


def _weak_probs(n: int, n_classes: int, accuracy: float, seed: int = 0):
    """(targets, probs) of a confident model right on ``accuracy`` of ``n`` items."""
    rng = np.random.default_rng(seed)
    targets = np.arange(n) % n_classes
    preds = targets.copy()
    wrong = rng.permutation(n)[:n - int(round(accuracy * n))]
    preds[wrong] = (targets[wrong] + rng.integers(1, n_classes, len(wrong))) % n_classes
    probs = np.full((n, n_classes), 0.1 / (n_classes - 1))
    probs[np.arange(n), preds] = 0.9
    return targets, probs


def test_suspects_of_a_weak_model_carry_the_caveat():
    """A 0.30-accuracy model: cleanlab flags many of 80 photos, and the caveat says not to trust them."""
    from fashion.training.evaluate import SUSPECT_MIN_ACCURACY, find_suspect_labels, suspect_caveat

    targets, probs = _weak_probs(80, 10, accuracy=0.3)
    suspects = find_suspect_labels(pd.DataFrame({"path": [f"{i}.jpg" for i in range(80)]}), targets, probs,
                                   [f"c{i}" for i in range(10)])
    assert len(suspects) > 20
    trust = suspect_caveat(targets, probs)
    assert trust["model_accuracy"] == pytest.approx(0.3) and trust["min_accuracy"] == SUSPECT_MIN_ACCURACY
    assert not trust["reliable"] and trust["caveat"].startswith("unreliable: the model is right on only 30% of the 80")
    strong = suspect_caveat(*_weak_probs(80, 10, accuracy=0.95))
    assert strong["reliable"] and strong["caveat"] is None


def test_evaluate_says_a_weak_models_suspect_labels_are_unreliable(tmp_path, monkeypatch, caplog):
    """evaluate() on a weak model's probabilities: a warning, the caveat in metrics.json and on the figure."""
    import sys

    evaluation = sys.modules["fashion.training.evaluate"]  # the module; fashion.training.evaluate is its function
    items = make_items(tmp_path / "data", per_split=(2, 5, 5), corrupt=False)
    run = training.prepare(items, tiny_config(epochs=0, leak_check=False), tmp_path / "out")

    def weak_predict(run, frame):
        return _weak_probs(len(frame), 3, accuracy=0.4)[::-1]

    monkeypatch.setattr(evaluation, "predict", weak_predict)
    with caplog.at_level(logging.WARNING, logger="fashion.training"):
        metrics = training.evaluate(run)
    trust = metrics["suspect_labels"]
    assert trust["reliable"] is False and trust["model_accuracy"] == pytest.approx(0.4)
    assert json.loads((run.output_dir / "metrics.json").read_text())["suspect_labels"]["caveat"] == trust["caveat"]
    assert "suspect labels:" in caplog.text and trust["caveat"] in caplog.text
    assert "unreliable" in run.evaluation["figures"]["suspect_labels"].get_suptitle()


# ----------------------------------------- the training output is a transaction too (issue 11, class 1)


def test_finished_run_is_sealed_and_a_plain_rerun_refuses(trained):
    """A finished directory carries a manifest (checkpoints/ left out); a rerun into it without
    --resume or --overwrite is refused with one line, before any training."""
    from fashion import rundir
    from fashion.errors import FashionError

    items, out, _ = trained
    manifest = rundir.verify(out, kind="train")
    assert "model.safetensors" in manifest["files"] and "model.json" in manifest["files"]
    assert not any(name.startswith("checkpoints/") for name in manifest["files"])
    with pytest.raises(FashionError, match=r"holds a finished training run: use --resume .* --overwrite"):
        training.train(items, tiny_config(), out)


def test_load_model_refuses_a_changed_model_directory_naming_the_file(trained, tmp_path):
    from fashion.rundir import RunDirError

    _, out, _ = trained
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    path = copy / "model.json"
    path.write_text(path.read_text().replace('"arch"', '"arch" ', 1))
    with pytest.raises(RunDirError, match=r"model\.json has \d+ bytes but manifest\.json says"):
        training.load_model(copy)


def test_failed_overwrite_leaves_the_finished_run(trained, tmp_path, monkeypatch):
    """--overwrite trains in a staging directory; failing at the end (evaluation) leaves the old run
    complete and loadable."""
    from fashion import rundir
    from fashion.training import stages

    items, out, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}

    def fail(run, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stages, "evaluate", fail)
    with pytest.raises(OSError):
        training.train(items, tiny_config(epochs=(1, 0, 0)), copy, overwrite=True)
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    rundir.verify(copy, kind="train")
    assert training.load_model(copy).classes
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("key", ["history", "completed", "config", "results"])
def test_resume_with_a_damaged_state_json_is_one_line(trained, tmp_path, key):
    """A killed run's checkpoints/state.json missing a key: one RunFileError naming file and key
    (it used to be a KeyError traceback)."""
    from fashion.runfiles import RunFileError

    items, out, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    for name in ("manifest.json", "model.json"):  # as a run killed before its export
        (copy / name).unlink()
    state = copy / "checkpoints" / "state.json"
    data = json.loads(state.read_text())
    del data[key]
    state.write_text(json.dumps(data))
    with pytest.raises(RunFileError, match=rf"state\.json: key '{key}' is missing"):
        training.train(items, tiny_config(), copy, resume=True)


def test_prepare_takes_an_item_table_and_keeps_its_root_and_format(tmp_path):
    """fashion train passes datasets.load's ItemTable: run.json's dataset names its root and format."""
    from fashion import datasets

    make_items(tmp_path / "data", corrupt=False)
    table = datasets.load(tmp_path / "data")
    run = training.prepare(table, tiny_config(epochs=0, leak_check=False), tmp_path / "out")
    assert run.dataset["root"] == table.root and run.dataset["format"] == "folder"
    assert run.dataset["n_items"] == len(table)
