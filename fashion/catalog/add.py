"""``fashion add RUN SOURCE…``: new photos join a finished run without a rebuild.

SOURCEs are photos, folders or dataset roots, read by :func:`fashion.datasets.load` (so labels and
splits come along where the layout has them; a single photo's label is its folder's name). Photos whose
content (SHA-256) is already in the run, or earlier in this batch, are reported and skipped. Only the new
ones are embedded, with the run's exact embedder (:func:`fashion.service.loading.embedder_for` checks
its weights' checksum) and the run's embedding cache; they get the next ids. Their colour (the item-table
stages that need no embedding: :func:`fashion.pipeline.items.start_item_columns`) is computed beside the
network, while it is built and run, not in a pass after it. Then :func:`.state.commit`
updates the index, the lists and the metrics and seals the new run in one transaction.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from . import state, versions

log = logging.getLogger(__name__)


@dataclass
class AddResult:
    """ids: the new items' ids; duplicates: (path, id of the item with the same content, or the earlier
    path of this batch); failed: (path, reason) of new photos that could not be embedded (kept as skipped
    rows, as a run keeps them); stats: the lists changed and searched."""

    run_dir: Path
    ids: list[int] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.run_dir}: added {len(self.ids)} photos (ids {self.ids[0] if self.ids else '-'}"
                f"..{self.ids[-1] if self.ids else '-'}), {len(self.duplicates)} already in the run skipped, "
                f"{len(self.failed)} unreadable; {self.stats.get('lists_changed', 0)} existing neighbour lists "
                f"changed, {self.stats.get('lists_searched', 0)} searched")


def read_sources(sources) -> "object":
    """One item frame (path, relpath, label, split, …) of every SOURCE: photo files or dataset roots."""
    import pandas as pd

    from .. import datasets

    frames, photos = [], []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            frames.append(datasets.load(path, format="auto", missing="skip").frame)
        elif path.is_file():
            path = path.resolve()
            photos.append({"path": str(path), "relpath": path.name, "label": path.parent.name, "split": ""})
        else:
            raise ConfigError(f"{source}: no such photo or folder")
    if photos:
        frames.append(pd.DataFrame(photos))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not len(frame):
        raise ConfigError(f"no photos in {', '.join(map(str, sources))}")
    return frame


def _hashes(paths) -> list[str]:
    from ..rundir import file_sha256

    out = []
    for path in paths:
        try:
            out.append(file_sha256(path))
        except OSError:
            out.append("")  # unreadable: embedding reports it
    return out


def _sizes(paths) -> np.ndarray:
    out = np.full(len(paths), -1, np.int64)
    for i, path in enumerate(paths):
        try:
            out[i] = os.stat(path).st_size
        except OSError:
            pass  # unreadable: embedding reports it
    return out


def file_sizes(cat: state.Catalog) -> np.ndarray:
    """The item table's file sizes in bytes (column :data:`~.state.SIZE`; −1 where unknown), stat'ed for
    the live rows that lack one and stored: a run's first add stats its files once, a later add only its
    own photos (a stat of 100,000 files is about a second on these cores)."""
    items = cat.items
    known = (items[state.SIZE].fillna(-1).to_numpy(np.int64) if state.SIZE in items.columns
             else np.full(len(items), -1, np.int64))
    todo = np.flatnonzero((known < 0) & cat.live)
    if len(todo):
        known = known.copy()
        known[todo] = _sizes(items["path"].astype(str).to_numpy()[todo])
    if len(todo) or state.SIZE not in items.columns:
        items[state.SIZE] = known
    return known


def content_hashes(cat: state.Catalog, sizes=None) -> np.ndarray:
    """The item table's SHA-256 column, filled for rows that lack it (computed once, then stored);
    with ``sizes`` (file sizes of the photos to compare), only for files of one of those sizes: a file of
    another size cannot hold the same content, so a run made by measure_sim (no hashes stored) is not
    hashed whole at its first add (50,000 files: most of a 1,000-photo add's own time)."""
    items = cat.items
    if state.HASH not in items.columns:
        items[state.HASH] = ""
    column = items[state.HASH].fillna("").astype(str).to_numpy(dtype=object)
    todo = np.flatnonzero((column == "") & cat.live)
    paths = items["path"].astype(str).to_numpy()
    if len(todo) and sizes is not None:
        todo = todo[np.isin(file_sizes(cat)[todo], np.fromiter(sizes, np.int64))]
    if len(todo):
        column[todo] = _hashes(paths[todo])
        items[state.HASH] = column
    return column


def new_photos(cat: state.Catalog, frame) -> tuple[object, list[tuple[str, str]]]:
    """The rows of ``frame`` whose content is neither in the run nor earlier in ``frame``, and the
    duplicates (path, what it duplicates)."""
    live = cat.live  # a property that compares the role column: once, not once per item
    sizes = _sizes(frame["path"].astype(str).to_numpy())
    known = {h: f"item {i}" for i, h in enumerate(content_hashes(cat, set(sizes.tolist()))) if h and live[i]}
    hashes = _hashes(frame["path"].astype(str))
    keep, duplicates = [], []
    for row, (path, digest) in enumerate(zip(frame["path"].astype(str), hashes)):
        if digest and digest in known:
            duplicates.append((path, known[digest]))
            log.info("%s: already in the run (same content as %s): skipped", path, known[digest])
            continue
        if digest:
            known[digest] = path
        keep.append(row)
    fresh = frame.iloc[keep].reset_index(drop=True)
    fresh[state.HASH] = [hashes[i] for i in keep]
    fresh[state.SIZE] = sizes[keep]
    return fresh, duplicates


def add(run_dir, sources, batch_size: int | None = None, num_workers: int | None = None,
        metadata=None, wait: float = versions.DEFAULT_WAIT, keep: int = versions.DEFAULT_KEEP) -> AddResult:
    """Add the photos of ``sources`` (paths, or an item frame: path, relpath, label, split …) to the run at
    ``run_dir``; the new version replaces it in one step (:mod:`.versions`: under the writer lock, waiting
    up to ``wait`` seconds for it; ``keep`` old versions kept). ``metadata``: a shop metadata file or
    table (:mod:`.metadata`) joined onto the items after the append (the new photos by relpath, or any
    item by relpath or id), in the same step; read before anything is embedded."""
    from .metadata import read_metadata

    shop = read_metadata(metadata) if isinstance(metadata, (str, os.PathLike)) else metadata
    frame = sources if hasattr(sources, "columns") else read_sources(sources)
    with versions.writer(run_dir, wait=wait):
        started = time.perf_counter()
        cat = state.load(run_dir)
        cat.stats["load_s"] = round(time.perf_counter() - started, 3)
        result = _add(cat, frame, batch_size, num_workers, shop)
    versions.prune(run_dir, keep)
    return result


def _add(cat: state.Catalog, frame, batch_size, num_workers, shop) -> AddResult:
    from ..service.loading import embedder_for
    from .metadata import join_metadata

    started = time.perf_counter()
    frame, duplicates = new_photos(cat, frame)
    cat.stats["dedupe_s"] = round(time.perf_counter() - started, 3)  # photos already in the run (SHA-256)
    result = AddResult(cat.path, duplicates=duplicates)
    if not len(frame):
        log.warning("%s: nothing new to add (%d photos already in the run)", cat.path, len(duplicates))
        return result
    from ..pipeline.items import start_item_columns

    stages = start_item_columns(frame, cache_dir=cat.path / "cache")  # the colour of each photo, beside the network
    started = time.perf_counter()
    try:
        embedder = embedder_for(cat.info)
        args = cat.info.get("arguments", {})
        emb = embedder.embed(frame, batch_size=batch_size or int(args.get("batch_size") or 64),
                             cache_dir=cat.path / "cache", num_workers=num_workers)
    except BaseException:
        stages.cancel()  # the colour work stopped, its pool shut down: nothing of the run was changed
        raise
    cat.stats["embed_s"] = round(time.perf_counter() - started, 3)  # the network: built, then run on the photos
    failed = dict(emb.failures)
    ok = np.asarray(emb.ok, bool)
    started = time.perf_counter()
    frame = stages.finish(ok)  # the run's item-table stages (colour): waited for, the rest run now
    cat.stats["stages_s"] = round(time.perf_counter() - started, 3)  # what the embedding did not hide of them
    cat.stats["stages_busy_s"] = round(stages.busy_s, 3)  # the early stages' own time, beside the embedding
    ids = state.append(cat, frame, emb.vectors, ok, [failed.get(p, "") for p in frame["path"].astype(str)])
    if shop is not None:
        cat.items = join_metadata(cat.items, shop)
    result.failed = list(emb.failures)
    embedded = {"n_images": len(frame), "n_embedded": emb.n_computed, "n_from_cache": emb.n_cached,
                "skipped": [{"path": p, "reason": r} for p, r in emb.failures]}
    good = ids[ok]
    state.commit(cat, {"op": "add", "ids": [int(ids[0]), int(ids[-1])], "count": len(ids),
                       "duplicates": len(duplicates)}, added=good, embedded=embedded)
    result.ids, result.stats = ids.tolist(), dict(cat.stats)
    log.info("%s", result.summary())
    return result
