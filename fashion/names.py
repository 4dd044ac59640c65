"""File names as text a person or a JSON document can carry: valid Unicode (:func:`unicode_name`) and
one printable line (:func:`display`). Imported by the error messages (:mod:`fashion.errors`) and the
file gate (:mod:`fashion.filegate`), so it imports neither."""

from __future__ import annotations

import os


def unicode_name(path) -> str:
    """``path`` as valid Unicode text (no lone surrogates, so JSON and UTF-8 can carry it): bytes that are
    not UTF-8 as ``\\xNN``; control characters kept (:func:`display` escapes them too)."""
    text = path if isinstance(path, bytes) else os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to: keep its code point
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def display(path) -> str:
    """``path`` printable on one line: undecodable bytes as ``\\xNN``, NUL and control characters escaped."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in unicode_name(path))
