"""Resume state of a run: the best weights and ``state.json`` after each stage, and the epoch history."""

from __future__ import annotations

import logging

from ..atomic import save_csv, write_json
from ..backbones import read_state_dict
from ..errors import ConfigError, OutputError
from ..runfiles import RunFileError, read_state_json
from .config import Stage
from .state import BEST_FILE, HISTORY_COLUMNS, STATE_FILE, StageResult, TrainingRun

log = logging.getLogger("fashion.training")


def load_best(run: TrainingRun) -> None:
    run.learn.model.load_state_dict(read_state_dict(run.checkpoints / BEST_FILE), strict=True)


def cleanup_fastai_files(run: TrainingRun, stage: Stage) -> None:
    for path in run.checkpoints.glob(f"{stage.name}_best.safetensors"):
        path.unlink(missing_ok=True)


def save_history(run: TrainingRun) -> None:
    import pandas as pd

    save_csv(run.output_dir / "history.csv", pd.DataFrame(run.history, columns=HISTORY_COLUMNS))


def save_state(run: TrainingRun) -> None:
    write_json(run.checkpoints / STATE_FILE, {
        "config": run.config.to_dict(), "classes": run.splits.classes, "completed": run.completed,
        "best": run.best, "results": {k: v.to_dict() for k, v in run.results.items()},
        "history": run.history, "lr_finds": {k: v.suggestion for k, v in run.lr_finds.items()},
    })


def restore(run: TrainingRun) -> None:
    """Load a killed run's state: completed stages, history, best weights."""
    path = run.checkpoints / STATE_FILE
    if not path.is_file():
        log.info("nothing to resume in %s: starting from scratch", run.output_dir)
        return
    state = read_state_json(path)  # every key below checked: one line naming the file and key
    if state["classes"] != run.splits.classes or state["config"]["arch"] != run.config.arch:
        raise ConfigError(f"{path}: the saved run has other classes or another arch; use a new --output_dir")
    run.completed = list(state["completed"])
    run.best = state["best"]
    run.history = [r for r in state["history"] if r["stage"] in run.completed]
    for name, r in state["results"].items():
        r = dict(r)
        r["lr"] = tuple(r["lr"])
        try:
            run.results[name] = StageResult(**r)
        except TypeError as exc:
            raise RunFileError(f"{path}: key 'results.{name}' does not describe a stage ({exc})") from None
    if run.best:
        load_best(run)
    save_history(run)
    log.info("resuming %s after %s (best so far: %s)", run.output_dir, ", ".join(run.completed) or "nothing",
             run.best.get("stage"))
