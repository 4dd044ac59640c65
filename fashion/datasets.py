"""Dataset readers: one item table for DeepFashion, DeepFashion In-shop and plain image folders.

:func:`load` returns a :class:`pandas.DataFrame` with one row per image and the columns
``path`` (absolute), ``relpath`` (posix, relative to the root), ``label``, ``split`` and, where the
format has them, ``item_id``, ``category_id``, ``category_type`` and ``bbox``.

Supported layouts (``format=``):

``deepfashion``
    Category & Attribute Prediction benchmark: ``Anno/`` (or ``Anno_coarse/``) with
    ``list_category_cloth.txt``, ``list_category_img.txt``, optional ``list_bbox.txt``, and
    ``Eval/list_eval_partition.txt`` (train/val/test; without it every split is ``""``).
``inshop``
    In-shop Clothes Retrieval: ``list_eval_partition.txt`` (at the root or in ``Eval/``) with rows
    ``image_name item_id evaluation_status`` (train/query/gallery), optional
    ``list_bbox_inshop.txt``. The label is the folder that holds the item folder:
    ``img/WOMEN/Dresses/id_00000002/02_1_front.jpg`` → ``Dresses`` (the item folder is the last one
    named ``id_*``, else the image's parent folder). MEN and WOMEN folders of the same name share a label.
``folder``
    ``ROOT/<class>/**/<image>`` or ``ROOT/<split>/<class>/**/<image>`` with split folders ``train``,
    ``valid``/``validation``/``val`` and ``test``. Only suffixes in
    :data:`~fashion.images.IMAGE_EXTENSIONS` count; hidden and other files are ignored and counted.
    Symlinked folders and images are fine while they resolve inside the root.

DeepFashion list files start with a line holding the number of rows, then a header line, then rows
whose fields are separated by runs of whitespace. They are read as UTF-8 (a BOM and CRLF line ends are
fine). An image name may hold spaces when it ends with an image suffix. Every malformed row raises
:class:`~fashion.errors.DatasetError` naming the file and the 1-based line. Image names from
annotation files must stay inside the root (no absolute paths, no ``..`` or symlink escapes).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import ConfigError, DatasetError
from .filegate import UnsafeFileError, check, display, kind_problem, name_problem, open_regular, os_reason, read_bytes
from .images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

FORMATS = ("deepfashion", "inshop", "folder")
SPLITS = ("train", "valid", "test", "query", "gallery")

_ANNO_DIRS = ("Anno", "Anno_coarse")
_SPLIT_WORDS = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
_INSHOP_SPLITS = {"train": "train", "query": "query", "gallery": "gallery"}
_CATEGORY_TYPES = (1, 2, 3)
_MISSING_SHOWN = 5
MAX_LIST_BYTES = 2 << 30  # the largest annotation list read (DeepFashion's biggest is ~20 MB)
_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:)?[\\/]")

_CLOTH_HEADER = ("category_name", "category_type")
_IMG_HEADER = ("image_name", "category_label")
_BBOX_HEADER = ("image_name", "x_1", "y_1", "x_2", "y_2")
_PARTITION_HEADER = ("image_name", "evaluation_status")
_INSHOP_HEADER = ("image_name", "item_id", "evaluation_status")
_INSHOP_BBOX_HEADER = ("image_name", "clothes_type", "pose_type", "x_1", "y_1", "x_2", "y_2")


def bbox_or_none(value) -> tuple | None:
    """An item table's bbox cell as a tuple, or None where the row has none (None, or NaN from pandas)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return tuple(value)


def split_name(word: str) -> str:
    """The item table's name of a split word: "val"/"validation" → "valid", others lower-cased as they are.

    >>> split_name("Validation"), split_name("gallery")
    ('valid', 'gallery')
    """
    word = str(word).strip().lower()
    return _SPLIT_WORDS.get(word, word)


@dataclass
class _Parsed:
    """Rows read from one format before the file checks: relpaths, their lines and other columns."""

    source: Path | None  # the annotation file rows come from (None for folders)
    relpaths: list[str]
    lines: list[int]
    columns: dict[str, list] = field(default_factory=dict)  # label, split, then optional columns
    ignored: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason): files the gate refused


# One data row of a list file: (1-based line number, fields). A plain tuple: there are 289k of them.
_Row = tuple[int, list[str]]


# ----------------------------------------------------------------------------------------- public


