"""Three-stage fastai transfer learning of a clothing-category classifier.

The original study's schedule, as data (:class:`Stage` list in a :class:`TrainConfig`):

1. LR finder, body frozen, ``fit_one_cycle`` of the head (image size ``size``);
2. unfreeze, LR finder, ``fit_one_cycle`` with discriminative LRs ``slice(lr / lr_div, lr)`` spread over
   the layer groups (body early, body late, head);
3. new DataLoaders at ``final_size``, LR finder, ``fit_one_cycle`` again.

Every stage keeps its best epoch by validation loss (fastai's ``SaveModelCallback``), and a stage
that does not beat the best earlier stage is rolled back, so the exported model is the best by
validation loss over the whole run. After each stage the best weights and a small state file are
written atomically to ``output_dir/checkpoints``: ``resume=True`` continues a killed run with the
next stage.

Cell by cell (as ``train.ipynb`` does)::

    run = prepare(items, TrainConfig(), "out")
    lr_find(run, run.config.stages[0])          # optional: run_stage calls it when needed
    run_stage(run, run.config.stages[0])
    ...
    evaluate(run); export(run)

or all at once: ``train(items, TrainConfig(), "out")``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .atomic import ensure_dir, save_csv, save_figure, write_json
from .modelio import LoadedModel, load_model  # noqa: F401  (public: fashion.training.load_model)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

CROPS = ("none", "bbox")
LR_SUGGESTIONS = ("valley", "minimum", "steep", "slide")  # fastai.callback.schedule suggestion functions
STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"
CHECKPOINTS = "checkpoints"
HISTORY_COLUMNS = ["stage", "epoch", "train_loss", "valid_loss", "accuracy", "time"]


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
    slide); valid_pct: share of train held out (seeded) when the items have no "valid" split;
    num_workers: DataLoader worker processes (0 = decode in the training process);
    channels_last: train in channels-last memory format (faster oneDNN convolutions on CPU);
    stages: derived from the fields above unless given.
    """

    arch: str = "efficientnet_lite0"
    size: int = 160
    final_size: int = 224
    epochs: Any = (2, 3, 2)
    lr: float | None = None
    batch_size: int = 32
    crop: str = "none"
    seed: int = 42
    pretrained: bool = True
    weights: str | None = None
    early_stopping: int | None = None
    num_workers: int = 0
    lr_find_iters: int = 100
    lr_suggestion: str = "valley"
    valid_pct: float = 0.2
    channels_last: bool = True
    stages: list = field(default=None)

    def __post_init__(self):
        epochs = (self.epochs,) * 3 if isinstance(self.epochs, int) else tuple(int(e) for e in self.epochs)
        if len(epochs) != 3 or any(e < 0 for e in epochs):
            raise ValueError(f"epochs must be one number or three (one per stage), >= 0; got {self.epochs!r}")
        self.epochs = epochs
        if self.lr_suggestion not in LR_SUGGESTIONS:
            raise ValueError(f"lr_suggestion must be one of {LR_SUGGESTIONS}, got {self.lr_suggestion!r}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        for name in ("size", "final_size", "batch_size", "lr_find_iters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.weights is not None:
            self.weights = str(self.weights)
        if self.stages is None:
            half = self.lr / 2 if self.lr else None
            self.stages = [Stage("stage1", epochs[0], self.lr, True, self.size),
                           Stage("stage2", epochs[1], half, False, self.size),
                           Stage("stage3", epochs[2], half, False, self.final_size)]
        self.stages = [s if isinstance(s, Stage) else Stage(**s) for s in self.stages]
        if len({s.name for s in self.stages}) != len(self.stages):
            raise ValueError("stage names must be unique")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Splits:
    """Item tables (path, label, [bbox]) per role, and what was set aside."""

    train: Any
    valid: Any
    test: Any
    test_split: str                       # "test", or "valid" when the items have no test split
    valid_from_train: bool
    skipped: list = field(default_factory=list)   # [(path, reason)] of images that cannot be opened
    classes: list = field(default_factory=list)


@dataclass
class LRFind:
    """An LR-finder run: suggestion (config.lr_suggestion), and the curve (lrs, losses) it was taken from."""

    stage: str
    suggestion: float
    lrs: list
    losses: list
    figure: Any = None


@dataclass
class StageResult:
    """Outcome of one stage: the LR used (lo, hi), its best valid loss and epoch, and wall time."""

    name: str
    epochs_run: int
    lr: tuple
    lr_suggestion: float | None
    best_valid_loss: float
    best_epoch: int
    kept: bool                            # False when an earlier stage stayed the best
    seconds: float
    size: int
    frozen: bool
    figure: Any = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("figure")
        return d


@dataclass
class TrainingRun:
    """State shared by the cell-by-cell functions: the Learner, items, config, output dir, results."""

    learn: Any
    config: TrainConfig
    splits: Splits
    output_dir: Path
    backbone: Any
    size: int
    lr_finds: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    best: dict = field(default_factory=dict)       # {"stage": name, "valid_loss": float}
    completed: list = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)

    @property
    def checkpoints(self) -> Path:
        return self.output_dir / CHECKPOINTS


