"""Dataset readers: one item table for DeepFashion, DeepFashion In-shop and plain image folders.

:func:`load` returns an :class:`ItemTable`: a pandas.DataFrame with one row per image (``path``,
``relpath``, ``label``, ``split`` and, where the format has them, ``item_id``, ``category_id``,
``category_type`` and ``bbox``) and the dataset's format, root and skipped files.

Supported layouts (``format=``), one module each: ``deepfashion`` (Category & Attribute Prediction,
:mod:`.deepfashion`), ``inshop`` (In-shop Clothes Retrieval, :mod:`.inshop`) and ``folder`` (class
or split/class image folders, :mod:`.folder`). Their list files are parsed by :mod:`.listfiles`; the
names they list are checked by :mod:`.files` (no absolute paths, no ``..`` or symlink escapes, one
spelling per file); :mod:`.table` holds the table type and its summaries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ConfigError, DatasetError
from .deepfashion import find_anno_dir, load_deepfashion
from .files import check_files, handle_missing
from .folder import has_image_folders, load_folder
from .inshop import find_inshop_partition, load_inshop
from .listfiles import MAX_LIST_BYTES
from .table import FORMATS, SPLITS, ItemTable, bbox_or_none, build_table, describe, split_name, summary

__all__ = ["FORMATS", "SPLITS", "MAX_LIST_BYTES", "ItemTable", "load", "detect_format", "summary", "describe",
           "bbox_or_none", "split_name"]

log = logging.getLogger(__name__)


def detect_format(root: str | os.PathLike) -> str:
    """Return which of :data:`FORMATS` ``root`` holds; raise :class:`DatasetError` naming it if none."""
    root = _check_root(root)
    if find_anno_dir(root) is not None:
        found = "deepfashion"
    elif find_inshop_partition(root) is not None:
        found = "inshop"
    elif has_image_folders(root):
        found = "folder"
    else:
        raise DatasetError(
            "no known dataset layout: expected Anno/list_category_img.txt (DeepFashion), "
            "list_eval_partition.txt with item ids (In-shop) or <class>/ or <split>/<class>/ image folders",
            root,
        )
    log.info("%s: detected %s format", root, found)
    return found


def load(root: str | os.PathLike, format: str = "auto", missing: str = "error") -> ItemTable:
    """Read the dataset at ``root`` into an :class:`ItemTable` (its ``frame``: one row per image).

    ``format``: "auto" or one of :data:`FORMATS`. ``missing``: "error" raises one
    :class:`DatasetError` for images listed but absent; "skip" drops them and records their relpaths
    in the table's ``missing``. Listed files that are not regular files are dropped and recorded in
    ``refused``, non-image files in folders in ``ignored``.
    """
    if format not in ("auto",) + FORMATS:
        raise ConfigError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    if missing not in ("error", "skip"):
        raise ConfigError(f"missing must be 'error' or 'skip', got {missing!r}")
    root = _check_root(root)
    if format == "auto":
        format = detect_format(root)
    reader = {"deepfashion": load_deepfashion, "inshop": load_inshop, "folder": load_folder}[format]
    parsed = reader(root)
    absent, refused = ([], {}) if parsed.source is None else check_files(root, parsed)
    if absent:
        handle_missing(parsed, absent, missing)
    if refused:
        parsed.refused += [(parsed.relpaths[i], reason) for i, reason in refused.items()]
        shown = ", ".join(f"{parsed.relpaths[i]} (line {parsed.lines[i]}: {r})" for i, r in list(refused.items())[:3])
        log.warning("%s: skipping %d listed files that are not regular files: %s", parsed.source, len(refused), shown)
    return build_table(root, parsed, format, absent, list(refused))


def _check_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError("dataset root is not a directory" if path.exists() else "dataset root not found", path)
    return path.resolve()
