"""The fastai callback that logs one plain line per epoch and keeps ``history.csv`` up to date.

Imports fastai: :mod:`fashion.training.stages` loads it when a stage runs.
"""

from __future__ import annotations

import logging
import time

from fastai.callback.core import Callback
from fastai.learner import Recorder

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