@dataclass
class TrainResult:
    """What :func:`train` returns: the output directory, test metrics and per-stage results."""

    output_dir: Path
    metrics: dict
    stages: list
    seconds: float

    def summary(self) -> str:
        m = self.metrics.get("test", {})
        topk = ", ".join(f"top-{k} {v:.3f}" for k, v in m.get("topk", {}).items())
        return (f"trained in {self.seconds / 60:.1f} min; {m.get('split', 'test')} ({m.get('n', 0)} images): "
                f"{topk}; model in {self.output_dir}")


# ----------------------------------------------------------------------------------------------- items


def split_items(items: "pd.DataFrame", config: TrainConfig) -> Splits:
    """Assign train / valid / test tables and drop images that cannot be opened.

    train = split "train" (or "" for unsplit data); valid = "valid", else a seeded ``valid_pct`` of
    train; test = "test", else valid. Unreadable images are found up front (fashion.images) and skipped.
    """
    import numpy as np

    from .images import check_images

    missing = {"path", "label", "split"} - set(items.columns)
    if missing:
        raise ValueError(f"items need columns path, label, split; missing {sorted(missing)}")
    if config.crop == "bbox" and "bbox" not in items.columns:
        raise ValueError("crop='bbox' needs a bbox column (DeepFashion with Anno/list_bbox.txt)")
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
        raise ValueError("no training items (split 'train' or unsplit)")
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


class _ReadImage:
    """fastai get_x: a table row → RGB PIL image via fashion.images.open_image (bbox crop if asked)."""

    def __init__(self, crop: bool):
        self.crop = crop

    def __call__(self, row):
        from .images import open_image

        return open_image(row["path"], row["bbox"] if self.crop else None)


def make_dataloaders(splits: Splits, size: int, config: TrainConfig, mean, std):
    """fastai DataLoaders at ``size``: squish-resize, train-time aug_transforms, normalise with (mean, std)."""
    import pandas as pd
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import ColReader, ColSplitter, Normalize
    from fastai.vision.augment import Resize, ResizeMethod, aug_transforms
    from fastai.vision.data import ImageBlock

    frame = pd.concat([splits.train.assign(is_valid=False), splits.valid.assign(is_valid=True)],
                      ignore_index=True)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=splits.classes)),
        get_x=_ReadImage(config.crop == "bbox"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"),
        # squish keeps the whole garment (a centre crop cuts collars and hems); same as LoadedModel.preprocess
        item_tfms=Resize(size, method=ResizeMethod.Squish),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(mean, std, cuda=False)],
    )
    return block.dataloaders(frame, bs=config.batch_size, num_workers=config.num_workers, device="cpu")


# --------------------------------------------------------------------------------------------- learner


def _epoch_log_callback(run: TrainingRun, stage: Stage):
    """A fastai callback logging one line per epoch and appending it to ``run.history`` / history.csv."""
    from fastai.callback.core import Callback
    from fastai.learner import Recorder

    class EpochLog(Callback):
        order = Recorder.order + 1  # after Recorder has filled its log

        def before_epoch(self):
            self.t0 = time.time()

        def after_epoch(self):
            values = dict(zip(self.learn.recorder.metric_names, self.learn.recorder.log))
            row = {"stage": stage.name, "epoch": int(values["epoch"]) + 1,
                   "train_loss": float(values["train_loss"]), "valid_loss": float(values["valid_loss"]),
                   "accuracy": float(values.get("accuracy", float("nan"))), "time": round(time.time() - self.t0, 1)}
            run.history.append(row)
            _save_history(run)
            log.info("%s epoch %d/%d: train_loss %.4f valid_loss %.4f accuracy %.4f (%.0f s)", stage.name,
                     row["epoch"], stage.epochs, row["train_loss"], row["valid_loss"], row["accuracy"], row["time"])

    return EpochLog()


