"""Items → train / valid / test tables → fastai DataLoaders at a given image size."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import ConfigError, DatasetError
from .config import TrainConfig
from .state import Splits, TrainingRun

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("fashion.training")


def split_items(items: "pd.DataFrame", config: TrainConfig) -> Splits:
    """Assign train / valid / test tables and drop images that cannot be opened.

    train = split "train" (or "" for unsplit data); valid = "valid", else a seeded ``valid_pct`` of
    train; test = "test", else valid. Unreadable images are found up front (fashion.images) and skipped.
    """
    import numpy as np

    from ..images import check_images

    missing = {"path", "label", "split"} - set(items.columns)
    if missing:
        raise ValueError(f"items need columns path, label, split; missing {sorted(missing)}")
    if config.crop == "bbox" and "bbox" not in items.columns:
        raise ConfigError("crop='bbox' needs a bbox column (DeepFashion with Anno/list_bbox.txt)")
    columns = ["path", "label", "split"] + (["bbox"] if config.crop == "bbox" else [])
    frame = items[columns].reset_index(drop=True)
    bboxes = list(frame["bbox"]) if config.crop == "bbox" else None
    bad = check_images(frame["path"], bboxes)
    if bad:
        bad_paths = {p for p, _ in bad}
        frame = frame[~frame["path"].isin(bad_paths)].reset_index(drop=True)
        log.warning("skipping %d images that cannot be opened, e.g. %s: %s", len(bad), *bad[0])
    train = frame[frame["split"].isin(["train", ""])]
    if train.empty:
        raise DatasetError("no training items (split 'train' or unsplit)")
    valid = frame[frame["split"] == "valid"]
    valid_from_train = valid.empty
    if valid_from_train:
        rng = np.random.default_rng(config.seed)
        held = rng.random(len(train)) < config.valid_pct
        if held.all() or not held.any():
            held = np.zeros(len(train), bool)
            held[rng.permutation(len(train))[:max(1, int(round(len(train) * config.valid_pct)))]] = True
        train, valid = train[~held], train[held]
        log.info("no valid split: holding out %d of the train items (seed %d)", len(valid), config.seed)
    test = frame[frame["split"] == "test"]
    test_split = "test"
    if test.empty:
        test, test_split = valid, "valid"
        log.info("no test split: evaluating on the valid split")
    classes = sorted(set(frame["label"]))
    log.info("%d train, %d valid, %d %s items; %d classes; %d skipped",
             len(train), len(valid), len(test), test_split, len(classes), len(bad))
    return Splits(train=train.reset_index(drop=True), valid=valid.reset_index(drop=True),
                  test=test.reset_index(drop=True), test_split=test_split, valid_from_train=valid_from_train,
                  skipped=[list(b) for b in bad], classes=classes)


class ReadImage:
    """fastai get_x: a table row → RGB PIL image via fashion.images.open_image (bbox crop if asked)."""

    def __init__(self, crop: bool):
        self.crop = crop

    def __call__(self, row):
        from ..images import open_image

        return open_image(row["path"], row["bbox"] if self.crop else None)


def item_transforms(config: TrainConfig) -> list:
    """The per-photo training transforms after the squish-resize: :class:`.recompose.Recompose` when
    ``config.recompose`` > 0 (training photos only; validation sees what inference sees)."""
    if not config.recompose:
        return []
    from .recompose import Recompose

    return [Recompose(config.recompose)]


def train_transforms(size: int, config: TrainConfig) -> list:
    """The batch augmentations of the training set: fastai ``aug_transforms`` with ``config.augment``'s
    settings, plus a random resized crop when ``config.min_scale < 1`` (on the valid set that crop is the
    whole squished image, so validation sees what inference sees); [] for ``augment="none"``."""
    from fastai.vision.augment import RandomResizedCropGPU, aug_transforms

    from .config import AUGMENT_SETTINGS

    crop = [RandomResizedCropGPU(size, min_scale=config.min_scale)] if config.min_scale < 1 else []
    if config.augment == "none":
        return crop
    return [*crop, *aug_transforms(**AUGMENT_SETTINGS[config.augment])]


def make_dataloaders(splits: Splits, size: int, config: TrainConfig, mean, std):
    """fastai DataLoaders at ``size``: squish-resize, train-time augmentation (:func:`train_transforms`),
    normalise with (mean, std). A ``sample_weight`` column in the train table (``clean_labels="weight"``)
    makes the training loader fastai's ``WeightedDL``: each epoch draws as many photos, by weight."""
    import pandas as pd
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import ColReader, ColSplitter, Normalize
    from fastai.vision.augment import Resize, ResizeMethod
    from fastai.vision.data import ImageBlock

    frame = pd.concat([splits.train.assign(is_valid=False), splits.valid.assign(is_valid=True)],
                      ignore_index=True)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=splits.classes)),
        get_x=ReadImage(config.crop == "bbox"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"),
        # squish keeps the whole garment (a centre crop cuts collars and hems); same as LoadedModel.preprocess
        item_tfms=[Resize(size, method=ResizeMethod.Squish), *item_transforms(config)],
        batch_tfms=[*train_transforms(size, config), Normalize.from_stats(mean, std, cuda=False)],
    )
    if "sample_weight" in splits.train.columns:
        import fastai.callback.data  # noqa: F401  (adds DataBlock.weighted_dataloaders)

        weights = frame["sample_weight"].fillna(1.0).to_numpy(dtype=float)
        return block.weighted_dataloaders(frame, weights, bs=config.batch_size, num_workers=config.num_workers,
                                          device="cpu")
    return block.dataloaders(frame, bs=config.batch_size, num_workers=config.num_workers, device="cpu")


def set_size(run: TrainingRun, size: int) -> None:
    if size != run.size:
        log.info("new DataLoaders at %d px", size)
        run.learn.dls = make_dataloaders(run.splits, size, run.config, run.backbone.mean, run.backbone.std)
        run.size = size
