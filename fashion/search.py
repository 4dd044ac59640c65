"""``fashion search PHOTO... --run DIR``: the clothes of a finished run most similar to new photos.

The photos are embedded exactly as the run embedded its dataset (same model, checked by checksum; same
size, layer and precision, read from ``run.json``), searched in the run's saved ``index.npz`` and drawn
as one grid per photo (the photo top-left, then its matches in rank order, neutral frames since a new
photo has no label).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import FashionError

log = logging.getLogger(__name__)


@dataclass
class Match:
    """One neighbour of a photo: rank (1-based), item row in the run's items.csv, its path/label, distance."""

    rank: int
    index: int
    path: str
    relpath: str
    label: str
    distance: float


@dataclass
class SearchResult:
    """A photo's matches (rank order); ok False with the reason when the photo cannot be read."""

    photo: str
    ok: bool
    matches: list[Match] = field(default_factory=list)
    grid: Path | None = None
    reason: str = ""

    def summary(self) -> str:
        """Human lines: the photo, then one line per match (or why it failed)."""
        if not self.ok:
            return f"{self.photo}: skipped ({self.reason})"
        lines = [f"{self.photo}:" + (f"  (grid: {self.grid})" if self.grid else "")]
        lines += [f"  {m.rank:2d}. {m.relpath}  [{m.label}]  distance {m.distance:.4f}" for m in self.matches]
        return "\n".join(lines)


def _read_run(run_dir: Path) -> tuple[dict, "object"]:
    """(run.json as dict, gallery table: items.csv rows in saved-index order)."""
    import pandas as pd

    from .rundir import verify
    from .runfiles import read_items_csv, read_run_json

    needed = [run_dir / n for n in ("run.json", "items.csv", "index.npz")]
    absent = [p.name for p in needed if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"{run_dir} is not a finished run of `fashion neighbors` / measure_sim.py: "
                                f"missing {', '.join(absent)}")
    verify(run_dir)  # one run, complete and unchanged: never the files of two runs mixed
    info = read_run_json(run_dir / "run.json")
    items = read_items_csv(run_dir / "items.csv")
    gallery = items[items["index_row"] >= 0].sort_values("index_row")
    return info, gallery


def _embedder_for(info: dict):
    """Rebuild the run's embedder; refuse when its weights are not the ones the run used."""
    from .embedding import Embedder, openvino_available

    desc = info["embedder"]
    runtime = desc.get("runtime", "torch")  # the photos are embedded as the run embedded its gallery
    if runtime == "openvino" and not openvino_available():
        log.warning("the run embedded its images with OpenVINO, which is not installed here: using torch "
                    "(vectors agree to cosine > 0.99, not bitwise)")
        runtime = "torch"
    embedder = Embedder.create(model=desc.get("model_dir"), arch=desc["arch"], layer=desc.get("layer", "body"),
                               size=desc.get("size"), precision=desc.get("precision", "auto"),
                               runtime=runtime if runtime in ("torch", "openvino") else "torch")
    if embedder.checksum != desc["checksum"]:
        raise FashionError(f"the model's weights changed since the run (checksum {embedder.checksum[:12]} != "
                           f"{desc['checksum'][:12]}); rerun `fashion neighbors` with the current model")
    return embedder


def _safe_stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60] or "photo"


def search(photos: Sequence, run_dir, k: int = 10, output_dir=None, grids: bool = True) -> list[SearchResult]:
    """Find the top-``k`` items of the run at ``run_dir`` for every photo.

    Args:
        photos: image paths (str/Path); unreadable ones come back with ok=False and the reason.
        run_dir: output directory of a finished retrieval run.
        k: matches per photo (at most the size of the run's index).
        output_dir: where the grids go (default ``run_dir/search``).
        grids: draw one grid PNG per photo.

    Returns:
        one :class:`SearchResult` per photo, in order.
    """
    from .atomic import save_image
    from .neighbors import load_index
    from .report import neighbor_grid

    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    photos = [os.fspath(p) for p in photos]
    if not photos:
        raise ValueError("no photos given")
    run_dir = Path(run_dir)
    info, gallery = _read_run(run_dir)
    index = load_index(run_dir / "index.npz")
    if index.n_samples_fit_ != len(gallery):
        raise FashionError(f"{run_dir}: index.npz has {index.n_samples_fit_} rows but items.csv lists "
                           f"{len(gallery)} indexed items; the run directory is inconsistent")
    embedder = _embedder_for(info)
    emb = embedder.embed(photos, batch_size=min(64, len(photos)), num_workers=0, progress=False)
    k = min(k, len(gallery))
    good = np.flatnonzero(emb.ok)
    dist = idx = np.zeros((0, k))
    if len(good):
        dist, idx = index.kneighbors(emb.vectors[good], n_neighbors=k)
    out = Path(output_dir) if output_dir is not None else run_dir / "search"
    failures = dict(emb.failures)
    rows = {"path": gallery["path"].to_numpy(), "relpath": gallery["relpath"].to_numpy(),
            "label": gallery["label"].astype(str).to_numpy(), "index": gallery["index"].to_numpy()}
    results = []
    for n, photo in enumerate(photos):
        if not emb.ok[n]:
            results.append(SearchResult(photo, False, reason=failures.get(photo, "unreadable")))
            continue
        pos = int(np.searchsorted(good, n))
        nbrs = np.asarray(idx[pos], dtype=np.int64)
        matches = [Match(r + 1, int(rows["index"][j]), str(rows["path"][j]), str(rows["relpath"][j]),
                         str(rows["label"][j]), float(dist[pos][r])) for r, j in enumerate(nbrs)]
        grid_path = None
        if grids:
            image = neighbor_grid(photo, [m.path for m in matches], [m.label for m in matches],
                                  [m.distance for m in matches], [None] * len(matches), query_label="new photo")
            grid_path = save_image(out / f"search_{n:03d}_{_safe_stem(photo)}.png", image)
        results.append(SearchResult(photo, True, matches, grid_path))
    log.info("searched %d photos (%d unreadable) in %s, k=%d", len(photos), len(photos) - len(good), run_dir, k)
    return results