def build_learner(splits: Splits, config: TrainConfig, output_dir: Path):
    """fastai Learner over ``nn.Sequential(body, head)`` with [body early, body late, head] groups."""
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle and Learner.lr_find)
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    from .modelio import build_classifier, splitter

    model, backbone = build_classifier(config.arch, len(splits.classes), pretrained=config.pretrained,
                                       weights=config.weights)
    dls = make_dataloaders(splits, config.stages[0].size if config.stages else config.size, config,
                           backbone.mean, backbone.std)
    cbs = []
    if config.channels_last:  # oneDNN's fast convolutions: ~2x faster training on CPU
        from fastai.callback.channelslast import ChannelsLast

        cbs.append(ChannelsLast())
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, splitter=splitter,
                    path=output_dir, model_dir=CHECKPOINTS, cbs=cbs)
    return learn, backbone


def prepare(items: "pd.DataFrame", config: TrainConfig, output_dir, resume: bool = False) -> TrainingRun:
    """Split and check the items, build the Learner; with ``resume`` restore a previous run's state."""
    from fastai.torch_core import set_seed

    output_dir = ensure_dir(output_dir)
    set_seed(config.seed, reproducible=True)
    random.seed(config.seed)
    splits = split_items(items, config)
    learn, backbone = build_learner(splits, config, output_dir)
    run = TrainingRun(learn=learn, config=config, splits=splits, output_dir=output_dir, backbone=backbone,
                      size=config.stages[0].size if config.stages else config.size)
    if resume:
        _restore(run)
    return run


# ---------------------------------------------------------------------------------------------- stages


def _set_size(run: TrainingRun, size: int) -> None:
    if size != run.size:
        log.info("new DataLoaders at %d px", size)
        run.learn.dls = make_dataloaders(run.splits, size, run.config, run.backbone.mean, run.backbone.std)
        run.size = size


def _set_frozen(run: TrainingRun, frozen: bool) -> None:
    if frozen:
        run.learn.freeze()
    else:
        run.learn.unfreeze()


def lr_find(run: TrainingRun, stage: Stage, num_it: int | None = None) -> LRFind:
    """fastai's LR finder for ``stage`` (its size and frozen state); saves ``lr_find_<stage>.png``.

    The model is restored afterwards (fastai saves and reloads it); the suggestion is fastai's
    ``config.lr_suggestion`` function ("valley" by default).
    """
    from fastai.callback import schedule

    _set_size(run, stage.size)
    _set_frozen(run, stage.frozen)
    num_it = num_it or run.config.lr_find_iters
    how = run.config.lr_suggestion
    with run.learn.no_bar():  # one bar per LR-finder batch is noise; the result is logged
        suggested = run.learn.lr_find(num_it=num_it, suggest_funcs=(getattr(schedule, how),), show_plot=False)
    suggestion = float(getattr(suggested, how))
    recorder = run.learn.recorder
    lrs, losses = [float(v) for v in recorder.lrs], [float(v) for v in recorder.losses]
    # fastai's plot drops the first 10 and last 5 points (warm-up and divergence); so do we
    cut = slice(10, -5) if len(lrs) > 20 else slice(None)
    from .evaluation import lr_find_figure

    fig = lr_find_figure(lrs[cut], losses[cut], suggestion, title=f"LR finder, {stage.name} ({how})")
    save_figure(run.output_dir / f"lr_find_{stage.name}.png", fig)
    result = LRFind(stage.name, suggestion, lrs, losses, fig)
    run.lr_finds[stage.name] = result
    log.info("%s LR finder: suggested %.2e", stage.name, result.suggestion)
    return result


