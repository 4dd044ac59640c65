"""DeepFashion list files: a count line, a header line, then rows of whitespace-separated fields.

Read as UTF-8 through the file gate (a BOM and CRLF line ends are fine). An image name may hold spaces
when it ends with an image suffix. Every malformed row raises :class:`~fashion.errors.DatasetError`
naming the file and the 1-based line. Rows are indexed by image name and joined across files here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from ..errors import DatasetError
from ..filegate import UnsafeFileError, read_bytes
from ..images import IMAGE_EXTENSIONS

log = logging.getLogger("fashion.datasets")

MAX_LIST_BYTES = 2 << 30  # the largest annotation list read (DeepFashion's biggest is ~20 MB)

# One data row of a list file: (1-based line number, fields). A plain tuple: there are 289k of them.
Row = tuple[int, list[str]]


def present(path: Path) -> bool:
    """Whether an annotation file exists at all (a directory or FIFO there is then refused by
    :func:`_read_lines` with one line, instead of being silently taken for no file)."""
    return os.path.lexists(path)


def _read_lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 (BOM dropped, CRLF/CR line ends accepted), read through the file gate
    (a directory, FIFO or oversized file named in one line, never opened for reading)."""
    try:
        data = read_bytes(path, MAX_LIST_BYTES, what="annotation file")
    except UnsafeFileError as exc:
        reason = "annotation file not found" if exc.reason == "file not found" else f"annotation file {exc.reason}"
        raise DatasetError(reason, path) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"not UTF-8 text ({exc.reason})", path, line) from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_list(path: Path, header: tuple[str, ...], name_ok: Callable[[str], bool]) -> list[Row]:
    """Parse a DeepFashion list file: count line, header line, then rows of ``len(header)`` fields."""
    lines = _read_lines(path)
    count = _count(lines[0], path)
    if len(lines) < 2 or len(lines[1].split()) != len(header):
        got = lines[1].strip() if len(lines) > 1 else "end of file"
        raise DatasetError(f"expected the header line '{' '.join(header)}', got {got!r}", path, 2)
    if [h.lower() for h in lines[1].split()] != list(header):
        log.debug("%s:2: unusual header %r (expected %r)", path, lines[1].strip(), " ".join(header))
    width = len(header)
    rows = []
    for number, text in enumerate(lines[2:], start=3):
        fields = text.split()
        if len(fields) != width:  # the fast path above covers almost every row
            if not fields:
                continue
            fields = _split_fields(text, header, name_ok, path, number)
        rows.append((number, fields))
    if len(rows) != count:
        raise DatasetError(f"the count line says {count} rows, found {len(rows)}", path, 1)
    return rows


def _count(text: str, path: Path) -> int:
    """The row count on a list file's first line."""
    try:
        count = int(text.strip())
    except ValueError:
        count = -1
    if count < 0:
        raise DatasetError(f"expected the number of rows on the first line, got {text.strip()!r}", path, 1)
    return count


def _split_fields(text: str, header: tuple[str, ...], name_ok, path: Path, line: int) -> list[str]:
    """Split a row on whitespace; the first field may hold spaces when ``name_ok`` accepts it."""
    fields = text.split()
    if len(fields) > len(header):
        joined = text.strip().rsplit(None, len(header) - 1)
        if name_ok(joined[0]):
            fields = joined
    if len(fields) != len(header):
        raise DatasetError(
            f"expected {len(header)} columns ({' '.join(header)}), got {len(fields)}: {text.strip()!r}",
            path,
            line,
        )
    return fields


def image_name_ok(name: str) -> bool:
    """An image name with spaces is accepted when it still ends with an image suffix."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def category_name_ok(name: str) -> bool:
    """A category name with spaces is accepted unless its last word is a number (an extra column)."""
    return not name.split()[-1].lstrip("-").isdigit()


def to_int(text: str, column: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"expected an integer {column}, got {text!r}", path, line) from None


def index_rows(path: Path, rows: list[Row], value: Callable[[Row], object]) -> dict[str, tuple[int, object]]:
    """Map image name → (line, value(row)) in file order; a repeated name is an error."""
    index: dict[str, tuple[int, object]] = {}
    for row in rows:
        line, fields = row
        name = fields[0]
        if name in index:
            raise DatasetError(f"duplicate image {name!r} (first on line {index[name][0]})", path, line)
        index[name] = (line, value(row))
    return index


def split_word(words: dict[str, str], path: Path) -> Callable[[Row], str]:
    """Row → normalised split from its last field; unknown words are errors."""

    def parse(row: Row) -> str:
        line, fields = row
        word = fields[-1]
        if word.lower() not in words:
            raise DatasetError(f"unknown split {word!r}, expected one of {', '.join(sorted(words))}", path, line)
        return words[word.lower()]

    return parse


def bbox_value(path: Path, first: int) -> Callable[[Row], tuple[int, int, int, int]]:
    """Row → (x1, y1, x2, y2) from fields ``first..first+3``; negative or empty boxes are errors."""

    def parse(row: Row) -> tuple[int, int, int, int]:
        names = ("x_1", "y_1", "x_2", "y_2")
        line, fields = row
        x1, y1, x2, y2 = (to_int(v, n, path, line) for v, n in zip(fields[first : first + 4], names))
        if min(x1, y1, x2, y2) < 0 or x2 <= x1 or y2 <= y1:
            raise DatasetError(f"bad bbox ({x1}, {y1}, {x2}, {y2}): need 0 <= x_1 < x_2 and 0 <= y_1 < y_2", path, line)
        return (x1, y1, x2, y2)

    return parse


def join_rows(main: dict, other: dict, main_path: Path, other_path: Path, what: str, required: bool) -> list:
    """Values of ``other`` in ``main``'s order; a name absent from ``other`` is an error if required."""
    values, absent = [], 0
    for name, (line, _) in main.items():
        if name in other:
            values.append(other[name][1])
        elif required:
            raise DatasetError(f"image {name!r} has no {what} in {other_path}", main_path, line)
        else:
            values.append(None)
            absent += 1
    extra = len(set(other) - set(main))
    if absent:
        log.warning("%s: %d images have no %s row; their %s is None", other_path, absent, what, what)
    if extra:
        log.warning("%s: %d rows name images not in %s; ignored", other_path, extra, main_path.name)
    return values
