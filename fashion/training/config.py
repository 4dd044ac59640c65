"""Training options as data: a :class:`Stage` is one ``fit_one_cycle`` call, a :class:`TrainConfig`
everything a run depends on (saved in ``model.json`` beside the weights)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..options import AUGMENTS, CLEAN_LABELS, CROPS, METRIC_LOSSES, MIXES, comma_separated, default, parse_epochs

LR_SUGGESTIONS = ("valley", "minimum", "steep", "slide")  # fastai.callback.schedule suggestion functions
# accuracy and retrieval levers (#15): their choices (MIXES, AUGMENTS, CLEAN_LABELS, METRIC_LOSSES) and
# the defaults of the fields the CLI sets are fashion.options'
__all__ = ["AUGMENTS", "AUGMENT_SETTINGS", "CLEAN_LABELS", "CROPS", "LEVERS", "LR_SUGGESTIONS", "METRIC_LOSSES",
           "MIXES", "Stage", "TrainConfig", "parse_epochs"]
# the TrainConfig fields above, in CLI order (fashion.cli.train.add_train_levers; benchmarks/train_clothing.py)
LEVERS = ("freeze_early", "label_smoothing", "mix", "mix_alpha", "augment", "min_scale", "recompose", "ema", "tta", "hard_check", "ensemble",
          "clean_labels", "metric_loss", "metric_weight", "distill", "distill_weight")
# aug_transforms keyword arguments per ``augment`` choice ("strong": lighting, warp, zoom, rotation turned up)
AUGMENT_SETTINGS = {
    "default": {},
    "strong": {"max_rotate": 20.0, "min_zoom": 0.9, "max_zoom": 1.3, "max_lighting": 0.4, "max_warp": 0.3,
               "p_lighting": 0.9},
}


@dataclass
class Stage:
    """One ``fit_one_cycle`` call.

    name: used in file names (``lr_find_<name>.png``); epochs: 0 skips the stage; lr: peak LR, None =
    the LR finder's suggestion; frozen: train the head only; size: image side in pixels;
    lr_div: unfrozen stages spread ``slice(lr / lr_div, lr)`` over the layer groups.
    """

    name: str
    epochs: int
    lr: float | None = None
    frozen: bool = True
    size: int = 160
    lr_div: float = 100.0


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in ``model.json`` beside the weights.

    epochs: per stage (an int applies to all three); lr: peak LR of stage 1 (stages 2–3 use lr/2, as
    fastai's ``fine_tune``), None = LR finder; crop: "bbox" crops to the items' ``bbox`` column;
    early_stopping: patience in epochs (None = off); lr_find_iters: batches per LR-finder run;
    lr_suggestion: fastai's suggestion function read off the LR-finder curve (valley, minimum, steep,
    slide); fallback_lr: peak LR of a frozen stage whose LR-finder curve is unfit to read (too short, flat,
    suggestion at the range's edge: :mod:`fashion.training.lrguard`), half of it for unfrozen stages, as
    fastai's ``fine_tune``; valid_pct: share of train held out (seeded) when the items have no "valid" split;
    num_workers: DataLoader worker processes (0 = decode in the training process);
    channels_last: train in channels-last memory format (faster oneDNN convolutions on CPU);
    leak_check: report test photos with a near-copy in train/valid and the accuracy without them
    (fashion.insight; embeds every photo once with the pretrained backbone);
    stages: derived from the fields above unless given.

    Levers (#15, each off by default except ``hard_check``): freeze_early: the body's first N layers
    (:func:`fashion.backbones.body_units`: stem conv, its BatchNorm, then one block stage each) stay
    frozen in every stage, weights and BatchNorm statistics, so no gradient is computed through the
    high-resolution layers (the costliest part of a CPU backward pass); label_smoothing: eps of fastai's
    ``LabelSmoothingCrossEntropyFlat`` (0 = plain cross entropy); mix: fastai ``MixUp`` / ``CutMix``
    on the training batches, mix_alpha their Beta parameter (None = fastai's default); augment:
    aug_transforms settings (:data:`AUGMENT_SETTINGS`, "none" = no augmentation); min_scale: below
    1, a random resized crop covering at least this share of the (squished) image; recompose: the share of
    training photos recomposed each epoch, on another photographed background or smaller in the frame
    (:mod:`.recompose`); ema: decay of an
    exponential moving average of the weights, updated every batch, validated and kept in place of the
    raw weights; tta: also report test-time-augmented accuracy (fastai ``Learner.tta``); hard_check:
    report accuracy on strongly perturbed test and valid photos (:mod:`.robustness`), and with the garment on
    another background and smaller in the frame (:mod:`.backdrops`): valid's to choose levers on; ensemble: more registry
    archs trained with the same schedule and exported with ``arch`` as one model (:mod:`fashion.ensemble`);
    clean_labels: "drop" removes the train photos cleanlab flags on out-of-fold predictions of a
    logistic regression on frozen pretrained features, "weight" keeps them but samples each with its
    label-quality score as weight (fastai ``WeightedDL``; the others weigh 1) (:mod:`.cleanup`); metric_loss: a
    pytorch-metric-learning loss on the head's penultimate features added to the classification loss,
    weighted by metric_weight, in every stage (:mod:`.metric`); distill: trained model directories whose
    averaged softened predictions the training loss also follows, with weight distill_weight against the
    classification loss (:mod:`.distill`).
    """

    arch: str = default("train_arch")
    size: int = default("train_size")
    final_size: int = default("final_size")
    epochs: Any = default("epochs")
    lr: float | None = default("lr")
    batch_size: int = default("train_batch_size")
    crop: str = default("crop")
    seed: int = default("train_seed")
    pretrained: bool = True
    weights: str | None = default("weights")
    early_stopping: int | None = default("early_stopping")
    num_workers: int = default("train_workers")
    lr_find_iters: int = default("lr_find_iters")
    lr_suggestion: str = "valley"
    fallback_lr: float = default("fallback_lr")
    valid_pct: float = 0.2
    channels_last: bool = True
    leak_check: bool = default("leak_check")
    # accuracy and retrieval levers (#15)
    freeze_early: int = default("freeze_early")
    label_smoothing: float = default("label_smoothing")
    mix: str = default("mix")
    mix_alpha: float | None = default("mix_alpha")
    augment: str = default("augment")
    min_scale: float = default("min_scale")
    recompose: float = default("recompose")
    ema: float | None = default("ema")
    tta: bool = default("tta")
    hard_check: bool = default("hard_check")
    ensemble: tuple = default("ensemble")
    clean_labels: str = default("clean_labels")
    metric_loss: str = default("metric_loss")
    metric_weight: float = default("metric_weight")
    distill: tuple = default("distill")
    distill_weight: float = default("distill_weight")
    stages: list = field(default=None)

    def __post_init__(self):
        self.epochs = epochs = parse_epochs(self.epochs)
        if self.lr_suggestion not in LR_SUGGESTIONS:
            raise ConfigError(f"lr_suggestion must be one of {LR_SUGGESTIONS}, got {self.lr_suggestion!r}")
        if self.crop not in CROPS:
            raise ConfigError(f"crop must be one of {CROPS}, got {self.crop!r}")
        for name in ("size", "final_size", "batch_size", "lr_find_iters"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if not self.fallback_lr > 0:
            raise ConfigError(f"fallback_lr must be positive, got {self.fallback_lr!r}")
        if self.weights is not None:
            self.weights = str(self.weights)
        self._check_levers()
        if self.stages is None:
            half = self.lr / 2 if self.lr else None
            self.stages = [Stage("stage1", epochs[0], self.lr, True, self.size),
                           Stage("stage2", epochs[1], half, False, self.size),
                           Stage("stage3", epochs[2], half, False, self.final_size)]
        self.stages = [s if isinstance(s, Stage) else Stage(**s) for s in self.stages]
        if len({s.name for s in self.stages}) != len(self.stages):
            raise ConfigError("stage names must be unique")

    def _check_levers(self) -> None:
        for name, choices in (("mix", MIXES), ("augment", AUGMENTS), ("clean_labels", CLEAN_LABELS),
                              ("metric_loss", METRIC_LOSSES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if int(self.freeze_early) != self.freeze_early or self.freeze_early < 0:
            raise ConfigError(f"freeze_early must be a whole number >= 0, got {self.freeze_early!r}")
        self.freeze_early = int(self.freeze_early)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.mix_alpha is not None and not self.mix_alpha > 0:
            raise ConfigError(f"mix_alpha must be positive, got {self.mix_alpha!r}")
        if not 0 < self.min_scale <= 1:
            raise ConfigError(f"min_scale must be in (0, 1], got {self.min_scale!r}")
        if not 0 <= self.recompose <= 1:
            raise ConfigError(f"recompose must be in [0, 1], got {self.recompose!r}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema (the decay per batch) must be in (0, 1), got {self.ema!r}")
        if not self.metric_weight > 0:
            raise ConfigError(f"metric_weight must be positive, got {self.metric_weight!r}")
        if self.mix != "none" and self.metric_loss != "none":
            raise ConfigError("mix and metric_loss do not combine: a mixed photo has no one label to pull "
                              "its embedding towards")
        self.distill, self.ensemble = _names(self.distill), _names(self.ensemble)
        if not 0 < self.distill_weight <= 1:
            raise ConfigError(f"distill_weight must be in (0, 1], got {self.distill_weight!r}")
        if self.arch in self.ensemble or len(set(self.ensemble)) != len(self.ensemble):
            raise ConfigError(f"ensemble lists the other archs, each once (arch is {self.arch!r}); got "
                              f"{list(self.ensemble)}")

    def to_dict(self) -> dict:
        return asdict(self)


def _names(value) -> tuple:
    """A list field given as "a, b" (the CLI's text) or any sequence (JSON's lists): a tuple of its names."""
    return comma_separated(value) if isinstance(value, str) else tuple(str(v).strip() for v in value if str(v).strip())