def _stage_lr(run: TrainingRun, stage: Stage) -> tuple[float, float, float | None]:
    """(lo, hi, suggestion) of a stage: its own LR, or the LR finder's suggestion."""
    suggestion = None
    hi = stage.lr
    if hi is None:
        found = run.lr_finds.get(stage.name) or lr_find(run, stage)
        suggestion = hi = found.suggestion
        first = next((r for r in run.results.values() if r.frozen), None)
        if not stage.frozen and first is not None and hi > first.lr[1]:
            # after unfreezing the pretrained body should not move faster than the new head did
            log.info("%s: capping the suggested LR %.2e at stage %s's %.2e", stage.name, hi, first.name, first.lr[1])
            hi = first.lr[1]
    lo = hi if stage.frozen else hi / stage.lr_div
    return lo, hi, suggestion


def run_stage(run: TrainingRun, stage: Stage, cbs: Sequence = ()) -> StageResult | None:
    """Fit one stage with ``fit_one_cycle``; keep its best epoch, roll back if an earlier stage was better.

    Returns None for a stage of 0 epochs.
    ``cbs``: extra fastai callbacks for this fit (e.g. ``ShowGraphCallback()`` in a notebook).
    Writes ``loss_<stage>.png``, ``history.csv`` and the resume checkpoint.
    """
    from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

    if stage.epochs < 1:
        log.info("%s: 0 epochs, skipped", stage.name)
        return None
    t0 = time.time()
    _set_size(run, stage.size)
    _set_frozen(run, stage.frozen)
    lo, hi, suggestion = _stage_lr(run, stage)
    _set_frozen(run, stage.frozen)  # lr_find restores the weights, not necessarily requires_grad
    saver = SaveModelCallback(monitor="valid_loss", fname=f"{stage.name}_best")
    fit_cbs = [saver, _epoch_log_callback(run, stage), *cbs]
    if run.config.early_stopping:
        fit_cbs.append(EarlyStoppingCallback(monitor="valid_loss", patience=run.config.early_stopping))
    log.info("%s: %d epochs at %d px, %s, lr %s", stage.name, stage.epochs, stage.size,
             "body frozen" if stage.frozen else "unfrozen", f"{hi:.2e}" if stage.frozen else f"slice({lo:.2e}, {hi:.2e})")
    try:
        run.learn.fit_one_cycle(stage.epochs, hi if stage.frozen else slice(lo, hi), cbs=fit_cbs)
    except RuntimeError as exc:
        raise _checkpoint_error(run, exc) from None
    result = _finish_stage(run, stage, saver, (lo, hi), suggestion, time.time() - t0)
    return result


def _checkpoint_error(run: TrainingRun, exc: RuntimeError) -> Exception:
    """fastai's SaveModelCallback writes with torch.save, whose I/O failures (full disk) surface as a
    RuntimeError from its zip writer: turn those into one clear OutputError, re-raise anything else."""
    import shutil

    from .errors import OutputError

    text = str(exc)
    if "PytorchStreamWriter" not in text and "inline_container" not in text:
        return exc
    where = Path(run.learn.path) / run.learn.model_dir
    try:
        full = shutil.disk_usage(where if where.exists() else run.output_dir).free < 1 << 20
    except OSError:
        full = False
    reason = "no space left on device" if full else text.strip().splitlines()[0]
    return OutputError(f"cannot write checkpoint in {where}: {reason}")


def _finish_stage(run: TrainingRun, stage: Stage, saver, lr, suggestion, seconds) -> StageResult:
    import numpy as np

    from .evaluation import loss_figure
    from .modelio import save_state_dict

    recorder = run.learn.recorder
    valid_losses = [float(v[1]) for v in recorder.values]
    best_epoch = int(np.argmin(valid_losses)) + 1 if valid_losses else 0
    best = float(saver.best)
    kept = not run.best or best < run.best["valid_loss"]
    ensure_dir(run.checkpoints)
    if kept:
        save_state_dict(run.checkpoints / BEST_FILE, run.learn.model)
        run.best = {"stage": stage.name, "valid_loss": best}
    else:
        log.info("%s (best valid loss %.4f) did not beat %s (%.4f): keeping %s's weights",
                 stage.name, best, run.best["stage"], run.best["valid_loss"], run.best["stage"])
        _load_best(run)
    fig = loss_figure([float(v) for v in recorder.losses], list(recorder.iters), valid_losses,
                      title=f"loss, {stage.name} ({stage.size} px, {'frozen' if stage.frozen else 'unfrozen'})")
    save_figure(run.output_dir / f"loss_{stage.name}.png", fig)
    result = StageResult(stage.name, len(valid_losses), tuple(lr), suggestion, best, best_epoch, kept,
                         round(seconds, 1), stage.size, stage.frozen, fig)
    run.results[stage.name] = result
    run.completed.append(stage.name)
    _save_state(run)
    _cleanup_fastai_files(run, stage)
    log.info("%s done in %.1f min: best valid loss %.4f at epoch %d", stage.name, seconds / 60, best, best_epoch)
    return result


