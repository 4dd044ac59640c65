"""The schedule: build the Learner, then run each :class:`Stage` (LR finder, ``fit_one_cycle``, keep the
best epoch, roll back a stage that did not beat an earlier one), and :func:`train` for all at once.

Cell by cell (as ``train.ipynb`` does)::

    run = prepare(items, TrainConfig(), "out")
    lr_find(run, run.config.stages[0])          # optional: run_stage calls it when needed
    run_stage(run, run.config.stages[0])
    ...
    evaluate(run); export(run)
"""

from __future__ import annotations

import contextlib
import logging
import random
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..atomic import ensure_dir, save_figure
from ..errors import ConfigError, FashionError
from ..modelio import build_classifier, save_state_dict, splitter
from . import checkpoints
from .config import Stage, TrainConfig
from .data import make_dataloaders, set_size, split_items
from .evaluate import evaluate, export
from .lrguard import curve_problem, fallback_lr
from .plots import loss_figure, lr_find_figure
from .runinfo import dataset_info, write_run_json
from .state import BEST_FILE, CHECKPOINTS, LRFind, Splits, StageResult, TrainingRun, TrainResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("fashion.training")


def build_learner(splits: Splits, config: TrainConfig, output_dir: Path):
    """fastai Learner over ``nn.Sequential(body, head)`` with [body early, body late, head] groups."""
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle and Learner.lr_find)
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat
    from fastai.metrics import accuracy

    model, backbone = build_classifier(config.arch, len(splits.classes), pretrained=config.pretrained,
                                       weights=config.weights)
    dls = make_dataloaders(splits, config.stages[0].size if config.stages else config.size, config,
                           backbone.mean, backbone.std)
    cbs = []
    if config.channels_last:  # oneDNN's fastest CPU convolutions want channels-last tensors
        from fastai.callback.channelslast import ChannelsLast

        cbs.append(ChannelsLast())
    if config.freeze_early:  # BatchNorm layers without trainable parameters keep their statistics
        from fastai.callback.training import BnFreeze

        cbs.append(BnFreeze())
    loss = (LabelSmoothingCrossEntropyFlat(eps=config.label_smoothing) if config.label_smoothing
            else CrossEntropyLossFlat())
    learn = Learner(dls, model, loss_func=loss, metrics=accuracy, splitter=splitter,
                    path=output_dir, model_dir=CHECKPOINTS, cbs=cbs)
    return learn, backbone


def prepare(items, config: TrainConfig, output_dir, resume: bool = False) -> TrainingRun:
    """Split and check the items, build the Learner; with ``resume`` restore a previous run's state.

    ``items``: a :class:`fashion.datasets.ItemTable` (its root and format reach ``run.json``) or its
    DataFrame alone."""
    from fastai.torch_core import set_seed

    from ..datasets.table import ItemTable

    table = items if isinstance(items, ItemTable) else None
    items = table.frame if table is not None else items
    started = time.time()
    output_dir = ensure_dir(output_dir)
    set_seed(config.seed, reproducible=True)
    random.seed(config.seed)
    splits = split_items(items, config)
    if config.clean_labels != "none":
        from .cleanup import clean_splits

        splits = clean_splits(splits, config, output_dir)
    learn, backbone = build_learner(splits, config, output_dir)
    run = TrainingRun(learn=learn, config=config, splits=splits, output_dir=output_dir, backbone=backbone,
                      size=config.stages[0].size if config.stages else config.size,
                      dataset=dataset_info(items, splits, table), started=started)
    if resume:
        checkpoints.restore(run)
    return run


def _set_frozen(run: TrainingRun, frozen: bool) -> None:
    """Head only (``frozen``) or the whole model; either way less ``config.freeze_early``'s first body
    layers, whose BatchNorm statistics fastai's ``BnFreeze`` (a Learner callback) keeps in eval mode."""
    if frozen:
        run.learn.freeze()
    else:
        run.learn.unfreeze()
    for param in early_parameters(run.learn.model, run.config.freeze_early):
        param.requires_grad_(False)


def early_parameters(model, n_units: int) -> list:
    """Parameters of the body's first ``n_units`` layers (:func:`fashion.backbones.body_units`)."""
    from ..backbones import body_units

    if n_units < 1:
        return []
    units = body_units(model[0])
    if n_units >= len(units):
        raise ConfigError(f"freeze_early={n_units} leaves nothing of the body to train: it has {len(units)} layers")
    return [p for unit in units[:n_units] for p in unit.parameters()]


