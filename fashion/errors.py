"""Exception types shared by the library: the error contract.

Every error a user can cause (a bad option, dataset, model directory, saved file or image; an
unwritable output) is a :class:`FashionError`, so entry points turn it into one clear line; anything
else is a bug and keeps its traceback. Each subclass also derives from the builtin a caller would
expect (``ValueError`` for bad values, ``OSError`` for files), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class FashionError(Exception):
    """Base class of the errors the entry points report as one line."""


class ConfigError(FashionError, ValueError):
    """An option or argument has a bad value; the message names the option, the value and what is valid."""


class NotFittedError(FashionError, ValueError):
    """An object that needs ``fit`` first (a nearest-neighbour index) was used before it."""


class FormatError(FashionError, ValueError):
    """A file the library reads back (model.json, a saved index, a run's files) is malformed.

    The message names the file and, where it applies, the key: ``runs/a/model.json: std: expected ...``.
    """

    def __init__(self, message: str, path=None, key: str | None = None):
        where = "" if path is None else f"{path}: "
        super().__init__(where + (f"{key}: " if key else "") + message)
        self.path = path
        self.key = key


class DatasetError(FashionError, ValueError):
    """A dataset root or annotation file is malformed.

    The message names the file and, where it applies, the 1-based line number:
    ``Anno/list_category_img.txt:17: expected 2 columns (image_name category_label), got 3``.
    """

    def __init__(self, message: str, path=None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class ImageError(FashionError, OSError):
    """An image cannot be used: missing, empty, unreadable, truncated, too large or an empty crop."""

    def __init__(self, path, reason: str):
        from .names import display  # the path on one printable line (NUL, undecodable bytes escaped)

        super().__init__(f"{display(path)}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # keep picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


class OutputError(FashionError, OSError):
    """An output file cannot be written (read-only directory, full disk, ...)."""


def first_line(text, limit: int = 200) -> str:
    """The first line of an exception's message or of a text, at most ``limit`` characters (an HTTP
    error's ``detail``: :data:`fashion.server.upload.DETAIL_CHARS`); an exception with no message: its
    type name.

    >>> first_line(ValueError("bad value\\nsecond line")), first_line(KeyError()), first_line("x" * 500, 3)
    ('bad value', 'KeyError', 'xxx')
    """
    fallback = type(text).__name__ if isinstance(text, BaseException) else ""
    return (str(text).strip().splitlines() or [fallback])[0][:limit]


class Cancelled(BaseException):
    """Work stopped because its caller asked it to (a ``threading.Event`` it was given was set): a
    BaseException, as ``KeyboardInterrupt``, so that an ``except Exception`` on the way (a cache chunk a
    stage cannot read, say) does not swallow it."""
