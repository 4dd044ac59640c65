"""fastai callbacks of a stage: the per-epoch log line (and ``history.csv``), the best-epoch saver and
the LR finder that restores the weights from memory.

Imports fastai: :mod:`fashion.training.stages` loads it when a stage runs.
"""

from __future__ import annotations

import io
import logging
import sys
import time

from pathlib import Path

from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import LRFinder, ParamScheduler
from fastai.callback.tracker import SaveModelCallback, TrackerCallback
from fastai.learner import Recorder

from ..backbones import read_state_dict
from ..errors import OutputError
from ..modelio import save_state_dict
from . import checkpoints
from .config import Stage
from .recompose import recomposers
from .state import TrainingRun

log = logging.getLogger("fashion.training")


class EpochLog(Callback):
    """After every epoch: append the row to ``run.history``, rewrite history.csv, log one line.

    ``table``: fastai draws its own epoch table (a terminal or a notebook), so the line is logged at
    DEBUG and the epoch shows once; in a log file or a pipe the line (epochs counted from 1) is the
    only record of it, at INFO. With the recompose lever (:class:`.recompose.Recompose` among the training
    loader's item transforms) one more INFO line, which no table shows, says what it did to the epoch's
    training photos ("s1 epoch 2: recomposed 221 of 3400 photos: 150 on another background, 71 smaller");
    its counts start at zero with each epoch and include the photos DataLoader workers decoded.
    """

    order = Recorder.order + 1  # after Recorder has filled its log

    def __init__(self, run: TrainingRun, stage: Stage, table: bool = False):
        self.run, self.stage, self.level = run, stage, logging.DEBUG if table else logging.INFO

    def before_epoch(self):
        self.t0 = time.time()
        for recomposer in recomposers(self.learn.dls.train):
            recomposer.take_counts()  # the epoch's own photos: not the LR finder's or an earlier fit's

    def after_epoch(self):
        values = dict(zip(self.learn.recorder.metric_names, self.learn.recorder.log))
        row = {"stage": self.stage.name, "epoch": int(values["epoch"]) + 1,
               "train_loss": float(values["train_loss"]), "valid_loss": float(values["valid_loss"]),
               "accuracy": float(values.get("accuracy", float("nan"))), "time": round(time.time() - self.t0, 1)}
        self.run.history.append(row)
        checkpoints.save_history(self.run)
        log.log(self.level, "%s epoch %d/%d: train_loss %.4f valid_loss %.4f accuracy %.4f (%.0f s)", self.stage.name,
                row["epoch"], self.stage.epochs, row["train_loss"], row["valid_loss"], row["accuracy"], row["time"])
        for recomposer in recomposers(self.learn.dls.train):
            counts = recomposer.take_counts()
            log.info("%s epoch %d: %s", self.stage.name, row["epoch"], recomposer.describe(counts))


class SaveBestModel(SaveModelCallback):
    """fastai's ``SaveModelCallback`` (save on every better ``monitor`` value, load the best at the end),
    writing safetensors through :func:`fashion.modelio.save_state_dict` instead of ``torch.save``: a
    full or read-only disk is then an :class:`~fashion.errors.OutputError` decided by errno, not a
    RuntimeError from torch's zip writer."""

    error: OutputError | None = None  # the write that failed; the fit is cancelled, run_stage raises it

    def after_epoch(self):
        """fastai's, without its ``print("Better model found at epoch 0 ...")``: the epoch line and
        the stage's summary (best valid loss at epoch N, counted from 1) say it."""
        TrackerCallback.after_epoch(self)
        if self.new_best:
            self._save(self.fname)

    def path(self, name: str) -> Path:
        return Path(self.learn.path) / self.learn.model_dir / f"{name}.safetensors"

    def _save(self, name):
        try:
            self.last_saved_path = save_state_dict(self.path(name), self.learn.model)
        except OutputError as exc:
            # raised from here, fastai would rewrap the message in two lines of its own
            self.error = exc
            raise CancelFitException() from None

    def after_fit(self, **kwargs):
        if self.at_end:
            self._save(self.fname)
        elif not self.every_epoch and self.path(self.fname).is_file():
            self.learn.model.load_state_dict(read_state_dict(self.path(self.fname)), strict=True)


def progress_mode() -> str:
    """How a long loop shows progress: "notebook" (fastprogress' HTML bar), "terminal" (tqdm on
    stderr), "log" (a log line now and then: a log file or a pipe would keep every bar redraw)."""
    from fastprogress.fastprogress import IN_NOTEBOOK

    if IN_NOTEBOOK:
        return "notebook"
    return "terminal" if sys.stderr.isatty() else "log"