def lr_find(run: TrainingRun, stage: Stage, num_it: int | None = None) -> LRFind:
    """fastai's LR finder for ``stage`` (its size and frozen state); saves ``lr_find_<stage>.png``.

    The model is restored afterwards, from memory (:class:`~fashion.training.callbacks.InMemoryLRFinder`:
    no file, so no errno-less torch write error); the suggestion is fastai's
    ``config.lr_suggestion`` function ("valley" by default). The curve it was read off is checked
    (:func:`.lrguard.curve_problem`): when it is unfit (too few points, no descent, a suggestion at
    the range's edge, NaN losses) a warning names why and the stage will train at the fallback LR
    (``config.fallback_lr``, halved for an unfrozen body) instead, both recorded in the result.
    """
    from fastai.callback import schedule

    set_size(run, stage.size)
    _set_frozen(run, stage.frozen)
    num_it = num_it or run.config.lr_find_iters
    how = run.config.lr_suggestion
    from .callbacks import BatchProgress, find_lr, read_points

    log.info("%s LR finder: %d batches at %d px, body %s", stage.name, num_it, stage.size,
             "frozen" if stage.frozen else "unfrozen")
    t0 = time.time()
    # fastai's own bars would draw one bar per LR-finder batch; one bar over them instead
    with run.learn.no_bar(), run.learn.added_cbs(BatchProgress(num_it, f"{stage.name} LR finder")):
        suggestion = find_lr(run.learn, num_it, getattr(schedule, how))
    recorder = run.learn.recorder
    lrs, losses = [float(v) for v in recorder.lrs], [float(v) for v in recorder.losses]
    judged = read_points(num_it)  # the points the suggestion was read off
    problem = curve_problem(lrs[judged], losses[judged], suggestion)
    fallback = fallback_lr(run.config.fallback_lr, stage.frozen) if problem else None
    # fastai's plot drops the first 10 and last 5 points (warm-up and divergence); so do we
    cut = slice(10, -5) if len(lrs) > 20 else slice(None)
    title = f"LR finder, {stage.name} ({how})" + ("\n" + textwrap.fill(f"not used: {problem}", 80) if problem else "")
    fig = lr_find_figure(lrs[cut], losses[cut], suggestion, title=title, fallback=fallback)
    save_figure(run.output_dir / f"lr_find_{stage.name}.png", fig)
    result = LRFind(stage.name, suggestion, lrs, losses, fig, problem=problem, fallback=fallback,
                    seconds=round(time.time() - t0, 1))
    run.lr_finds[stage.name] = result
    if problem:
        log.warning("%s LR finder: its suggestion %.2e is not used because %s; the stage trains at the fallback "
                    "LR %.2e instead (fallback_lr %.2e%s)", stage.name, suggestion, problem, fallback,
                    run.config.fallback_lr, "" if stage.frozen else ", halved for the unfrozen body")
    else:
        log.info("%s LR finder: suggested %.2e", stage.name, result.suggestion)
    return result


def _show_bars() -> bool:
    """True on a terminal or in a notebook (fastprogress draws HTML there)."""
    from .callbacks import progress_mode

    return progress_mode() != "log"


@contextlib.contextmanager
def _log_only(learn):
    """No progress bar and no printed epoch list (fastai's ``Recorder`` prints through ``learn.logger``)."""
    logger = learn.logger
    learn.logger = lambda *args, **kwargs: None
    try:
        with learn.no_bar():
            yield
    finally:
        learn.logger = logger


def _stage_lr(run: TrainingRun, stage: Stage) -> tuple[float, float, float | None, str, str | None]:
    """(lo, hi, suggestion, source, problem) of a stage: its own LR ("given"), the LR finder's
    suggestion ("lr_finder"), or the fallback LR where the finder's curve is unfit ("fallback")."""
    suggestion, source, problem = None, "given", None
    hi = stage.lr
    if hi is None:
        found = run.lr_finds.get(stage.name) or lr_find(run, stage)
        suggestion, problem = found.suggestion, found.problem
        source, hi = ("fallback", found.fallback) if problem else ("lr_finder", suggestion)
        first = next((r for r in run.results.values() if r.frozen), None)
        if not stage.frozen and first is not None and hi > first.lr[1]:
            # after unfreezing the pretrained body should not move faster than the new head did
            log.info("%s: capping the LR %.2e at stage %s's %.2e", stage.name, hi, first.name, first.lr[1])
            hi = first.lr[1]
    lo = hi if stage.frozen else hi / stage.lr_div
    return lo, hi, suggestion, source, problem


