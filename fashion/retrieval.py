"""``measure_sim.py`` / ``fashion neighbors``: embed a dataset, find every query's top-K, measure, report.

A thin layer over the one pipeline (:mod:`fashion.pipeline`): :func:`run` is
:func:`fashion.pipeline.measure.measure` with the executor the config names (local by default), for a
run of any size; the run's layout is format 2 (:mod:`fashion.run.layout`), opened by
:func:`fashion.run.reader.open_run`.

Modes: all-pairs over every usable item (each query leaves itself out); ``query_split`` → queries from
that split, gallery = the other items; In-shop roots default to query vs gallery by their split column,
and wherever items have an ``item_id`` column recall@k by item id is reported too.
"""

from __future__ import annotations

from .metrics import RECALL_KS
from .pipeline.config import MeasureConfig
from .pipeline.read import assign_roles, load_items
from .pipeline.search import compute_metrics
from .runresult import RunResult

__all__ = ["MeasureConfig", "RunResult", "run", "load_items", "assign_roles", "compute_metrics", "RECALL_KS"]


def run(config: MeasureConfig, executor=None) -> RunResult:
    """Run the whole retrieval measurement; its files appear in ``output_dir`` together, in one step."""
    from .pipeline.measure import measure

    return measure(config, executor)
