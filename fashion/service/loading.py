"""A finished run directory read as a whole: its files checked against each other, its saved index
loaded, its embedder rebuilt with the run's exact settings (what :meth:`SimilarityService.open` reads)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FashionError
from ..rundir import RunDirError

log = logging.getLogger("fashion.service")

RUN_FILES = ("run.json", "items.csv", "embeddings.npy", "index.npz", "metrics.json")
ITEM_COLUMNS = ("index", "path", "relpath", "label", "split", "ok", "index_row")


@dataclass
class RunDir:
    """The files of a finished run, read and cross-checked by :func:`check_run_dir`.

    info: run.json; items: items.csv (DataFrame, row i has id i); metrics: metrics.json;
    embeddings: (n_items, d) float32, memory-mapped; index: the fitted NeighborIndex over the gallery.
    """

    path: Path
    info: dict
    items: Any
    metrics: dict
    embeddings: np.ndarray
    index: Any


def _json_file(path: Path) -> dict:
    from ..rundir import read_json_object

    return read_json_object(path)


def check_run_dir(run_dir, load_index: bool = True) -> RunDir:
    """Read a finished run directory, refusing a missing, half-written or inconsistent one.

    Every check of a run directory lives here (one place to add a manifest check); ``load_index=False``
    leaves ``index`` None (:meth:`~fashion.service.SimilarityService.open` loads it alongside the model). Raises
    FileNotFoundError (no such directory, or a file missing: "is not a finished run") or
    :class:`RunDirError` (one line naming the file at fault).
    """
    import pandas as pd

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    absent = [n for n in RUN_FILES if not (run_dir / n).is_file()]
    if absent:
        raise FileNotFoundError(f"{run_dir} is not a finished run of `fashion neighbors` / measure_sim.py: "
                                f"missing {', '.join(absent)}")
    from ..rundir import verify
    from ..runfiles import read_run_json

    verify(run_dir)  # the manifest: one complete run, no file changed or taken from another run
    info, metrics = read_run_json(run_dir / "run.json"), _json_file(run_dir / "metrics.json")
    if not isinstance(info.get("embedder"), dict) or "checksum" not in info["embedder"]:
        raise RunDirError(f"{run_dir / 'run.json'}: no embedder description (not written by this version?)")
    csv = run_dir / "items.csv"
    try:
        items = pd.read_csv(csv, dtype={"label": str, "relpath": str, "path": str, "split": str},
                            keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{csv}: not a readable item table ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise RunDirError(f"{csv}: missing columns {missing}")
    if not np.array_equal(items["index"].to_numpy(), np.arange(len(items))):
        raise RunDirError(f"{csv}: the index column is not 0..{len(items) - 1} in order")
    items["ok"] = items["ok"].astype(str).str.lower().isin(("true", "1"))
    npy = run_dir / "embeddings.npy"
    try:
        embeddings = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise RunDirError(f"{npy}: not a readable .npy array ({exc}); the run is incomplete or damaged") from None
    if embeddings.ndim != 2 or embeddings.shape[0] != len(items) or embeddings.dtype != np.float32:
        raise RunDirError(f"{npy}: expected float32 ({len(items)}, d) for the {len(items)} rows of items.csv, "
                          f"got {embeddings.dtype} {embeddings.shape}")
    rows = items["index_row"].to_numpy()
    n_gallery = int((rows >= 0).sum())
    if n_gallery == 0 or not np.array_equal(np.sort(rows[rows >= 0]), np.arange(n_gallery)):
        raise RunDirError(f"{csv}: index_row must number the gallery items 0..n-1")
    run = RunDir(run_dir, info, items, metrics, embeddings, None)
    if load_index:
        run.index = index_of(run)
    return run


def index_of(run: RunDir):
    """The run's saved index, checked against its item table and embeddings (part of check_run_dir)."""
    from ..neighbors import load_index

    path = run.path / "index.npz"
    try:
        index = load_index(path)
    except ValueError as exc:
        raise RunDirError(str(exc)) from None
    n_gallery = int((run.items["index_row"].to_numpy() >= 0).sum())
    if index.n_samples_fit_ != n_gallery or index.n_features_in_ != run.embeddings.shape[1]:
        raise RunDirError(f"{path}: {index.n_samples_fit_} x {index.n_features_in_} vectors, but items.csv "
                          f"lists {n_gallery} indexed items of dimension {run.embeddings.shape[1]}")
    return index


def embedder_for(info: dict):
    """Rebuild the run's embedder from run.json; refuse when its weights are not the ones the run used."""
    from ..embedding import RUNTIMES, Embedder, openvino_available

    desc = info["embedder"]
    runtime = desc.get("runtime", "torch")  # the photos are embedded as the run embedded its gallery
    if runtime.startswith("openvino") and not openvino_available():
        log.warning("the run embedded its images with OpenVINO, which is not installed here: using torch "
                    "(vectors agree to cosine > 0.99, not bitwise)")
        runtime = "torch"
    if runtime == "openvino-int8":
        from ..embedding.int8 import nncf_available

        if not nncf_available():
            log.warning("the run embedded its images with the int8 runtime, which needs NNCF (pip install "
                        "'fashion[int8]'): using OpenVINO's float network (vectors close, not bitwise)")
            runtime = "openvino"
    embedder = Embedder.create(model=desc.get("model_dir"), arch=desc["arch"], layer=desc.get("layer", "body"),
                               size=desc.get("size"), precision=desc.get("precision", "auto"),
                               runtime=runtime if runtime in RUNTIMES[1:] else "torch")
    if embedder.checksum != desc["checksum"]:
        raise FashionError(f"the model's weights changed since the run (checksum {embedder.checksum[:12]} != "
                           f"{desc['checksum'][:12]}); rerun `fashion neighbors` with the current model")
    return embedder


def dataset_root(info: dict, paths: np.ndarray) -> Path:
    """The run's dataset root (run.json), else the deepest folder holding every item."""
    root = (info.get("dataset") or {}).get("root")
    if not root:
        root = os.path.commonpath([os.path.abspath(p) for p in paths]) if len(paths) else "/nonexistent"
        root = root if os.path.isdir(root) else os.path.dirname(root)
    return Path(root).resolve()
