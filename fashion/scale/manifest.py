"""The item table as id-keyed parquet shards plus ``manifest/manifest.json`` (written last: it seals the stage;
inside ``manifest/``, so that the run directory's own ``manifest.json`` (fashion.rundir) can seal the run).

``id`` is the row number of :func:`fashion.datasets.load`'s table frame (int64, dense 0..n-1) and the only
join key of every later stage. The fingerprint is a sha256 over every row's relpath, label, split, bbox,
file size and mtime, so a rerun on a changed dataset is refused instead of mixing two id spaces.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FashionError
from . import shards

log = logging.getLogger(__name__)

MANIFEST_JSON = "manifest.json"
MANIFEST_DIR = "manifest"
DEFAULT_SHARD_ROWS = 50_000
FORMAT_VERSION = 1


class ManifestError(FashionError, ValueError):
    """A run directory's manifest is missing, damaged or belongs to another dataset."""


@dataclass
class Manifest:
    """``RUN/manifest/manifest.json``: what the shards hold and where the dataset was."""

    count: int
    fingerprint: str
    root: str
    format: str
    shards: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    version: int = FORMAT_VERSION

    @classmethod
    def read(cls, run_dir: os.PathLike | str) -> "Manifest":
        path = Path(run_dir) / MANIFEST_DIR / MANIFEST_JSON
        if not path.is_file():
            raise ManifestError(f"{path}: no manifest (run `fashion manifest DATASET --output-dir {run_dir}` first)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError) as exc:
            raise ManifestError(f"{path}: unreadable manifest: {exc}") from None

    def write(self, run_dir: os.PathLike | str) -> Path:
        from ..atomic import write_json

        return write_json(Path(run_dir) / MANIFEST_DIR / MANIFEST_JSON, asdict(self))


def fingerprint(items) -> str:
    """sha256 hex over (relpath, label, split, bbox, size, mtime_ns) of every row, in id order."""
    h = hashlib.sha256()
    bboxes = items["bbox"] if "bbox" in items.columns else [None] * len(items)
    for path, rel, label, split, bbox in zip(items["path"], items["relpath"], items["label"], items["split"], bboxes):
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{rel}\x1f{label}\x1f{split}\x1f{_bbox_text(bbox)}\x1f{stamp}\n".encode())
    return h.hexdigest()


def _bbox_text(bbox) -> str:
    if bbox is None or (isinstance(bbox, float) and np.isnan(bbox)):
        return ""
    return ",".join(str(int(v)) for v in bbox)


def _to_table(items, start: int, stop: int):
    import pyarrow as pa

    part = items.iloc[start:stop]
    cols = {"id": pa.array(np.arange(start, stop, dtype=np.int64))}
    for name in ("path", "relpath", "label", "split", "item_id"):
        if name in part.columns:
            cols[name] = pa.array([str(v) for v in part[name]], type=pa.string())
    if "bbox" in part.columns:
        boxes = [None if _bbox_text(b) == "" else [int(v) for v in b] for b in part["bbox"]]
        cols["bbox"] = pa.array(boxes, type=pa.list_(pa.int32()))
    return pa.table(cols)


def write_manifest(table, run_dir: os.PathLike | str, shard_rows: int = DEFAULT_SHARD_ROWS,
                   fp: str | None = None) -> Manifest:
    """Write ``table`` (a :class:`fashion.datasets.ItemTable`) as the manifest of ``run_dir``.

    A rerun on the same dataset (same fingerprint) keeps the existing manifest; on a different one it
    raises :class:`ManifestError` (the run's embeddings are keyed on these ids). ``fp``: the items'
    :func:`fingerprint` when the caller has it already (it stats every file).
    """
    from ..atomic import ensure_dir

    if shard_rows < 1:
        raise ValueError(f"shard_rows must be positive, got {shard_rows}")
    run_dir = ensure_dir(run_dir)
    items = table.frame
    fp = fp or fingerprint(items)
    if (run_dir / MANIFEST_DIR / MANIFEST_JSON).is_file():
        old = Manifest.read(run_dir)
        if old.fingerprint == fp and old.count == len(items):
            log.info("%s: manifest of %d items is up to date", run_dir, old.count)
            return old
        raise ManifestError(f"{run_dir / MANIFEST_DIR / MANIFEST_JSON}: the run holds another dataset ({old.count} items from "
                            f"{old.root}); use a new --output-dir")
    out = run_dir / MANIFEST_DIR
    if out.exists():  # a manifest stage killed before it was sealed: start it over
        for p in out.glob("*"):
            p.unlink()
    names = []
    for start in range(0, len(items), shard_rows):
        stop = min(len(items), start + shard_rows)
        path = shards.write_table(out / f"part-{start:012d}.parquet", _to_table(items, start, stop))
        names.append(path.name)
    columns = list(_to_table(items, 0, min(1, len(items))).column_names)
    manifest = Manifest(count=len(items), fingerprint=fp, root=table.root, format=table.format, shards=names,
                        columns=columns)
    manifest.write(run_dir)
    log.info("%s: manifest of %d items in %d shards", run_dir, len(items), len(names))
    return manifest


def read_items(run_dir: os.PathLike | str, columns=None, ids: np.ndarray | None = None):
    """The manifest as one ``pyarrow.Table`` (optionally only ``columns`` and the rows of ``ids``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    manifest = Manifest.read(run_dir)
    cols = None if columns is None else ["id"] + [c for c in columns if c != "id" and c in manifest.columns]
    tables = [pq.read_table(Path(run_dir) / MANIFEST_DIR / name, columns=cols) for name in manifest.shards]
    table = pa.concat_tables(tables) if tables else pa.table({"id": pa.array([], pa.int64())})
    if ids is not None:
        table = table.filter(pc.is_in(table.column("id"), value_set=pa.array(np.asarray(ids, np.int64))))
    return table


def shard_paths(run_dir: os.PathLike | str) -> list[str]:
    """Absolute paths of the manifest's shard files."""
    manifest = Manifest.read(run_dir)
    return [str((Path(run_dir) / MANIFEST_DIR / name).resolve()) for name in manifest.shards]


def to_frame(table):
    """A manifest table → the item DataFrame the embedder takes (``path``; ``bbox`` as tuples or None)."""
    frame = table.to_pandas()
    if "bbox" in frame.columns:
        frame["bbox"] = [None if b is None else tuple(int(v) for v in b) for b in frame["bbox"]]
    return frame


def summary_text(manifest: Manifest) -> str:
    return json.dumps({"count": manifest.count, "shards": len(manifest.shards), "fingerprint": manifest.fingerprint[:16]})