def _load_best(run: TrainingRun) -> None:
    from .backbones import read_state_dict

    run.learn.model.load_state_dict(read_state_dict(run.checkpoints / BEST_FILE), strict=True)


def _cleanup_fastai_files(run: TrainingRun, stage: Stage) -> None:
    for path in run.checkpoints.glob(f"{stage.name}_best.pth"):
        path.unlink(missing_ok=True)


def _save_history(run: TrainingRun) -> None:
    import pandas as pd

    save_csv(run.output_dir / "history.csv", pd.DataFrame(run.history, columns=HISTORY_COLUMNS))


def _save_state(run: TrainingRun) -> None:
    write_json(run.checkpoints / STATE_FILE, {
        "config": run.config.to_dict(), "classes": run.splits.classes, "completed": run.completed,
        "best": run.best, "results": {k: v.to_dict() for k, v in run.results.items()},
        "history": run.history, "lr_finds": {k: v.suggestion for k, v in run.lr_finds.items()},
    })


def _restore(run: TrainingRun) -> None:
    """Load a killed run's state: completed stages, history, best weights."""
    import json

    path = run.checkpoints / STATE_FILE
    if not path.is_file():
        log.info("nothing to resume in %s: starting from scratch", run.output_dir)
        return
    state = json.loads(path.read_text(encoding="utf-8"))
    if state["classes"] != run.splits.classes or state["config"]["arch"] != run.config.arch:
        raise ValueError(f"{path}: the saved run has other classes or another arch; use a new --output_dir")
    run.completed = list(state["completed"])
    run.best = state["best"]
    run.history = [r for r in state["history"] if r["stage"] in run.completed]
    for name, r in state["results"].items():
        r = dict(r)
        r["lr"] = tuple(r["lr"])
        run.results[name] = StageResult(**r)
    if run.best:
        _load_best(run)
    _save_history(run)
    log.info("resuming %s after %s (best so far: %s)", run.output_dir, ", ".join(run.completed) or "nothing",
             run.best.get("stage"))


# ------------------------------------------------------------------------------------ evaluate, export


def model_size(run: TrainingRun) -> int:
    """Image size the kept model was trained at: the best stage's (inference and export use it)."""
    if run.best and run.best.get("stage") in run.results:
        return run.results[run.best["stage"]].size
    done = [s for s in run.config.stages if s.epochs > 0]
    return done[-1].size if done else run.size


def predict(run: TrainingRun, frame: "pd.DataFrame"):
    """Probabilities (n, c) float32 numpy and targets (n,) int of ``frame`` under the valid transforms."""
    import numpy as np

    dl = run.learn.dls.test_dl(frame, with_labels=True)
    probs, targets = run.learn.get_preds(dl=dl)
    return probs.numpy().astype(np.float32), targets.numpy().astype(int)


