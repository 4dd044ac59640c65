"""Exception types shared by the library.

Every error a user can cause (bad dataset, unreadable image, unwritable output) derives from
:class:`FashionError`, so entry points can turn it into one clear line instead of a traceback.
"""

from __future__ import annotations


class FashionError(Exception):
    """Base class of the errors the entry points report as one line."""


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
        from .filegate import display  # the path on one printable line (NUL, undecodable bytes escaped)

        super().__init__(f"{display(path)}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # keep picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


class OutputError(FashionError, OSError):
    """An output file cannot be written (read-only directory, full disk, ...)."""
