"""A finished run directory read as a whole: its files checked against each other, its saved index
loaded, its embedder rebuilt with the run's exact settings (what :meth:`SimilarityService.open` reads).

Every file read is listed in the run's manifest (size and SHA-256), every value the service answers
from is checked for its type here, at open, and all of it is read at once (:func:`pinned`: one version
of the directory, never a mix of a run and its rerun).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..rundir import RunDirError

log = logging.getLogger("fashion.service")

RUN_FILES = ("run.json", "items.csv", "embeddings.npy", "index.npz", "metrics.json")
ITEM_COLUMNS = ("index", "path", "relpath", "label", "split", "ok", "index_row")
# the insight stage's tables (optional: --no-insight leaves them out): column -> "int" | "float" | "str"
INSIGHT_FILES = {
    "duplicates.csv": {"cluster": "int", "a": "int", "b": "int", "a_split": "str", "b_split": "str",
                       "distance": "float", "method": "str"},
    "map.csv": {"id": "int", "x": "float", "y": "float"},
    "suspects.csv": {"id": "int", "label": "str", "own_share": "float", "neighbor_label": "str",
                     "neighbor_share": "float"},
}
SUSPECTS_FILE = "suspect_labels.csv"  # in the trained model's directory
SUSPECTS_COLUMNS = {"path": "str", "label": "str", "predicted": "str", "label_prob": "float", "predicted_prob": "float"}
SAMPLE_ROWS = 64  # gallery rows re-searched at open: each must find itself at distance ~0


@dataclass
class RunDir:
    """The files of a finished run, read and cross-checked by :func:`check_run_dir`.

    info: run.json; items: items.csv (DataFrame, row i has id i); metrics: metrics.json;
    embeddings: (n_items, d) float32, memory-mapped; index: the fitted NeighborIndex over the gallery;
    insight: the insight tables by file name (absent files left out).
    """

    path: Path
    info: dict
    items: Any
    metrics: dict
    embeddings: np.ndarray
    index: Any
    insight: dict = field(default_factory=dict)


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
    if absent and ((run_dir / "neighbors").is_dir() or (run_dir / "manifest").is_dir()):
        # the sharded layout (fashion manifest/embed/index/knn, or measure_sim.py above the scale
        # threshold): a finished run, in the format search and serve do not read yet (issue 27)
        raise FileNotFoundError(f"{run_dir} is a sharded run (parquet item and neighbour shards), which search and "
                                "serve cannot open yet: rerun measure_sim.py with --index faiss-ivfpq below the "
                                "scale threshold to get a servable run of these photos")
    if absent:
        raise FileNotFoundError(f"{run_dir} is not a finished run of `fashion neighbors` / measure_sim.py: "
                                f"missing {', '.join(absent)}")
    from ..rundir import verify
    from ..runfiles import read_run_json

    present = tuple(name for name in INSIGHT_FILES if os.path.lexists(run_dir / name))
    # the manifest: one complete run, no file changed or taken from another run, and every file read here in it
    verify(run_dir, require=RUN_FILES + present)
    info, metrics = read_run_json(run_dir / "run.json"), _json_file(run_dir / "metrics.json")
    if not isinstance(info.get("embedder"), dict) or "checksum" not in info["embedder"]:
        raise RunDirError(f"{run_dir / 'run.json'}: no embedder description (not written by this version?)")
    dataset_root(info, run_dir / "run.json")  # recorded, never guessed: refuse an old run now, not per request
    check_metrics(metrics, run_dir / "metrics.json")
    csv = run_dir / "items.csv"
    try:
        items = pd.read_csv(csv, dtype={"label": str, "relpath": str, "path": str, "split": str},
                            keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{csv}: not a readable item table ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise RunDirError(f"{csv}: missing columns {missing}")
    check_columns(items, {"index": "int", "index_row": "int"}, csv)
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
    insight = {name: read_table(run_dir / name, INSIGHT_FILES[name]) for name in present}
    run = RunDir(run_dir, info, items, metrics, embeddings, None, insight)
    if load_index:
        run.index = index_of(run)
    return run


@contextlib.contextmanager
def pinned(run_dir):
    """Refuse (:class:`RunDirError`) when ``run_dir`` was replaced while the block read it: a rerun's
    transaction swaps the whole directory in one rename, so an unchanged inode means one version."""
    def identity():
        try:
            st = os.stat(run_dir)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    before = identity()
    yield
    if identity() != before:
        raise RunDirError(f"{run_dir}: the run directory was replaced while it was read (a rerun finished); "
                          "open it again")


def _kind_ok(series, kind: str) -> bool:
    import pandas as pd

    if len(series) == 0:  # a header alone: pandas cannot tell the type
        return True
    if kind == "int":
        return pd.api.types.is_integer_dtype(series)
    if kind == "float":
        return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return True  # read as str


def check_columns(table, kinds: dict, path) -> None:
    """Each named column of ``table`` holds values of its kind ("int", "float", "str"); else RunDirError."""
    for column, kind in kinds.items():
        if column not in table.columns:
            raise RunDirError(f"{path}: column {column!r} is missing")
        if not _kind_ok(table[column], kind):
            raise RunDirError(f"{path}: column {column!r} must hold {'integers' if kind == 'int' else 'numbers'}")


def read_table(path: Path, kinds: dict):
    """A CSV run table whose columns ``kinds`` names are present and typed (strings read as str)."""
    import pandas as pd

    from ..filegate import UnsafeFileError, check

    try:
        check(path, what="run file")
        table = pd.read_csv(path, keep_default_na=False,
                            dtype={c: str for c, kind in kinds.items() if kind == "str"})
    except UnsafeFileError as exc:
        raise RunDirError(str(exc)) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{path}: not a readable table ({(str(exc).splitlines() or [''])[0][:200]})") from None
    check_columns(table, kinds, path)
    return table


def _numbers(value, allow_none: bool = False) -> bool:
    ok = (int, float) + ((type(None),) if allow_none else ())
    return isinstance(value, dict) and all(isinstance(v, ok) and not isinstance(v, bool) for v in value.values())


def check_metrics(metrics: dict, path) -> None:
    """The values of metrics.json that the service answers from have the types it writes; else RunDirError."""
    checks = {"per_label_precision": (lambda v: _numbers(v, allow_none=True), "an object of numbers"),
              "per_label_queries": (lambda v: _numbers(v) and all(isinstance(x, int) for x in v.values()),
                                    "an object of integers"),
              "recall_at_k": (_numbers, "an object of numbers"),
              "timing": (_numbers, "an object of numbers"),
              "skipped": (lambda v: isinstance(v, list) and all(isinstance(e, (dict, str)) for e in v),
                          "a list of {path, reason}"),
              "insight": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("map") or {}, dict)),
                          "an object")}
    for key, (ok, what) in checks.items():
        if key in metrics and not ok(metrics[key]):
            raise RunDirError(f"{path}: key {key!r} must be {what}, got {str(metrics[key])[:60]!r}")


def read_model_reports(info: dict) -> tuple:
    """(suspect_labels.csv as a DataFrame or None, the trust block of its metrics.json or None) of the
    run's trained model: read once at open, like every other file the service answers from."""
    import json

    model_dir = info["embedder"].get("model_dir")
    if not model_dir:
        return None, None
    table = None
    if (Path(model_dir) / SUSPECTS_FILE).is_file():
        table = read_table(Path(model_dir) / SUSPECTS_FILE, SUSPECTS_COLUMNS)
    trust, path = None, Path(model_dir) / "metrics.json"
    if path.is_file():
        try:
            block = json.loads(path.read_text()).get("suspect_labels", {})
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s: unreadable (%s)", path, exc)
            block = None
        if isinstance(block, dict) and "reliable" in block:
            trust = {key: block.get(key) for key in ("model_accuracy", "min_accuracy", "reliable", "caveat")}
    return table, trust


