"""The one gate every file the tool reads passes first: images, annotation lists, model and run files, uploads.

:func:`check` looks at a path without opening it for reading (``os.stat``): a name that is not valid
UTF-8, holds a NUL byte or is longer than the file system allows, a symlink loop, a FIFO, socket,
device or directory, and a file over the caller's size limit are each refused with one
:class:`UnsafeFileError` naming the file and the reason. :func:`open_regular` then opens with
``O_NONBLOCK`` (so even a FIFO swapped in after the check cannot block the open) and checks the open
descriptor again (``fstat``), so what is read is the regular file that was checked.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> os.mkfifo(d / "pipe.jpg")
>>> check(d / "pipe.jpg")
Traceback (most recent call last):
...
fashion.filegate.UnsafeFileError: .../pipe.jpg: is a FIFO (named pipe), not a regular file
"""

from __future__ import annotations

import errno
import os
import stat
from typing import IO

from .errors import FashionError
from .names import display


class UnsafeFileError(FashionError, OSError):
    """A file the tool will not read: not a regular file, a bad name, too large (``reason`` says which)."""

    def __init__(self, path, reason: str):
        super().__init__(f"{display(path)}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def name_problem(path) -> str | None:
    """Why ``path`` cannot be used as a name (NUL byte, not UTF-8, too long), or None when it can."""
    raw = path if isinstance(path, bytes) else os.fsencode(os.fspath(path))
    if b"\0" in raw:
        return "the name holds a NUL byte"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the name is not valid UTF-8"
    parts = raw.split(b"/")
    limit = 255
    if any(len(p) > limit for p in parts):
        return f"the name is longer than the file system allows ({limit} bytes a component)"
    if len(raw) >= 4096:
        return "the path is longer than the file system allows (4096 bytes)"
    return None


def kind_problem(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read (directory, FIFO, ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, what in _KINDS:
        if test(mode):
            return f"is {what}, not a regular file"
    return "is not a regular file"


def check(path, max_bytes: int | None = None, what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path`` after every check; :class:`UnsafeFileError` (one line) when it fails one.

    Nothing is opened: a FIFO is refused at once, never read. ``max_bytes``: the largest size accepted.
    """
    problem = name_problem(path)
    if problem:
        raise UnsafeFileError(path, problem)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UnsafeFileError(path, os_reason(exc, what)) from None
    problem = kind_problem(st.st_mode)
    if problem:
        raise UnsafeFileError(path, problem)
    if max_bytes is not None and st.st_size > max_bytes:
        raise UnsafeFileError(path, _too_large(st.st_size, max_bytes, what))
    return st


def _too_large(size: int, limit: int, what: str) -> str:
    return f"too large: {size:,} bytes (the limit for {what}s is {limit:,})"


def open_regular(path, max_bytes: int | None = None, what: str = "file") -> IO[bytes]:
    """Open a checked regular file for binary reading (``O_NONBLOCK``, then ``fstat`` re-checked)."""
    check(path, max_bytes, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnsafeFileError(path, os_reason(exc, what)) from None
    try:
        st = os.fstat(fd)
        problem = kind_problem(st.st_mode)
        if problem:
            raise UnsafeFileError(path, problem)
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafeFileError(path, _too_large(st.st_size, max_bytes, what))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, max_bytes: int | None = None, what: str = "file", probe: bool = False) -> bytes:
    """The bytes of a checked regular file (``probe=True``: only check it, return b"")."""
    if probe:
        check(path, max_bytes, what)
        return b""
    with open_regular(path, max_bytes, what) as f:
        return f.read()


def os_reason(exc: OSError, what: str = "file") -> str:
    """One short cause for an ``OSError`` raised on a path (errno decides, not the message text)."""
    reasons = {
        errno.ENOENT: "file not found",
        errno.ELOOP: "symlink loop (too many levels of symbolic links)",
        errno.ENAMETOOLONG: "the name is longer than the file system allows",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory, not a regular file",
        errno.ENOTDIR: "a part of the path is not a directory",
        errno.ENXIO: "no such device (a FIFO or socket with nothing behind it)",
    }
    return reasons.get(exc.errno, exc.strerror or type(exc).__name__)


def is_regular(path) -> bool:
    """True when ``path`` passes :func:`check` (any size)."""
    try:
        check(path)
    except UnsafeFileError:
        return False
    return True