def detect_format(root: str | os.PathLike) -> str:
    """Return which of :data:`FORMATS` ``root`` holds; raise :class:`DatasetError` naming it if none."""
    root = _check_root(root)
    if _find_anno_dir(root) is not None:
        found = "deepfashion"
    elif _find_inshop_partition(root) is not None:
        found = "inshop"
    elif _has_image_folders(root):
        found = "folder"
    else:
        raise DatasetError(
            "no known dataset layout: expected Anno/list_category_img.txt (DeepFashion), "
            "list_eval_partition.txt with item ids (In-shop) or <class>/ or <split>/<class>/ image folders",
            root,
        )
    log.info("%s: detected %s format", root, found)
    return found


def load(root: str | os.PathLike, format: str = "auto", missing: str = "error"):
    """Read the dataset at ``root`` into an item table (pandas.DataFrame, one row per image).

    ``format``: "auto" or one of :data:`FORMATS`. ``missing``: "error" raises one
    :class:`DatasetError` for images listed but absent; "skip" drops them and records their relpaths
    in ``df.attrs["missing"]``. Columns: path, relpath, label, split, then item_id (str),
    category_id / category_type (int) and bbox (``(x1, y1, x2, y2)`` or None) where the format has them.
    ``df.attrs``: format, root, missing (list[str]), ignored (list[str], non-image files in folders),
    refused (list of (relpath, reason): image files the file gate refused at load time — a FIFO, a
    directory, a symlink loop, a name that is not UTF-8 — dropped from the table; relpaths escaped
    with ``\\xNN`` where they are not UTF-8).
    """
    if format not in ("auto",) + FORMATS:
        raise ConfigError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    if missing not in ("error", "skip"):
        raise ConfigError(f"missing must be 'error' or 'skip', got {missing!r}")
    root = _check_root(root)
    if format == "auto":
        format = detect_format(root)
    reader = {"deepfashion": _load_deepfashion, "inshop": _load_inshop, "folder": _load_folder}[format]
    parsed = reader(root)
    absent, refused = ([], {}) if parsed.source is None else _check_files(root, parsed)
    if absent:
        _handle_missing(parsed, absent, missing)
    if refused:
        parsed.refused += [(parsed.relpaths[i], reason) for i, reason in refused.items()]
        shown = ", ".join(f"{parsed.relpaths[i]} (line {parsed.lines[i]}: {r})" for i, r in list(refused.items())[:3])
        log.warning("%s: skipping %d listed files that are not regular files: %s", parsed.source, len(refused), shown)
    return _to_frame(root, parsed, format, absent, list(refused))


def summary(items):
    """Count images per label (rows, sorted) and split (columns, "unsplit" for ""), with totals.

    >>> import pandas as pd
    >>> items = pd.DataFrame({"label": ["b", "a", "a"], "split": ["train", "train", "test"]})
    >>> summary(items)  # doctest: +NORMALIZE_WHITESPACE
    split  train  test  total
    label
    a          1     1      2
    b          1     0      1
    total      2     1      3
    """
    import pandas as pd

    present = set(items["split"])
    order = [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))
    counts = pd.crosstab(items["label"], items["split"]).reindex(columns=order, fill_value=0)
    counts = counts.rename(columns={"": "unsplit"}).sort_index()
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum(axis=0)
    counts.index.name, counts.columns.name = "label", "split"
    return counts.astype("int64")


def describe(items) -> str:
    """A short human summary: format, root, counts per split and label, skipped and ignored files."""
    attrs = items.attrs
    splits = items["split"].replace("", "unsplit").value_counts()
    lines = [
        f"format: {attrs.get('format', '?')}   root: {attrs.get('root', '?')}",
        f"images: {len(items)} in {items['label'].nunique()} labels; "
        + ", ".join(f"{name} {count}" for name, count in splits.items()),
    ]
    for key, what in (("missing", "listed images missing (skipped)"), ("ignored", "non-image files ignored")):
        names = attrs.get(key) or []
        if names:
            lines.append(f"{what}: {len(names)} (e.g. {', '.join(names[:_MISSING_SHOWN])})")
    lines += ["", summary(items).to_string()]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- detection


def _check_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError("dataset root is not a directory" if path.exists() else "dataset root not found", path)
    return path.resolve()