def lever_callbacks(run: TrainingRun) -> list:
    """The fastai callbacks of a stage's fit that ``run.config``'s levers ask for (MixUp / CutMix,
    weight averaging, the metric-learning loss, distillation); the LR finder runs without them."""
    config = run.config
    cbs = []
    if config.mix != "none":
        from fastai.callback.mixup import CutMix, MixUp

        mix = MixUp if config.mix == "mixup" else CutMix
        cbs.append(mix() if config.mix_alpha is None else mix(config.mix_alpha))
    if config.ema is not None:
        from .callbacks import WeightAverage

        cbs.append(WeightAverage(config.ema))
    if config.metric_loss != "none":
        from .metric import MetricLoss

        cbs.append(MetricLoss(config.metric_loss, config.metric_weight, len(run.splits.classes)))
    if config.distill:
        from .distill import Distill

        cbs.append(Distill(config.distill, config.distill_weight, run.backbone.mean, run.backbone.std,
                           channels_last=config.channels_last))
    return cbs


def run_stage(run: TrainingRun, stage: Stage, cbs: Sequence = ()) -> StageResult | None:
    """Fit one stage with ``fit_one_cycle``; keep its best epoch, roll back if an earlier stage was better.

    Returns None for a stage of 0 epochs.
    ``cbs``: extra fastai callbacks for this fit (e.g. ``ShowGraphCallback()`` in a notebook).
    Writes ``loss_<stage>.png``, ``history.csv`` and the resume checkpoint.
    """
    from fastai.callback.hook import HookCallback
    from fastai.callback.tracker import EarlyStoppingCallback

    from .callbacks import EpochLog, SaveBestModel

    if stage.epochs < 1:
        log.info("%s: 0 epochs, skipped", stage.name)
        return None
    set_size(run, stage.size)
    _set_frozen(run, stage.frozen)
    lo, hi, suggestion, source, problem = _stage_lr(run, stage)
    t0 = time.time()  # the fit's time; the LR finder's is in run.lr_finds
    _set_frozen(run, stage.frozen)  # lr_find restores the weights, not necessarily requires_grad
    saver = SaveBestModel(monitor="valid_loss", fname=f"{stage.name}_best")
    table = _show_bars()
    fit_cbs = [saver, EpochLog(run, stage, table=table), *lever_callbacks(run), *cbs]
    if run.config.early_stopping:
        fit_cbs.append(EarlyStoppingCallback(monitor="valid_loss", patience=run.config.early_stopping))
    log.info("%s: %d epochs at %d px, %s, lr %s (%s)", stage.name, stage.epochs, stage.size,
             "body frozen" if stage.frozen else "unfrozen", f"{hi:.2e}" if stage.frozen else f"slice({lo:.2e}, {hi:.2e})",
             {"given": "given", "lr_finder": "LR finder", "fallback": "fallback LR"}[source])
    # fastai's bars and epoch table on a terminal or in a notebook; in a log file or a pipe, EpochLog's
    # one line per epoch only (without the bar, fastai's Recorder would print each epoch's raw list)
    try:
        with contextlib.nullcontext() if table else _log_only(run.learn):
            run.learn.fit_one_cycle(stage.epochs, hi if stage.frozen else slice(lo, hi), cbs=fit_cbs)
    finally:  # a fit that raises skips after_fit, where a HookCallback (MetricLoss) takes its hooks off
        for cb in fit_cbs:
            if isinstance(cb, HookCallback):
                cb._remove()
    if saver.error is not None:
        raise saver.error
    return _finish_stage(run, stage, saver, (lo, hi), suggestion, time.time() - t0, source, problem)


def _finish_stage(run: TrainingRun, stage: Stage, saver, lr, suggestion, seconds, lr_source: str,
                  lr_problem: str | None) -> StageResult:
    import numpy as np

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
        checkpoints.load_best(run)
    fig = loss_figure([float(v) for v in recorder.losses], list(recorder.iters), valid_losses,
                      title=f"loss, {stage.name} ({stage.size} px, {'frozen' if stage.frozen else 'unfrozen'})")
    save_figure(run.output_dir / f"loss_{stage.name}.png", fig)
    result = StageResult(stage.name, len(valid_losses), tuple(lr), suggestion, best, best_epoch, kept,
                         round(seconds, 1), stage.size, stage.frozen, fig, lr_source=lr_source, lr_problem=lr_problem)
    run.results[stage.name] = result
    run.completed.append(stage.name)
    checkpoints.save_state(run)
    checkpoints.cleanup_fastai_files(run, stage)
    log.info("%s done in %.1f min: best valid loss %.4f at epoch %d", stage.name, seconds / 60, best, best_epoch)
    return result


TRAIN_KIND = "train"


