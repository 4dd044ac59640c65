"""The item-table hook: extra columns computed per item before a run is sealed.

:data:`ITEM_TABLE_STAGES` is a tuple of callables ``stage(items, ok) -> {column: values}``: ``items`` is
the run's item frame (row i = item i: path, relpath, label, split and the dataset's own columns), ``ok``
a bool array (False where the image could not be embedded); each returns new columns, one value per
row (a list, numpy array or pandas Series), which land in the run's ``items/part-*.parquet`` beside the
dataset's columns, typed (numbers, booleans, dates) or text. A stage registers itself by being added to
the tuple below (the pipeline reads it when a run is sealed, never at import time). A column that
already exists, or one of the wrong length, is refused with one line naming the stage. A stage with a
``cache_dir`` parameter gets the run's cache directory there (its own work, kept between runs, e.g. the
colour stage's cache by file content). A stage's ``stage`` attribute names its line in the run's timings
(``metrics.json``'s ``timing`` and the log's "stage" lines; the colour stage's is ``colour``), so its time
is never hidden inside another stage's. The stages run for every run the pipeline seals, for the photos
``fashion add`` adds (:mod:`fashion.catalog.add`) and for an old-layout run being upgraded.

Registered: :func:`fashion.colour.stage.colour_stage` (colour, colour_2, colour_hex, colour_share).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from ..colour.stage import colour_stage
from ..errors import Cancelled, FashionError

log = logging.getLogger(__name__)

ITEM_TABLE_STAGES: tuple = (colour_stage,)


def _name(stage) -> str:
    return getattr(stage, "__qualname__", None) or type(stage).__name__


def _takes(stage, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(stage).parameters
    except (TypeError, ValueError):
        return False


def stage_name(stage) -> str:
    """The name of a stage's line in a run's timings: its ``stage`` attribute, else its function name."""
    return getattr(stage, "stage", None) or _name(stage)


def missing_stages(columns) -> list:
    """The item-table stages whose columns a table with ``columns`` lacks (a stage that names no
    ``columns`` counts as missing): the work that brings a run made before them up to date."""
    have = set(columns)
    return [s for s in ITEM_TABLE_STAGES if not getattr(s, "columns", ()) or not set(s.columns) <= have]


def add_item_columns(items, ok: np.ndarray, stages=None, cache_dir=None, watch=None):
    """``items`` with the columns of every item-table stage added (``stages``: None = :data:`ITEM_TABLE_STAGES`);
    the frame is returned unchanged (not copied) when there is no stage. ``watch``: a
    :class:`fashion.runresult.Stopwatch` that times each stage on its own line (:func:`stage_name`)."""
    stages = ITEM_TABLE_STAGES if stages is None else tuple(stages)
    if not stages:
        return items
    items = items.copy()
    ok = np.asarray(ok, dtype=bool)
    for stage in stages:
        with watch.stage(stage_name(stage)) if watch is not None else contextlib.nullcontext():
            columns = _run(stage, items, ok, cache_dir)
        _put(items, stage, columns)
    return items


def _run(stage, items, ok, cache_dir, beside: bool = False, stop=None) -> dict:
    extra = {"cache_dir": cache_dir} if _takes(stage, "cache_dir") else {}
    if beside and _takes(stage, "beside"):  # it may size its work for the cores the network leaves
        extra["beside"] = True
    if stop is not None and _takes(stage, "stop"):  # it checks the event between pieces of its work
        extra["stop"] = stop
    return stage(items, ok, **extra) or {}


def _put(items, stage, columns: dict) -> None:
    """``columns`` of ``stage`` into ``items``, in place, refused with one line where one exists already or
    has the wrong length."""
    import pandas as pd

    for name, values in columns.items():
        if name in items.columns:
            raise FashionError(f"item-table stage {_name(stage)}: column {name!r} exists already")
        if len(values) != len(items):
            raise FashionError(f"item-table stage {_name(stage)}: column {name!r} has {len(values)} values "
                               f"for {len(items)} items")
        items[name] = values.to_numpy() if isinstance(values, pd.Series) else values
    log.info("item-table stage %s: %s", _name(stage), ", ".join(columns) or "no column")


def reads_ok(stage) -> bool:
    """Whether a stage reads its ``ok`` argument (which photos the network embedded): True unless its
    ``reads_ok`` attribute says False (the colour stage: a photo is coloured or skipped on its own)."""
    return bool(getattr(stage, "reads_ok", True))


class Started:
    """Item-table stages started before the embedding (:func:`start_item_columns`): the ones that do not
    read ``ok`` run on a thread meanwhile (their heavy work in their own processes, e.g. the colour
    stage's pool; a stage with a ``beside`` parameter gets True there, to size its work for the cores the
    network leaves), the others wait for :meth:`finish`. ``busy_s``: the seconds the early stages took.
    :meth:`cancel` stops them instead (the embedding failed)."""

    def __init__(self, items, stages, cache_dir):
        import threading

        self.items, self.stages, self.cache_dir = items, stages, cache_dir
        self.early = tuple(s for s in stages if not reads_ok(s))
        self.columns: dict = {}
        self.error: BaseException | None = None
        self.busy_s = 0.0
        self._stop = threading.Event()  # set by cancel(); a stage with a ``stop`` parameter is given it
        self._thread = threading.Thread(target=self._work, name="item-table stages", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        import time

        started = time.perf_counter()
        try:
            for stage in self.early:
                if self._stop.is_set():
                    raise Cancelled("the item-table stages were cancelled")
                self.columns[stage] = _run(stage, self.items, None, self.cache_dir, beside=True, stop=self._stop)
        except BaseException as exc:  # noqa: BLE001 - raised again by finish, in the caller's thread
            self.error = exc
        self.busy_s = time.perf_counter() - started

    def cancel(self) -> None:
        """Stop the early stages and return once they have stopped; :meth:`finish` is not called after.

        Sets the event each stage with a ``stop`` parameter was given: the colour stage checks it after each
        photo its pool hands back and then raises :class:`~fashion.errors.Cancelled`; leaving its ``with``
        blocks cancels the photos queued and not yet handed out, waits for the few running, and shuts the
        pool down, so no worker process outlives this call. A stage not yet begun is skipped; one without
        a ``stop`` parameter runs to its end. What a stage cached is whole (chunks are written atomically).
        The colour stage on 2,880 photos: ``benchmarks/colour_cancel.py`` (benchmarks/README.md)."""
        self._stop.set()
        self._thread.join()

    def finish(self, ok: np.ndarray):
        """``items`` with every stage's columns, in the stages' order (:func:`add_item_columns`): the early
        ones' results (waited for; an error of theirs raised here), the others run now with ``ok``."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        if not self.stages:
            return self.items
        items = self.items  # its own copy (start_item_columns), no longer read by the thread
        ok = np.asarray(ok, dtype=bool)
        for stage in self.stages:
            _put(items, stage, self.columns[stage] if stage in self.columns else _run(stage, items, ok, self.cache_dir))
        return items


def start_item_columns(items, stages=None, cache_dir=None) -> Started:
    """Start the item-table stages of ``items`` (``stages``: None = :data:`ITEM_TABLE_STAGES`) that do not
    read ``ok`` (:func:`reads_ok`) on a thread, so that their work overlaps the embedding that ``ok``
    comes from; :meth:`Started.finish` (ok) gives what :func:`add_item_columns` gives. ``fashion add``
    colours its new photos while the network is built and run this way."""
    # a copy of its own: the caller's frame is read meanwhile (the embedder), and pandas' reads are not
    # thread-safe (its item cache)
    return Started(items.copy(), ITEM_TABLE_STAGES if stages is None else tuple(stages), cache_dir)