def index_of(run: RunDir):
    """The run's saved index, checked against its item table and embeddings (part of check_run_dir):
    beyond the shapes, a sample of gallery rows is searched in the index and each must find itself at
    distance ~0 (an embeddings.npy reversed or taken from another run serves wrong neighbours)."""
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
    _check_rows_find_themselves(run, index, path)
    return index


def _check_rows_find_themselves(run: RunDir, index, path: Path) -> None:
    from ..neighbors import APPROXIMATE_INDEXES

    rows = run.items["index_row"].to_numpy()
    ids = np.flatnonzero(rows >= 0)
    pick = ids[np.unique(np.linspace(0, len(ids) - 1, min(SAMPLE_ROWS, len(ids))).astype(int))]
    vectors = np.asarray(run.embeddings[pick], dtype=np.float32)
    # exact copies tie at distance 0: the row need not come first
    dist, found = index.kneighbors(vectors, n_neighbors=min(len(ids), 8))
    tolerance = 1e-3 * max(1.0, float(np.abs(vectors).max(initial=0.0)) ** 2)
    misses = [i for n, i in enumerate(pick)
              if not (found[n] == rows[i]).any() or float(np.abs(dist[n][found[n] == rows[i]]).min()) > tolerance]
    # an approximate search (HNSW) may miss a row now and then; a wrong file misses nearly all of them
    allowed = len(pick) // 10 if getattr(index, "name", "") in APPROXIMATE_INDEXES else 0
    if len(misses) > allowed:
        raise RunDirError(f"{run.path / 'embeddings.npy'}: row {misses[0]} "
                          f"({run.items['relpath'].iat[misses[0]]!r}) does not find itself at distance 0 in "
                          f"{path.name}: the embeddings are not the ones the index was built from (rerun to "
                          "rebuild the run)")


def embedder_for(info: dict):
    """Rebuild the run's embedder from run.json; refuse when its weights are not the ones the run used."""
    from dataclasses import replace

    from ..embedding import RUNTIMES, Embedder, EmbedderSpec, openvino_available

    spec = EmbedderSpec.from_json(info["embedder"])
    runtime = spec.runtime  # the photos are embedded as the run embedded its gallery
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
    # checks the weights' checksum against the run's
    return Embedder.from_spec(replace(spec, runtime=runtime if runtime in RUNTIMES[1:] else "torch"))


def dataset_root(info: dict, where) -> Path:
    """The run's dataset root, as run.json records it (``dataset.root``); never guessed from the items (the
    common folder of hostile paths can be ``/``). :class:`RunDirError` naming ``where`` when absent."""
    dataset = info.get("dataset")
    root = dataset.get("root") if isinstance(dataset, dict) else None
    if not isinstance(root, str) or not root.strip():
        raise RunDirError(f"{where}: no dataset root (key 'dataset.root'; a run of an older version): rerun "
                          "`fashion neighbors` on the dataset to rebuild the run")
    return Path(root).resolve()
