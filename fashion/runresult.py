"""What a retrieval run returns (:class:`RunResult`) and how its stages are timed (:class:`Stopwatch`),
shared by the stages that write a run (:mod:`fashion.pipeline`)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("fashion.retrieval")


@dataclass
class RunResult:
    """What :func:`run` produced: the directory, metrics (as in metrics.json) and output paths by name;
    ``stages``: what each stage of the orchestrator's range returned, by stage name
    (:func:`fashion.pipeline.measure.measure`; metrics and files are empty for a range that does not seal)."""

    output_dir: Path
    metrics: dict
    files: dict[str, Path] = field(default_factory=dict)
    stages: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A few human lines: the headline metrics, counts, stage times and where the gallery is."""
        m = self.metrics
        k = m["k"]
        lines = [f"precision@{k} = {m['precision_at_k']:.4f}   mAP@{k} = {m['map_at_k']:.4f}   "
                 f"({m['n_queries']} queries, gallery {m['n_gallery']}, {m['mode']})"]
        if m.get("recall_at_k"):
            lines.append("recall@k by item id: " + "  ".join(f"R@{k_}={v:.4f}" for k_, v in m["recall_at_k"].items()))
        lines.append(f"{m['n_images']} images, {m['n_skipped']} skipped (unreadable or missing)")
        lines.append("time: " + ", ".join(f"{s} {t:.2f}s" for s, t in m["timing"].items()))
        lines.append(f"gallery: {self.files.get('index.html', self.output_dir / 'index.html')}")
        return "\n".join(lines)


class Stopwatch:
    """Times named stages (seconds, in ``timing``) and logs each one."""

    def __init__(self):
        self.timing: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        yield
        self.timing[name] = round(time.perf_counter() - t0, 4)
        log.info("stage %-6s %7.2f s", name, self.timing[name])

    def total(self) -> float:
        return round(time.perf_counter() - self._start, 4)
