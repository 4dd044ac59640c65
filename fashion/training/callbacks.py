"""fastai callbacks of a stage: the per-epoch log line (and ``history.csv``), and the best-epoch saver.

Imports fastai: :mod:`fashion.training.stages` loads it when a stage runs.
"""

from __future__ import annotations

import logging
import time

from pathlib import Path

from fastai.callback.core import Callback, CancelFitException
from fastai.callback.tracker import SaveModelCallback
from fastai.learner import Recorder

from ..backbones import read_state_dict
from ..errors import OutputError
from ..modelio import save_state_dict
from . import checkpoints
from .config import Stage
from .state import TrainingRun

log = logging.getLogger("fashion.training")


class EpochLog(Callback):
    """After every epoch: append the row to ``run.history``, rewrite history.csv, log one line."""

    order = Recorder.order + 1  # after Recorder has filled its log

    def __init__(self, run: TrainingRun, stage: Stage):
        self.run, self.stage = run, stage

    def before_epoch(self):
        self.t0 = time.time()

    def after_epoch(self):
        values = dict(zip(self.learn.recorder.metric_names, self.learn.recorder.log))
        row = {"stage": self.stage.name, "epoch": int(values["epoch"]) + 1,
               "train_loss": float(values["train_loss"]), "valid_loss": float(values["valid_loss"]),
               "accuracy": float(values.get("accuracy", float("nan"))), "time": round(time.time() - self.t0, 1)}
        self.run.history.append(row)
        checkpoints.save_history(self.run)
        log.info("%s epoch %d/%d: train_loss %.4f valid_loss %.4f accuracy %.4f (%.0f s)", self.stage.name,
                 row["epoch"], self.stage.epochs, row["train_loss"], row["valid_loss"], row["accuracy"], row["time"])


class SaveBestModel(SaveModelCallback):
    """fastai's ``SaveModelCallback`` (save on every better ``monitor`` value, load the best at the end),
    writing safetensors through :func:`fashion.modelio.save_state_dict` instead of ``torch.save``: a
    full or read-only disk is then an :class:`~fashion.errors.OutputError` decided by errno, not a
    RuntimeError from torch's zip writer."""

    error: OutputError | None = None  # the write that failed; the fit is cancelled, run_stage raises it

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


class BatchProgress(Callback):
    """A tqdm bar over the batches of one fit: the LR finder's, whose fastai bars are off (they would
    draw one bar per batch). Shown on a terminal only (tqdm's ``disable=None``)."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc = total, desc

    def before_fit(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="batch", disable=None, leave=False)

    def after_batch(self):
        if self.training:
            self.bar.update(1)

    def after_fit(self):
        self.bar.close()


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
