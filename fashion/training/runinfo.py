"""``run.json`` of a training output directory: what produced it and how each stage chose its LR.

Keys: ``run_id`` (the manifest's, when :func:`fashion.training.train` sealed the directory), ``command``,
``dataset`` (root, format, items per split as loaded, and per role as trained: train / valid / test,
skipped, classes), ``config`` (the :class:`~.config.TrainConfig`), ``versions``, ``git`` (the code's
revision, None outside a checkout), ``timing`` (seconds per stage — the LR finder and the fit apart —,
evaluation, export, total since ``prepare``), ``lr_decisions`` (per stage: where the LR came from, the
suggestion, the LR used and, where the fallback LR was used, why) and ``created``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_json
from ..provenance import command_line, created, git_revision, versions
from .state import Splits, TrainingRun

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..datasets import ItemTable

RUN_FILE = "run.json"


def dataset_info(items: "pd.DataFrame", splits: Splits, table: "ItemTable | None" = None) -> dict:
    """Root and format (from ``table``, None without one) and counts of the items as loaded (per split)
    and as used (per role)."""
    loaded = items["split"].astype(str).replace("", "(none)").value_counts()
    return {
        "root": table.root if table is not None else None, "format": table.format if table is not None else None,
        "n_items": int(len(items)),
        "splits": {str(k): int(v) for k, v in sorted(loaded.items())},
        "used": {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test),
                 "test_split": splits.test_split, "valid_from_train": splits.valid_from_train,
                 "skipped_images": len(splits.skipped), "classes": len(splits.classes)},
    }


def lr_decisions(run: TrainingRun) -> list[dict]:
    """Per finished stage: source (given / lr_finder / fallback), the suggested LR, the LR used
    ``[lo, hi]``, and why the suggestion was not used (None when it was, or when there was none)."""
    return [{"stage": name, "source": r.lr_source, "suggested": r.lr_suggestion, "used": list(r.lr),
             "problem": r.lr_problem} for name, r in run.results.items()]


def timing(run: TrainingRun) -> dict:
    stages = {name: {"lr_find": run.lr_finds[name].seconds if name in run.lr_finds else None,
                     "fit": result.seconds} for name, result in run.results.items()}
    return {"stages": stages, **run.timing,
            "total": round(time.time() - run.started, 1) if run.started else None}


def run_info(run: TrainingRun, run_id: str | None = None) -> dict:
    """The ``run.json`` object of ``run`` (see the module doc)."""
    info = {"run_id": run_id} if run_id else {}
    info.update({
        "kind": "train", "command": command_line(), "dataset": run.dataset,
        "config": run.config.to_dict(), "versions": versions(), "git": git_revision(), "timing": timing(run),
        "lr_decisions": lr_decisions(run), "best": run.best, "created": created(),
    })
    return info


def write_run_json(run: TrainingRun, run_id: str | None = None) -> Path:
    """Write ``output_dir/run.json`` atomically (``run_id``: the manifest's, so :func:`fashion.rundir.verify`
    can tell the file belongs to the run)."""
    return write_json(run.output_dir / RUN_FILE, run_info(run, run_id))
