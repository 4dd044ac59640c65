"""What a training run holds between its cell-by-cell steps, and what it returns.

:class:`TrainingRun` is the state ``prepare`` builds and every later step (``lr_find``, ``run_stage``,
``evaluate``, ``export``) reads and updates; the other dataclasses are the steps' results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig

STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"
CHECKPOINTS = "checkpoints"
HISTORY_COLUMNS = ["stage", "epoch", "train_loss", "valid_loss", "accuracy", "time"]


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
    """An LR-finder run: suggestion (config.lr_suggestion), the curve (lrs, losses) it was taken from,
    and ``problem``: why the curve is unfit to read an LR off (:func:`.lrguard.curve_problem`), None
    when it is fit; a stage then trains at :attr:`fallback` instead of the suggestion."""

    stage: str
    suggestion: float
    lrs: list
    losses: list
    figure: Any = None
    problem: str | None = None
    fallback: float | None = None
    seconds: float | None = None


@dataclass
class StageResult:
    """Outcome of one stage: the LR used (lo, hi), its best valid loss and epoch, and wall time.

    lr_source: where the LR came from — "given" (the stage's own), "lr_finder" (the suggestion, maybe
    capped at the frozen stage's LR) or "fallback" (the curve was unfit: ``lr_problem`` says why).
    """

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
    lr_source: str = "given"
    lr_problem: str | None = None

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
    dataset: dict = field(default_factory=dict)    # root, format, items per split (run.json)
    started: float = 0.0                           # time.time() when prepare() began
    timing: dict = field(default_factory=dict)     # seconds of the steps after the stages (evaluate, export)

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
        from .robustness import PERTURBED

        m = self.metrics.get("test", {})
        topk = ", ".join(f"top-{k} {v:.3f}" for k, v in m.get("topk", {}).items())
        levers = (("tta", "with TTA"),) + tuple((key, label) for key, _, label in PERTURBED)
        extra = "".join(f"; {label} top-1 {m[key][1]:.3f}" for key, label in levers if key in m)
        valid = self.metrics.get("valid", {}).get("topk", {})
        extra += f"; valid top-1 {valid[1]:.3f}" if 1 in valid else ""
        return (f"trained in {self.seconds / 60:.1f} min; {m.get('split', 'test')} ({m.get('n', 0)} images): "
                f"{topk}{extra}; model in {self.output_dir}")
