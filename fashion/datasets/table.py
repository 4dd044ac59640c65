"""The item table: :class:`ItemTable` (a DataFrame, one row per image, and where it came from), the
rows a reader parsed before the file checks (:class:`Parsed`), and the summaries of a table."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("fashion.datasets")

FORMATS = ("deepfashion", "inshop", "folder")
SPLITS = ("train", "valid", "test", "query", "gallery")
SPLIT_WORDS = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
MISSING_SHOWN = 5  # names shown in a message or summary about skipped files
COLUMNS = ("label", "split", "item_id", "category_id", "category_type", "bbox")  # after path, relpath


@dataclass(frozen=True, eq=False)
class ItemTable:
    """What :func:`fashion.datasets.load` returns: the item table and where it came from.

    ``frame``: a pandas.DataFrame, one row per image, index 0..n-1, columns ``path`` (absolute),
    ``relpath`` (posix, relative to ``root``), ``label``, ``split``, then where the format has them
    ``item_id`` (str), ``category_id`` / ``category_type`` (int) and ``bbox`` (``(x1, y1, x2, y2)``
    or None). ``format``: one of :data:`FORMATS`; ``root``: the resolved dataset root. Files left
    out of ``frame`` (each already logged): ``missing``, relpaths listed but absent
    (``missing="skip"``); ``ignored``, non-image files in folders; ``refused``, (relpath, reason) of
    image files the file gate refused (a FIFO, a directory, a symlink loop, a name that is not UTF-8,
    escaped with ``\\xNN``).

    Steps that need only the columns (embedding, training, insight) take ``frame``; a run takes the
    table, so the dataset's root, format and skipped files reach its report.
    """

    frame: "pd.DataFrame"
    format: str
    root: str
    missing: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, rows) -> "ItemTable":
        """The rows at positions ``rows`` (in the order given), index reset to 0..n-1, the rest kept."""
        return dataclasses.replace(self, frame=self.frame.iloc[rows].reset_index(drop=True))


@dataclass
class Parsed:
    """Rows read from one format before the file checks: relpaths, their lines and other columns."""

    source: Path | None  # the annotation file rows come from (None for folders)
    relpaths: list[str]
    lines: list[int]
    columns: dict[str, list] = field(default_factory=dict)  # label, split, then optional columns
    ignored: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason): files the gate refused


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
    return SPLIT_WORDS.get(word, word)


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


def describe(table: ItemTable) -> str:
    """A short human summary: format, root, counts per split and label, skipped and ignored files."""
    items = table.frame
    splits = items["split"].replace("", "unsplit").value_counts()
    lines = [
        f"format: {table.format}   root: {table.root}",
        f"images: {len(items)} in {items['label'].nunique()} labels; "
        + ", ".join(f"{name} {count}" for name, count in splits.items()),
    ]
    for names, what in ((table.missing, "listed images missing (skipped)"), (table.ignored, "non-image files ignored")):
        if names:
            lines.append(f"{what}: {len(names)} (e.g. {', '.join(names[:MISSING_SHOWN])})")
    lines += ["", summary(items).to_string()]
    return "\n".join(lines)


def build_table(root: Path, parsed: Parsed, format: str, absent: list[int], refused: list[int] = ()) -> ItemTable:
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
    for name in COLUMNS:
        if name in parsed.columns:
            data[name] = [parsed.columns[name][i] for i in keep]
    frame = pd.DataFrame(data)
    log.info("%s: %d images, %d labels (%s)", root, len(frame), len(set(data["label"])), format)
    return ItemTable(frame, format, str(root), missing=tuple(parsed.relpaths[i] for i in absent),
                     ignored=tuple(parsed.ignored), refused=tuple(parsed.refused))
