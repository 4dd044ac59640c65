"""The checks of the image names an annotation file lists: inside the root, one spelling per file,
present (or reported missing), regular files (others refused). Plain strings, not Paths: they run for
every row."""

from __future__ import annotations

import logging
import os
import posixpath
import re
import stat
from pathlib import Path

from ..errors import DatasetError
from ..filegate import kind_problem, name_problem, os_reason
from ..names import display
from .table import MISSING_SHOWN, Parsed

log = logging.getLogger("fashion.datasets")

_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:)?[\\/]")
_ABSENT = "absent"


def check_files(root: Path, parsed: Parsed) -> tuple[list[int], dict[int, str]]:
    """Reject names that escape ``root``, hold a NUL byte or are too long, and two spellings of one
    file; return (positions of listed images that do not exist, {position: reason} of those that exist
    but are not regular files: a directory, a FIFO, a symlink loop).

    One ``lstat`` per image; folders are resolved once each (symlinks included), and a symlinked
    image is resolved on its own. Duplicates are found on the resolved folder + name, so
    ``img/./Hat/x.jpg`` and ``img/Hat/x.jpg`` are one file. Plain strings, not Paths: this runs for every row.
    """
    folders: dict[str, str] = {}
    absent, refused = [], {}
    seen: dict[str, int] = {}  # resolved path -> first position
    for position, (written, line) in enumerate(zip(parsed.relpaths, parsed.lines)):
        problem = name_problem(written)
        if problem:
            raise DatasetError(f"image name '{display(written)}': {problem}", parsed.source, line)
        if _ABSOLUTE.match(written):
            message = f"absolute image path {written!r}: names must be relative to the dataset root"
            raise DatasetError(message, parsed.source, line)
        name = written
        if name.startswith(".") or "/." in name or "//" in name or name.endswith("/"):
            name = parsed.relpaths[position] = posixpath.normpath(name)
        folder, _, base = name.rpartition("/")
        if folder not in folders:
            folders[folder] = str(inside(root, root / folder, written, parsed.source, line))
        if base in (".", ".."):  # the root itself or above it
            inside(root, root / name, written, parsed.source, line)
            absent.append(position)
            continue
        # one file, however spelled (``img/./Hat/x.jpg``, ``img//Hat/x.jpg``, a symlinked folder); a
        # symlinked image is an alias of its own, as users make them on purpose
        real = f"{folders[folder]}/{base}"
        status, _ = _listed_file(root, real, written, parsed.source, line)
        if real in seen:
            first = seen[real]
            raise DatasetError(f"duplicate image {written!r}: the same file as {parsed.relpaths[first]!r} "
                               f"(line {parsed.lines[first]})", parsed.source, line)
        seen[real] = position
        if status == _ABSENT:
            absent.append(position)
        elif status is not None:
            refused[position] = status
    return absent, refused


def _listed_file(root: Path, path: str, name: str, source: Path | None, line: int) -> tuple[str | None, str]:
    """(None for a regular file, ``_ABSENT``, or why it is refused; its resolved path). A symlink must
    stay inside ``root``; a FIFO or directory is never opened."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _ABSENT, path
    except OSError as exc:
        return os_reason(exc), path
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:  # a dangling link: the image is missing
            return _ABSENT, path
        except OSError as exc:  # a symlink loop
            return os_reason(exc), path
        path = str(inside(root, Path(path), name, source, line))
    return kind_problem(mode), path


def inside(root: Path, path: Path, name: str, source: Path | None, line: int) -> Path:
    """``path`` resolved; a :class:`DatasetError` when it leaves ``root`` or loops."""
    try:
        real = path.resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError on a symlink loop
        raise DatasetError(f"image path '{display(name)}': symlink loop or unreadable path ({exc})", source, line) from None
    if not real.is_relative_to(root):
        raise DatasetError(f"image path {name!r} escapes the dataset root (resolves to {real})", source, line)
    return real


def handle_missing(parsed: Parsed, absent: list[int], missing: str) -> None:
    """Raise one error listing the absent images, or drop them (missing="skip")."""
    shown = ", ".join(f"{parsed.relpaths[i]} (line {parsed.lines[i]})" for i in absent[:MISSING_SHOWN])
    more = f" and {len(absent) - MISSING_SHOWN} more" if len(absent) > MISSING_SHOWN else ""
    if missing == "error":
        raise DatasetError(
            f"{len(absent)} of {len(parsed.relpaths)} listed images do not exist: {shown}{more} "
            "(use missing='skip' to drop them)",
            parsed.source,
        )
    log.warning("%s: skipping %d listed images that do not exist: %s%s", parsed.source, len(absent), shown, more)