class BatchProgress(Callback):
    """Progress over the training batches of one fit: the LR finder's, whose fastai bars are off
    (they would draw one bar per batch). A bar in a notebook or on a terminal; otherwise a log line
    at each quarter of ``total`` (:func:`progress_mode`)."""

    def __init__(self, total: int, desc: str, mode: str | None = None):
        self.total, self.desc, self.mode = total, desc, mode

    def before_fit(self):
        self.done, self.bar, self.shown = 0, None, self.mode or progress_mode()
        if self.shown == "notebook":
            from fastprogress.fastprogress import progress_bar

            self.bar = progress_bar(range(self.total), leave=False, comment=self.desc)
            self.bar.update(0)
        elif self.shown == "terminal":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="batch", leave=False)

    def after_batch(self):
        if not self.training:
            return
        self.done += 1
        if self.shown == "notebook":
            self.bar.update(min(self.done, self.total))
        elif self.shown == "terminal":
            self.bar.update(1)
        elif self.done in {max(1, round(self.total * q / 4)) for q in (1, 2, 3, 4)}:
            log.info("%s: %d/%d batches", self.desc, self.done, self.total)

    def after_fit(self):
        if self.shown == "terminal":
            self.bar.close()
        elif self.shown == "notebook" and self.bar.last_v is not None:  # stopped early: the loss diverged
            self.bar.on_iter_end()


class InMemoryLRFinder(LRFinder):
    """fastai's ``LRFinder``, keeping the weights and optimizer state it restores afterwards in memory
    instead of ``models/tmpXXXX/_tmp.pth``. torch's zip writer reports a full or read-only disk as a
    RuntimeError that carries no errno, so no caller could tell it from a bug; with no file written
    there is no such error to classify (the best-epoch saver writes through
    :func:`fashion.modelio.save_state_dict`, whose OSErrors the errno decides)."""

    def before_fit(self):
        ParamScheduler.before_fit(self)
        self.snapshot = io.BytesIO()
        self.learn.save(self.snapshot)  # fastai's save and load take a file object as well as a name
        self.best_loss = float("inf")

    def after_fit(self):
        self.learn.opt.zero_grad()  # as fastai's: needed before the optimizer is detached for later fits
        self.snapshot.seek(0)
        self.learn.load(self.snapshot, with_opt=True)


def read_points(num_it: int) -> slice:
    """The recorder points an LR-finder suggestion is read off: fastai's ``Learner.lr_find`` drops the
    first tenth (warm-up) and the last five (divergence)."""
    return slice(num_it // 10, -5)


def find_lr(learn, num_it: int, suggest) -> float:
    """``learn.lr_find(num_it=num_it, suggest_funcs=(suggest,))``'s suggestion, run with
    :class:`InMemoryLRFinder`: the same schedule, the same points dropped before ``suggest`` (one of
    fastai's ``valley``, ``slide``, ``minimum``, ``steep``) sees them."""
    import torch

    with learn.no_logging():
        learn.fit(num_it // len(learn.dls.train) + 1, cbs=InMemoryLRFinder(num_it=num_it))
    cut = read_points(num_it)
    lrs, losses = torch.tensor(learn.recorder.lrs[cut]), torch.tensor(learn.recorder.losses[cut])
    nan = torch.nonzero(torch.isnan(losses.view(-1)))
    if len(nan):
        lrs, losses = lrs[: int(nan.min())], losses[: int(nan.min())]
    return float(suggest(lrs, losses, num_it)[0])


class WeightAverage(Callback):
    """An exponential moving average of the weights (``torch.optim.swa_utils.AveragedModel`` with
    BatchNorm buffers), updated after every training batch.

    Validation runs on the averaged weights, so the valid loss the saver watches is the average's and the
    weights it saves (and loads at the end of the stage) are the average's; the raw weights go back in
    after each epoch, so training itself continues from them.
    """

    order = SaveBestModel.order + 1  # after_epoch: restore the raw weights only once the saver has saved

    def __init__(self, decay: float):
        self.decay = decay

    def before_fit(self):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.averaged = AveragedModel(self.learn.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                      use_buffers=True)
        self.raw = None

    def after_batch(self):
        if self.training:
            self.averaged.update_parameters(self.learn.model)

    def before_validate(self):
        self.raw = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}
        self.learn.model.load_state_dict(self.averaged.module.state_dict())

    def after_epoch(self):
        if self.raw is not None:
            self.learn.model.load_state_dict(self.raw)
            self.raw = None
