"""The recompose training lever (fashion.training.recompose): the garment on another photographed background,
the photo smaller in the frame — on training photos only, seeded, and apart from the check's own generators."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("fastai")
torch = pytest.importorskip("torch")

from factories import PHOTO_COLOURS, garment_photo, make_garment_folder  # noqa: E402
from fashion.errors import ConfigError  # noqa: E402
from fashion.training import TrainConfig, backdrops  # noqa: E402
from fashion.training import recompose as rc  # noqa: E402

BLUE = np.array(PHOTO_COLOURS["blue"], float)


def blue_share(image) -> float:
    return float((np.abs(np.asarray(image, float) - BLUE).sum(-1) < 60).mean())


def test_background_strip_is_the_clean_side_or_none():
    image = garment_photo(PHOTO_COLOURS["blue"], "wood", size=(120, 160))
    alpha, method = backdrops.garment_alpha(image)
    strip = rc.background_strip(np.asarray(image), alpha)
    assert method == "border" and strip is not None and strip.shape[0] == round(rc.STRIP * 120)
    assert blue_share(strip) == 0  # no garment in it: the wood floor
    full = np.ones_like(alpha)  # the garment everywhere: no side is background
    assert rc.background_strip(np.asarray(image), full) is None


def test_tile_strip_fills_the_frame_with_the_mirrored_strip():
    strip = np.random.default_rng(0).integers(0, 255, (7, 30, 3)).astype(np.uint8)
    canvas = rc.tile_strip(strip, (45, 20))
    assert canvas.shape == (20, 45, 3)
    resized = rc.tile_strip(strip, (30, 20))
    assert np.array_equal(resized[:7], strip) and np.array_equal(resized[7:14], strip[::-1])  # seamless: mirrored
    assert np.array_equal(resized[14:20], strip[:6])


def test_recompose_background_keeps_the_garment_and_puts_another_floor_under_it():
    image = garment_photo(PHOTO_COLOURS["blue"], "sheet", size=(120, 160))  # white sheet
    other = garment_photo(PHOTO_COLOURS["red"], "wood", size=(120, 160))
    alpha, _ = backdrops.garment_alpha(image)
    strip = rc.background_strip(np.asarray(other), backdrops.garment_alpha(other)[0])
    out = rc.recompose_background(image, alpha, strip, seed=3)
    rgb, before = np.asarray(out, float), np.asarray(image, float)
    garment, floor = alpha > 0.99, alpha < 0.01
    assert out.size == image.size
    assert np.abs(rgb - before)[garment].mean() < 2  # the garment stays
    assert before[floor].mean() > 200 and rgb[floor].mean() < 190  # the white sheet became wood
    assert out.tobytes() == rc.recompose_background(image, alpha, strip, seed=3).tobytes()  # seeded


def test_recompose_smaller_shrinks_the_whole_photo_onto_its_own_floor():
    image = garment_photo(PHOTO_COLOURS["blue"], "sheet", size=(120, 160))
    strip = rc.background_strip(np.asarray(image), backdrops.garment_alpha(image)[0])
    before = blue_share(image)
    for seed in range(4):
        out = rc.recompose_smaller(image, strip, seed)
        assert out.size == image.size
        ratio = blue_share(out) / before
        assert rc.SCALE[0] ** 2 * 0.8 < ratio < rc.SCALE[1] ** 2 * 1.1
        assert np.asarray(out, float)[[0, -1]][:, [0, -1]].mean() > 200  # the corners: the sheet, tiled
    assert rc.recompose_smaller(image, strip, 1).tobytes() == rc.recompose_smaller(image, strip, 1).tobytes()


def test_recompose_transform_changes_training_photos_only_and_counts_them():
    from fastai.vision.core import PILImage

    image = PILImage(garment_photo(PHOTO_COLOURS["blue"], "wood", size=(64, 80)))
    tfm = rc.Recompose(p=1.0)
    random.seed(0)
    outs = [tfm(image, split_idx=0) for _ in range(12)]
    assert all(isinstance(o, PILImage) and o.size == image.size for o in outs)
    assert tfm.counts["background"] > 0 and tfm.counts["smaller"] > 0 and sum(tfm.counts.values()) == 12
    assert len(tfm.strips) == 12
    assert all(o.tobytes() != image.tobytes() for o in outs)
    assert tfm(image, split_idx=1).tobytes() == image.tobytes()  # validation and test: unchanged, not counted
    assert sum(tfm.counts.values()) == 12
    undrawn = rc.Recompose(p=0.0)
    assert undrawn(image, split_idx=0).tobytes() == image.tobytes()
    assert undrawn.counts == {"background": 0, "smaller": 0, "unchanged": 1}  # every training photo counts
    some = rc.Recompose(p=0.3)
    [some(image, split_idx=0) for _ in range(40)]
    changed = some.counts["background"] + some.counts["smaller"]
    assert sum(some.counts.values()) == 40 and 0 < changed < 40


def test_recompose_transform_leaves_a_photo_without_a_clean_border():
    from fastai.vision.core import PILImage

    noise = PILImage.create(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    tfm = rc.Recompose(p=1.0)
    assert tfm(noise, split_idx=0).tobytes() == noise.tobytes() and tfm.counts["unchanged"] == 1


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_config_rejects_a_recompose_share_outside_0_1(bad):
    with pytest.raises(ConfigError, match="recompose"):
        TrainConfig(recompose=bad)


def test_recompose_option_reaches_the_training_loader(tmp_path):

    from fashion import datasets, training
    from fashion.cli import build_parser
    from fashion.cli.common import fields_of

    args = build_parser().parse_args(["train", "--output-dir", "o", "--recompose", "0.4"])
    assert TrainConfig(**fields_of(TrainConfig, args)).recompose == 0.4
    root = make_garment_folder(tmp_path / "d", ["blue", "red"], per_family=3, size=(48, 64))
    items = datasets.load(root, format="folder").frame
    cfg = TrainConfig(epochs=0, size=32, final_size=32, batch_size=4, augment="none", recompose=1.0, num_workers=0,
                      pretrained=False, leak_check=False, hard_check=False, seed=0)
    splits = training.split_items(items, cfg)
    plain = training.make_dataloaders(splits, 32, TrainConfig(**{**cfg.to_dict(), "recompose": 0.0, "stages": None}),
                                      (0.5,) * 3, (0.5,) * 3)
    dls = training.make_dataloaders(splits, 32, cfg, (0.5,) * 3, (0.5,) * 3)
    names = [type(t).__name__ for t in dls.train.after_item.fs]
    assert "Recompose" in names and "Recompose" not in [type(t).__name__ for t in plain.train.after_item.fs]
    assert torch.allclose(dls.valid.one_batch()[0], plain.valid.one_batch()[0], atol=1e-4)  # valid: as inference
    recomposer = next(t for t in dls.train.after_item.fs if type(t).__name__ == "Recompose")
    dls.train.one_batch()
    assert sum(recomposer.counts.values()) >= 4


def test_recompose_counts_the_photos_dataloader_workers_decode(tmp_path):
    from fashion import datasets, training

    root = make_garment_folder(tmp_path / "d", ["blue", "red"], per_family=4, size=(48, 64))
    cfg = TrainConfig(epochs=0, size=32, final_size=32, batch_size=2, augment="none", recompose=1.0, num_workers=2,
                      pretrained=False, leak_check=False, hard_check=False, seed=0)
    splits = training.split_items(datasets.load(root, format="folder").frame, cfg)
    dls = training.make_dataloaders(splits, 32, cfg, (0.5,) * 3, (0.5,) * 3)
    (recomposer,) = rc.recomposers(dls.train)
    assert dls.train.num_workers >= 1  # fastai may take fewer than asked for a loader this short
    seen = sum(len(xb) for xb, _ in dls.train)  # one epoch, decoded in worker processes
    counts = recomposer.take_counts()
    assert seen > 0 and sum(counts.values()) == len(dls.train.dataset)  # every photo once (a short last batch too)
    assert recomposer.counts == dict.fromkeys(rc.KINDS, 0)
    assert sum(recomposer.tally[0].tolist()) == 0  # nothing was decoded in this process


def test_test_time_augmentation_leaves_recompose_out(tmp_path):
    """fastai's tta runs the training transforms over test photos: the recompose lever is not one of them
    (a training lever, not an augmentation of the photo at hand), and test photos never join its pool."""
    from fashion import datasets, training
    from fashion.training.evaluate import predict_tta

    root = make_garment_folder(tmp_path / "d", ["blue", "red"], per_family=4, size=(48, 64))
    items = datasets.load(root, format="folder").frame
    cfg = TrainConfig(epochs=(0, 0, 0), size=32, final_size=32, batch_size=4, augment="none", recompose=1.0,
                      pretrained=False, leak_check=False, hard_check=False, seed=0, valid_pct=0.3)
    run = training.prepare(items, cfg, tmp_path / "out")
    recomposer = next(t for t in run.learn.dls.train.after_item.fs if isinstance(t, rc.Recompose))
    before = dict(recomposer.counts)
    probs, targets = predict_tta(run, run.splits.valid, n=2)
    assert probs.shape == (len(run.splits.valid), 2) and recomposer.counts == before
    run.learn.dls.train.one_batch()  # while training it still recomposes
    assert sum(recomposer.counts.values()) > sum(before.values())


def test_each_epoch_logs_what_recompose_did_to_that_epochs_photos(tmp_path, caplog):
    """One INFO line per epoch from the training callbacks (EpochLog), with the epoch's own counts: the
    photos drawn before the fit (as the LR finder draws them) and the previous epoch's are not in it."""
    import logging
    import re

    from fashion import datasets, training
    from fashion.training import Stage

    root = make_garment_folder(tmp_path / "d", ["blue", "red"], per_family=6, size=(48, 64))
    items = datasets.load(root, format="folder").frame
    cfg = TrainConfig(epochs=(0, 0, 0), size=32, final_size=32, batch_size=4, augment="none", recompose=1.0,
                      pretrained=False, leak_check=False, hard_check=False, seed=0, valid_pct=0.25, num_workers=0)
    run = training.prepare(items, cfg, tmp_path / "out")
    recomposer, = rc.recomposers(run.learn.dls.train)
    run.learn.dls.train.one_batch()
    assert sum(recomposer.counts.values()) == 4  # drawn outside an epoch
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        training.run_stage(run, Stage("s1", 2, lr=1e-3, frozen=True, size=32))
    lines = [r.getMessage() for r in caplog.records if "recomposed" in r.getMessage()]
    assert [r.levelno for r in caplog.records if "recomposed" in r.getMessage()] == [logging.INFO] * 2
    per_epoch = len(run.learn.dls.train.dataset)  # each training photo once (fastai drops a short last batch
    assert per_epoch % cfg.batch_size  # after its transforms: the count is every photo's, 17 here, not 16)
    for epoch, line in enumerate(lines, 1):
        m = re.fullmatch(rf"s1 epoch {epoch}: recomposed (\d+) of (\d+) photos: (\d+) on another background, "
                         r"(\d+) smaller", line)
        assert m, line
        changed, seen, background, smaller = map(int, m.groups())
        assert seen == per_epoch and changed == background + smaller and 0 < changed <= seen
    assert sum(recomposer.counts.values()) == 0  # read and zeroed by the last epoch's line


def test_take_counts_returns_the_counts_and_starts_again_at_zero():
    tfm = rc.Recompose(p=1.0)
    tfm.tally[0] = torch.tensor([2, 0, 4])  # the training process's row and a worker's: summed
    tfm.tally[3] = torch.tensor([0, 1, 1])
    assert tfm.take_counts() == {"background": 2, "smaller": 1, "unchanged": 5}
    assert tfm.counts == {"background": 0, "smaller": 0, "unchanged": 0}
    assert rc.Recompose.describe(tfm.take_counts()) == "recomposed 0 of 0 photos: 0 on another background, 0 smaller"


def test_recompose_share_benchmark_counts_the_photos_the_lever_can_take(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "recompose_share.py"
    spec = importlib.util.spec_from_file_location("recompose_share", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    make_garment_folder(tmp_path / "d" / "train", ["blue", "red"], per_family=2, size=(48, 64))
    assert module.main(["--data", str(tmp_path / "d"), "--n", "8", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("8 training photos at 64 px: 8 can be recomposed (1.000)")  # plain floors: all of them