def _find_anno_dir(root: Path) -> Path | None:
    """The first of Anno/, Anno_coarse/ that holds list_category_img.txt."""
    for name in _ANNO_DIRS:
        if _present(root / name / "list_category_img.txt"):
            return root / name
    return None


def _present(path: Path) -> bool:
    """Whether an annotation file exists at all (a directory or FIFO there is then refused by
    :func:`_read_lines` with one line, instead of being silently taken for no file)."""
    return os.path.lexists(path)


def _find_inshop_partition(root: Path) -> Path | None:
    """list_eval_partition.txt (root or Eval/) whose header has In-shop's three columns."""
    for path in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"):
        if _present(path):
            try:
                with open_regular(path, MAX_LIST_BYTES, what="annotation file") as f:
                    f.readline()
                    header = f.readline().decode("utf-8", "replace")
            except UnsafeFileError as exc:
                raise DatasetError(f"annotation file {exc.reason}", path) from None
            if len(header.split()) == len(_INSHOP_HEADER):
                return path
    return None


def _has_image_folders(root: Path) -> bool:
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


# ------------------------------------------------------------------------------------ list files


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


def _read_list(path: Path, header: tuple[str, ...], name_ok: Callable[[str], bool]) -> list[_Row]:
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


def _image_name_ok(name: str) -> bool:
    """An image name with spaces is accepted when it still ends with an image suffix."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _category_name_ok(name: str) -> bool:
    """A category name with spaces is accepted unless its last word is a number (an extra column)."""
    return not name.split()[-1].lstrip("-").isdigit()


def _int(text: str, column: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"expected an integer {column}, got {text!r}", path, line) from None


def _index_rows(path: Path, rows: list[_Row], value: Callable[[_Row], object]) -> dict[str, tuple[int, object]]:
    """Map image name → (line, value(row)) in file order; a repeated name is an error."""
    index: dict[str, tuple[int, object]] = {}
    for row in rows:
        line, fields = row
        name = fields[0]
        if name in index:
            raise DatasetError(f"duplicate image {name!r} (first on line {index[name][0]})", path, line)
        index[name] = (line, value(row))
    return index


def _split_word(words: dict[str, str], path: Path) -> Callable[[_Row], str]:
    """Row → normalised split from its last field; unknown words are errors."""

    def parse(row: _Row) -> str:
        line, fields = row
        word = fields[-1]
        if word.lower() not in words:
            raise DatasetError(f"unknown split {word!r}, expected one of {', '.join(sorted(words))}", path, line)
        return words[word.lower()]

    return parse


def _bbox_value(path: Path, first: int) -> Callable[[_Row], tuple[int, int, int, int]]:
    """Row → (x1, y1, x2, y2) from fields ``first..first+3``; negative or empty boxes are errors."""

    def parse(row: _Row) -> tuple[int, int, int, int]:
        names = ("x_1", "y_1", "x_2", "y_2")
        line, fields = row
        x1, y1, x2, y2 = (_int(v, n, path, line) for v, n in zip(fields[first : first + 4], names))
        if min(x1, y1, x2, y2) < 0 or x2 <= x1 or y2 <= y1:
            raise DatasetError(f"bad bbox ({x1}, {y1}, {x2}, {y2}): need 0 <= x_1 < x_2 and 0 <= y_1 < y_2", path, line)
        return (x1, y1, x2, y2)

    return parse


def _join(main: dict, other: dict, main_path: Path, other_path: Path, what: str, required: bool) -> list:
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


# --------------------------------------------------------------------------------------- readers


def _load_deepfashion(root: Path) -> _Parsed:
    """DeepFashion Category & Attribute Prediction: categories, labels, partition, optional bboxes."""
    anno = _find_anno_dir(root)
    if anno is None:
        raise DatasetError("no Anno/list_category_img.txt or Anno_coarse/list_category_img.txt", root)
    categories = _read_categories(anno / "list_category_cloth.txt")
    img_path = anno / "list_category_img.txt"

    def category(row: _Row) -> int:
        line, fields = row
        cid = _int(fields[1], "category_label", img_path, line)
        if not 1 <= cid <= len(categories):
            raise DatasetError(
                f"unknown category id {cid}, list_category_cloth.txt defines 1..{len(categories)}", img_path, line
            )
        return cid

    images = _index_rows(img_path, _read_list(img_path, _IMG_HEADER, _image_name_ok), category)
    ids = [cid for _, cid in images.values()]
    parsed = _Parsed(img_path, list(images), [line for line, _ in images.values()])
    parsed.columns["label"] = [categories[cid - 1][0] for cid in ids]
    parsed.columns["split"] = _deepfashion_splits(root, anno, images, img_path)
    parsed.columns["category_id"] = ids
    parsed.columns["category_type"] = [categories[cid - 1][1] for cid in ids]
    bbox_path = anno / "list_bbox.txt"
    if _present(bbox_path):
        boxes = _index_rows(bbox_path, _read_list(bbox_path, _BBOX_HEADER, _image_name_ok), _bbox_value(bbox_path, 1))
        parsed.columns["bbox"] = _join(images, boxes, img_path, bbox_path, "bbox", required=False)
    return parsed


def _read_categories(path: Path) -> list[tuple[str, int]]:
    """list_category_cloth.txt → [(name, type)], category id = position + 1."""
    categories = []
    for line, (name, kind_text) in _read_list(path, _CLOTH_HEADER, _category_name_ok):
        kind = _int(kind_text, "category_type", path, line)
        if kind not in _CATEGORY_TYPES:
            raise DatasetError(f"category_type must be 1, 2 or 3 (upper, lower, full body), got {kind}", path, line)
        categories.append((name, kind))
    if not categories:
        raise DatasetError("no categories defined", path, 1)
    return categories


def _deepfashion_splits(root: Path, anno: Path, images: dict, img_path: Path) -> list[str]:
    """Split of every image from Eval/ (or Anno/) list_eval_partition.txt; "" when there is none."""
    for path in (root / "Eval" / "list_eval_partition.txt", anno / "list_eval_partition.txt"):
        if _present(path):
            rows = _read_list(path, _PARTITION_HEADER, _image_name_ok)
            splits = _index_rows(path, rows, _split_word(_SPLIT_WORDS, path))
            return _join(images, splits, img_path, path, "split", required=True)
    log.warning("%s: no Eval/list_eval_partition.txt; every split is ''", root)
    return [""] * len(images)


def _load_inshop(root: Path) -> _Parsed:
    """DeepFashion In-shop Clothes Retrieval: item ids, train/query/gallery, label from the path."""
    path = _find_inshop_partition(root)
    if path is None:
        raise DatasetError("no list_eval_partition.txt with columns 'image_name item_id evaluation_status'", root)
    split_of = _split_word(_INSHOP_SPLITS, path)
    images = _index_rows(path, _read_list(path, _INSHOP_HEADER, _image_name_ok), lambda r: (r[1][1], split_of(r)))
    parsed = _Parsed(path, list(images), [line for line, _ in images.values()])
    parsed.columns["label"] = [_inshop_label(name, path, line) for name, (line, _) in images.items()]
    parsed.columns["split"] = [split for _, (_, split) in images.values()]
    parsed.columns["item_id"] = [item for _, (item, _) in images.values()]
    for bbox_path in (root / "Anno" / "list_bbox_inshop.txt", root / "list_bbox_inshop.txt"):
        if _present(bbox_path):
            rows = _read_list(bbox_path, _INSHOP_BBOX_HEADER, _image_name_ok)
            boxes = _index_rows(bbox_path, rows, _bbox_value(bbox_path, 3))
            parsed.columns["bbox"] = _join(images, boxes, path, bbox_path, "bbox", required=False)
            break
    return parsed


def _inshop_label(name: str, path: Path, line: int) -> str:
    """The folder holding the item folder (last ``id_*`` folder, else the image's parent)."""
    folders = name.split("/")[:-1]
    items = [i for i, part in enumerate(folders) if part.startswith("id_")]
    position = (items[-1] if items else len(folders) - 1) - 1
    if position < 0:
        raise DatasetError(f"cannot take a category from {name!r}: expected <category>/<item>/<image>", path, line)
    return folders[position]


def _load_folder(root: Path) -> _Parsed:
    """``ROOT/<class>/...`` or ``ROOT/<split>/<class>/...`` image folders, sorted by relpath."""
    tops = _subdirs(root)
    split_dirs = [d for d in tops if d.name.lower() in _SPLIT_WORDS]
    if split_dirs:
        for other in sorted(set(tops) - set(split_dirs)):
            log.warning("%s: ignoring folder %s/ beside the split folders", root, other.name)
        groups = [(_SPLIT_WORDS[d.name.lower()], c) for d in split_dirs for c in _subdirs(d)]
    else:
        groups = [("", d) for d in tops]
    records, ignored, refused = [], [], []
    for split, class_dir in groups:
        # a symlinked split or class folder, or a symlinked image, must not lead out of the root
        _inside(root, class_dir, class_dir.relative_to(root).as_posix() + "/", root, None)
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
                _inside(root, file, relpath, root, None)
            records.append((relpath, class_dir.name, split))
    records.sort()
    if ignored:
        log.info("%s: ignored %d non-image files (e.g. %s)", root, len(ignored), ", ".join(ignored[:_MISSING_SHOWN]))
    if refused:
        log.warning("%s: skipping %d files that cannot be read as images: %s", root, len(refused),
                    ", ".join(f"{name} ({why})" for name, why in refused[:_MISSING_SHOWN]))
    parsed = _Parsed(None, [r[0] for r in records], [0] * len(records), ignored=sorted(ignored),
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


# ------------------------------------------------------------------------------------ file checks


def _gate(path: Path) -> str | None:
    """Why the file gate refuses ``path`` as an image (bad name, FIFO, symlink loop ...), or None."""
    try:
        check(path)
    except UnsafeFileError as exc:
        return exc.reason
    return None


_ABSENT = "absent"


def _check_files(root: Path, parsed: _Parsed) -> tuple[list[int], dict[int, str]]:
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
            folders[folder] = str(_inside(root, root / folder, written, parsed.source, line))
        if base in (".", ".."):  # the root itself or above it
            _inside(root, root / name, written, parsed.source, line)
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
        path = str(_inside(root, Path(path), name, source, line))
    return kind_problem(mode), path


def _inside(root: Path, path: Path, name: str, source: Path | None, line: int) -> Path:
    """``path`` resolved; a :class:`DatasetError` when it leaves ``root`` or loops."""
    try:
        real = path.resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError on a symlink loop
        raise DatasetError(f"image path '{display(name)}': symlink loop or unreadable path ({exc})", source, line) from None
    if not real.is_relative_to(root):
        raise DatasetError(f"image path {name!r} escapes the dataset root (resolves to {real})", source, line)
    return real


def _handle_missing(parsed: _Parsed, absent: list[int], missing: str) -> None:
    """Raise one error listing the absent images, or drop them (missing="skip")."""
    shown = ", ".join(f"{parsed.relpaths[i]} (line {parsed.lines[i]})" for i in absent[:_MISSING_SHOWN])
    more = f" and {len(absent) - _MISSING_SHOWN} more" if len(absent) > _MISSING_SHOWN else ""
    if missing == "error":
        raise DatasetError(
            f"{len(absent)} of {len(parsed.relpaths)} listed images do not exist: {shown}{more} "
            "(use missing='skip' to drop them)",
            parsed.source,
        )
    log.warning("%s: skipping %d listed images that do not exist: %s%s", parsed.source, len(absent), shown, more)


def _to_frame(root: Path, parsed: _Parsed, format: str, absent: list[int], refused: list[int] = ()):
    """Build the item table, dropping the rows of absent and refused images (already reported)."""
    import pandas as pd

    dropped = set(absent) | set(refused)
    keep = [i for i in range(len(parsed.relpaths)) if i not in dropped]
    if not keep:
        what = "all listed images are missing" if parsed.relpaths else "no images found"
        if parsed.refused:
            what += f"; {len(parsed.refused)} refused, e.g. {parsed.refused[0][0]}: {parsed.refused[0][1]}"
        raise DatasetError(f"empty dataset: {what}", parsed.source or root)
    relpaths = [parsed.relpaths[i] for i in keep]
    data = {"path": [os.path.join(root, *r.split("/")) for r in relpaths], "relpath": relpaths}
    for name in ("label", "split", "item_id", "category_id", "category_type", "bbox"):
        if name in parsed.columns:
            data[name] = [parsed.columns[name][i] for i in keep]
    frame = pd.DataFrame(data)
    log.info("%s: %d images, %d labels (%s)", root, len(frame), len(set(data["label"])), format)
    missing = [parsed.relpaths[i] for i in absent]
    frame.attrs.update(format=format, root=str(root), missing=missing, ignored=list(parsed.ignored),
                       refused=list(parsed.refused))
    return frame
