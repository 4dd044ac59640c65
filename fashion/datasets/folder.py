"""Image folders: ``ROOT/<class>/**/<image>`` or ``ROOT/<split>/<class>/**/<image>`` with split folders
``train``, ``valid``/``validation``/``val`` and ``test``. Only suffixes in
:data:`~fashion.images.IMAGE_EXTENSIONS` count; hidden and other files are ignored and counted. Symlinked
folders and images are fine while they resolve inside the root."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..filegate import UnsafeFileError, check
from ..names import display
from ..images import IMAGE_EXTENSIONS
from .files import inside
from .table import MISSING_SHOWN, SPLIT_WORDS, Parsed

log = logging.getLogger("fashion.datasets")


def has_image_folders(root: Path) -> bool:
    """True when some non-hidden sub-folder (of a split folder, or of the root) holds an image."""
    for top in _subdirs(root):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            if any(_is_image_name(name) for name in filenames):
                return True
    return False


def _subdirs(path: Path) -> list[Path]:
    """Non-hidden sub-directories of ``path``, sorted by name."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def load_folder(root: Path) -> Parsed:
    """``ROOT/<class>/...`` or ``ROOT/<split>/<class>/...`` image folders, sorted by relpath."""
    tops = _subdirs(root)
    split_dirs = [d for d in tops if d.name.lower() in SPLIT_WORDS]
    if split_dirs:
        for other in sorted(set(tops) - set(split_dirs)):
            log.warning("%s: ignoring folder %s/ beside the split folders", root, other.name)
        groups = [(SPLIT_WORDS[d.name.lower()], c) for d in split_dirs for c in _subdirs(d)]
    else:
        groups = [("", d) for d in tops]
    records, ignored, refused = [], [], []
    for split, class_dir in groups:
        # a symlinked split or class folder, or a symlinked image, must not lead out of the root
        inside(root, class_dir, class_dir.relative_to(root).as_posix() + "/", root, None)
        for file in _files_under(class_dir):
            relpath = file.relative_to(root).as_posix()
            if not _is_image_name(file.name):
                ignored.append(display(relpath))
                continue
            problem = _gate(file)  # at load time, not when a worker opens it deep in the run
            if problem:
                refused.append((display(relpath), problem))
                continue
            if file.is_symlink():
                inside(root, file, relpath, root, None)
            records.append((relpath, class_dir.name, split))
    records.sort()
    if ignored:
        log.info("%s: ignored %d non-image files (e.g. %s)", root, len(ignored), ", ".join(ignored[:MISSING_SHOWN]))
    if refused:
        log.warning("%s: skipping %d files that cannot be read as images: %s", root, len(refused),
                    ", ".join(f"{name} ({why})" for name, why in refused[:MISSING_SHOWN]))
    parsed = Parsed(None, [r[0] for r in records], [0] * len(records), ignored=sorted(ignored),
                     refused=sorted(refused))
    parsed.columns["label"] = [r[1] for r in records]
    parsed.columns["split"] = [r[2] for r in records]
    return parsed


def _files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, hidden folders skipped (symlinked sub-folders are not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, name) for name in filenames)
    return found


def _gate(path: Path) -> str | None:
    """Why the file gate refuses ``path`` as an image (bad name, FIFO, symlink loop ...), or None."""
    try:
        check(path)
    except UnsafeFileError as exc:
        return exc.reason
    return None