def train(items, config: TrainConfig | None = None, output_dir="runs/train",
          resume: bool = False, cbs: Sequence = (), overwrite: bool = False) -> TrainResult:
    """Run every stage, evaluate the best model on the test split and export it (see module doc).

    The output directory is sealed by ``manifest.json`` when the run finishes (:mod:`fashion.rundir`;
    ``checkpoints/`` is left out of it). A finished directory is refused unless ``resume`` (verified
    first, then continued in place) or ``overwrite`` (a fresh run staged beside it and swapped in
    at the end, so a killed or failed rerun leaves the finished run as it was).
    """
    from .. import rundir

    out = Path(output_dir)
    finished = rundir.has_manifest(out) or (out / "model.json").is_file()
    if finished and not (resume or overwrite):
        raise FashionError(f"{out} holds a finished training run: use --resume to continue it, --overwrite to "
                           "replace it, or another --output_dir")
    run_id = rundir.new_run_id()
    if finished and overwrite and not resume:
        with rundir.transaction(out, kind=TRAIN_KIND, keep=(CHECKPOINTS,), run_id=run_id) as txn:
            result = _train(items, config, txn.path, False, cbs, run_id)
        return TrainResult(txn.target, result.metrics, result.stages, result.seconds)
    if resume and rundir.has_manifest(out):
        rundir.verify(out, kind=TRAIN_KIND)  # a finished run continued only if it is the run it claims
    result = _train(items, config, out, resume, cbs, run_id)
    rundir.write_manifest(out, run_id, TRAIN_KIND, skip=(CHECKPOINTS,))
    return result


def _fit(items, config: TrainConfig, output_dir, resume: bool, cbs) -> TrainingRun:
    """Prepare and run every stage; the run holds the best stage's weights, evaluated and exported."""
    run = prepare(items, config, output_dir, resume=resume)
    for stage in config.stages:
        if stage.name in run.completed:
            log.info("%s already done (resumed)", stage.name)
            continue
        run_stage(run, stage, cbs=cbs)
    if run.best:
        checkpoints.load_best(run)  # the best stage's weights, whatever the last stage did
    _evaluate_and_export(run)
    return run


def _evaluate_and_export(run: TrainingRun) -> None:
    """Evaluate on the test split, then export; each step's seconds in ``run.timing`` (run.json)."""
    t = time.time()
    evaluate(run)
    run.timing["evaluate"] = round(time.time() - t, 1)
    t = time.time()
    export(run)
    run.timing["export"] = round(time.time() - t, 1)


MEMBERS = "members"  # an ensemble's output dir: members/<arch>/ holds each member's own training run


def ensemble_run(runs: Sequence[TrainingRun], config: TrainConfig, output_dir) -> TrainingRun:
    """A run over the :class:`~fashion.ensemble.EnsembleClassifier` of finished member runs (for
    :func:`evaluate` and :func:`export`); members must share their input normalisation."""
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    from ..ensemble import EnsembleClassifier
    from .evaluate import model_size

    first = runs[0]
    for r in runs[1:]:
        if (tuple(r.backbone.mean), tuple(r.backbone.std)) != (tuple(first.backbone.mean), tuple(first.backbone.std)):
            raise FashionError(f"ensemble members {first.config.arch} and {r.config.arch} normalise their inputs "
                               "differently; pick archs of one family (e.g. efficientnet_lite0/1/2)")
    model = EnsembleClassifier([r.learn.model.eval() for r in runs], [r.backbone.feature_dim for r in runs])
    # the ensemble's output is log-probabilities: cross entropy's softmax of it gives the mean probabilities back
    learn = Learner(first.learn.dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                    path=Path(output_dir), model_dir=CHECKPOINTS)
    run = TrainingRun(learn=learn, config=config, splits=first.splits, output_dir=Path(output_dir),
                      backbone=first.backbone, size=first.size, dataset=first.dataset, started=first.started)
    run.results = {f"{r.config.arch}/{name}": res for r in runs for name, res in r.results.items()}
    set_size(run, model_size(run))
    return run


def _train(items, config, output_dir, resume: bool, cbs, run_id: str) -> TrainResult:
    import dataclasses

    config = config or TrainConfig()
    t0 = time.time()
    if not config.ensemble:
        run = _fit(items, config, output_dir, resume, cbs)
    else:
        members = []
        for arch in (config.arch, *config.ensemble):
            member_dir = Path(output_dir) / MEMBERS / arch
            log.info("ensemble member %s: training in %s", arch, member_dir)
            member = dataclasses.replace(config, arch=arch, ensemble=(), leak_check=False)
            members.append(_fit(items, member, member_dir, resume, cbs))
        run = ensemble_run(members, config, output_dir)
        _evaluate_and_export(run)
    write_run_json(run, run_id)  # after export: the timing of every step is known
    metrics = run.evaluation["metrics"]
    return TrainResult(Path(output_dir), metrics, [r.to_dict() for r in run.results.values()], time.time() - t0)