def evaluate(run: TrainingRun, n_grid: int = 16) -> dict:
    """Test-split metrics and figures; suspect labels from valid + test predictions.

    Writes metrics.json, confusion_matrix.png, top_losses.png, test_predictions.csv,
    suspect_labels.csv and suspect_labels.png, at the kept model's size (:func:`model_size`).
    Suspect labels use out-of-sample probabilities: the valid and test items, which the model never
    trained on (valid picked the best epoch, which barely fits it); train items are not judged,
    as that would need cross-validated training.
    Returns the metrics dict; figures are in ``run.evaluation["figures"]``.
    """
    import numpy as np
    import pandas as pd

    from . import evaluation as ev

    _set_size(run, model_size(run))
    classes = run.splits.classes
    test = run.splits.test
    probs, targets = predict(run, test)
    metrics = ev.classification_metrics(targets, probs, classes)
    metrics["split"] = run.splits.test_split
    bboxes = list(test["bbox"]) if "bbox" in test.columns else None
    figures = {
        "confusion_matrix": ev.confusion_figure(np.array(metrics["confusion_matrix"]), classes,
                                                title=f"confusion matrix ({run.splits.test_split})"),
        "top_losses": ev.top_losses_figure(test, targets, probs, classes, n=n_grid, bboxes=bboxes),
    }
    preds = probs.argmax(1)
    save_csv(run.output_dir / "test_predictions.csv", pd.DataFrame({
        "path": test["path"], "label": test["label"], "predicted": [classes[i] for i in preds],
        "prob": probs[np.arange(len(preds)), preds]}))

    if run.splits.test_split == "valid":
        pool, pool_probs, pool_targets = test, probs, targets
    else:
        v_probs, v_targets = predict(run, run.splits.valid)
        pool = pd.concat([run.splits.valid, test], ignore_index=True)
        pool_probs, pool_targets = np.concatenate([v_probs, probs]), np.concatenate([v_targets, targets])
    suspects = ev.find_suspect_labels(pool, pool_targets, pool_probs, classes)
    save_csv(run.output_dir / "suspect_labels.csv", suspects)
    by_path = dict(zip(pool["path"], pool["bbox"])) if "bbox" in pool.columns else None
    figures["suspect_labels"] = ev.suspect_figure(
        suspects, n=n_grid, bboxes=[by_path[p] for p in suspects["path"]] if by_path else None)
    for name, fig in figures.items():
        save_figure(run.output_dir / f"{name}.png", fig)

    result = {
        "test": metrics,
        "stages": {k: v.to_dict() for k, v in run.results.items()},
        "best": run.best,
        "counts": {"train": len(run.splits.train), "valid": len(run.splits.valid), "test": len(test),
                   "classes": len(classes), "skipped_images": len(run.splits.skipped)},
        "valid_from_train": run.splits.valid_from_train,
        "skipped_images": [{"path": p, "reason": r} for p, r in run.splits.skipped],
        "suspect_labels": {"n": len(suspects), "judged": len(pool),
                           "method": "cleanlab.filter.find_label_issues on valid+test predictions"},
    }
    write_json(run.output_dir / "metrics.json", result)
    run.evaluation = {"metrics": result, "figures": figures}
    topk = metrics["topk"]
    log.info("%s accuracy on %d images: %s", run.splits.test_split, metrics["n"],
             ", ".join(f"top-{k} {v:.3f}" for k, v in topk.items()))
    return result


def export(run: TrainingRun) -> Path:
    """Write model.safetensors + model.json (classes, arch, sizes, normalisation, head, metrics, config)."""
    from .modelio import DEFAULT_HEAD, export_model

    b = run.backbone
    info = {
        "arch": run.config.arch, "classes": run.splits.classes,
        "size": run.config.size, "final_size": model_size(run),
        "mean": list(b.mean), "std": list(b.std), "feature_dim": b.feature_dim, "backbone_source": b.source,
        "head": DEFAULT_HEAD, "crop": run.config.crop, "best": run.best,
        "metrics": run.evaluation.get("metrics", {}).get("test", {}),
        "train_config": run.config.to_dict(),
    }
    return export_model(run.output_dir, run.learn.model.eval(), info)


def train(items: "pd.DataFrame", config: TrainConfig | None = None, output_dir="runs/train",
          resume: bool = False, cbs: Sequence = ()) -> TrainResult:
    """Run every stage, evaluate the best model on the test split and export it (see module doc)."""
    config = config or TrainConfig()
    t0 = time.time()
    run = prepare(items, config, output_dir, resume=resume)
    for stage in config.stages:
        if stage.name in run.completed:
            log.info("%s already done (resumed)", stage.name)
            continue
        run_stage(run, stage, cbs=cbs)
    if run.best:
        _load_best(run)  # the best stage's weights, whatever the last stage did
    metrics = evaluate(run)
    export(run)
    return TrainResult(Path(output_dir), metrics, [r.to_dict() for r in run.results.values()], time.time() - t0)


__all__ = ["Stage", "TrainConfig", "TrainResult", "TrainingRun", "StageResult", "LRFind", "Splits",
           "split_items", "make_dataloaders", "build_learner", "prepare", "lr_find", "run_stage",
           "evaluate", "export", "train", "load_model", "LoadedModel", "predict"]
