"""Three-stage fastai transfer learning of a clothing-category classifier.

The original study's schedule, as data (:class:`Stage` list in a :class:`TrainConfig`):

1. LR finder, body frozen, ``fit_one_cycle`` of the head (image size ``size``);
2. unfreeze, LR finder, ``fit_one_cycle`` with discriminative LRs ``slice(lr / lr_div, lr)`` spread over
   the layer groups (body early, body late, head);
3. new DataLoaders at ``final_size``, LR finder, ``fit_one_cycle`` again.

An LR-finder curve unfit to read an LR off (too short, flat, its suggestion at the edge of the range
searched) is not trusted: the stage trains at ``fallback_lr`` instead and a warning says why; each
stage's decision is in its result and in the run's ``run.json`` (command, dataset, config, versions,
git revision, wall time per stage).

Every stage keeps its best epoch by validation loss (fastai's ``SaveModelCallback``), and a stage
that does not beat the best earlier stage is rolled back, so the exported model is the best by
validation loss over the whole run. After each stage the best weights and a small state file are
written atomically to ``output_dir/checkpoints``: ``resume=True`` continues a killed run with the
next stage. ``train(items, TrainConfig(), "out")`` runs it all; the notebook runs it cell by cell.

Modules: :mod:`.config` (options), :mod:`.data` (splits, DataLoaders), :mod:`.stages` (the schedule),
:mod:`.checkpoints` (resume state), :mod:`.evaluate` (metrics, export), :mod:`.plots` (figures),
:mod:`.callbacks` (the per-epoch log, progress; imports fastai), :mod:`.state` (the run's dataclasses),
:mod:`.lrguard` (is an LR-finder curve fit to read? the fallback LR), :mod:`.runinfo` (``run.json``).
The model directory format is :mod:`fashion.modelio`, which knows nothing of training.
"""

from __future__ import annotations

from ..modelio import LoadedModel, load_model
from .config import CROPS, LR_SUGGESTIONS, Stage, TrainConfig
from .data import ReadImage, make_dataloaders, split_items
from .evaluate import evaluate, export, model_size, predict
from .runinfo import write_run_json
from .stages import build_learner, lr_find, prepare, run_stage, train
from .state import HISTORY_COLUMNS, LRFind, Splits, StageResult, TrainingRun, TrainResult

__all__ = ["Stage", "TrainConfig", "CROPS", "LR_SUGGESTIONS", "TrainResult", "TrainingRun", "StageResult", "LRFind",
           "Splits", "HISTORY_COLUMNS", "ReadImage", "split_items", "make_dataloaders", "build_learner", "prepare",
           "lr_find", "run_stage", "evaluate", "export", "model_size", "predict", "train", "load_model",
           "LoadedModel", "write_run_json"]
