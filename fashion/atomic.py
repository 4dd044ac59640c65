"""Atomic file output: a file appears under its final name complete, or not at all.

Everything is written to a temporary sibling (same directory, so ``os.replace`` is atomic on POSIX),
flushed and fsynced, then renamed. A crash leaves at most a ``.tmp`` file that the next run ignores.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import OutputError

_FRIENDLY = {
    errno.ENOSPC: "the disk is full: no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EDQUOT: "disk quota exceeded",
}
_FULL_BYTES = 64 << 10  # free space below which an errno-less write failure is a full disk


def _output_error(path: os.PathLike | str, exc: OSError) -> OutputError:
    """One line naming ``path`` and the cause. The errno decides; an OSError without one (numpy's
    ``tofile`` reports a short write as "N requested and M written") is a full disk only when the file
    system really has (almost) no free space left, never guessed from the text."""
    code = exc.errno
    if code is None and _disk_full(Path(path).parent):
        code = errno.ENOSPC
    reason = _FRIENDLY.get(code, exc.strerror or str(exc))
    return OutputError(f"cannot write {path}: {reason}")


def _disk_full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _FULL_BYTES


def ensure_dir(path: os.PathLike | str) -> Path:
    """Create ``path`` (and parents); raise :class:`OutputError` with one clear line if impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(path, exc) from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied")
    return path


@contextlib.contextmanager
def atomic_write(path: os.PathLike | str, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the block ends without error.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(d / "a.txt", "w") as f:
    ...     _ = f.write("hello")
    >>> (d / "a.txt").read_text()
    'hello'
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _output_error(path, exc) from None
    with _replace_or_clean_up(tmp, path):
        os.fchmod(fd, _default_mode())
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path for writers that want a file name (``np.save``, ``fig.savefig``)."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = None
    try:  # a unique hidden name, made as atomic_write makes its own (so a read-only disk fails here too)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _output_error(path, exc) from None
    tmp = Path(tmp)
    with _replace_or_clean_up(tmp, path):
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())


@contextlib.contextmanager
def _replace_or_clean_up(tmp, path: Path) -> Iterator[None]:
    """Rename ``tmp`` to ``path`` when the block succeeds; otherwise delete it and re-raise
    (an OSError as one clear :class:`OutputError`)."""
    try:
        yield
        os.replace(tmp, path)
    except OSError as exc:
        # the cause is read before the temporary file is removed (removing it frees the full disk)
        error = exc if isinstance(exc, OutputError) else _output_error(path, exc)
        _silent_unlink(tmp)
        if error is exc:
            raise
        raise error from None
    except BaseException:
        _silent_unlink(tmp)
        raise


def write_text(path: os.PathLike | str, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; return the path."""
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return Path(path)


def write_json(path: os.PathLike | str, obj, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (NaN is written as ``null``); return the path."""
    return write_text(path, json.dumps(_json_safe(obj), indent=indent, sort_keys=False) + "\n")


def save_npy(path: os.PathLike | str, array) -> Path:
    """Save a numpy array atomically in ``.npy`` format; return the path."""
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
    return Path(path)


def save_csv(path: os.PathLike | str, frame, **to_csv_kwargs) -> Path:
    """Save a pandas DataFrame as CSV atomically (no index unless asked); return the path."""
    to_csv_kwargs.setdefault("index", False)
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        frame.to_csv(f, **to_csv_kwargs)
    return Path(path)


def save_figure(path: os.PathLike | str, figure, **savefig_kwargs) -> Path:
    """Save a matplotlib figure (format from the suffix) atomically; return the path."""
    path = Path(path)
    savefig_kwargs.setdefault("bbox_inches", "tight")
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_write(path, "wb") as f:
        figure.savefig(f, **savefig_kwargs)
    return path


def save_image(path: os.PathLike | str, image, **save_kwargs) -> Path:
    """Save a PIL image (format from the suffix) atomically; return the path."""
    path = Path(path)
    fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(path.suffix.lower().lstrip("."), path.suffix.lstrip(".").upper() or "PNG")
    with atomic_write(path, "wb") as f:
        image.save(f, format=fmt, **save_kwargs)
    return path


def _default_mode() -> int:
    """rw for everyone the umask allows (mkstemp's 0600 would hide outputs from other users)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _silent_unlink(path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _json_safe(obj):
    """Turn numpy scalars/arrays, paths and NaN into plain JSON values."""
    import math

    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
