"""Hand-labelled garment colours (``tests/data/colour_labels.csv``) and the accuracy of the colour code on them.

The CSV's columns are ``relpath`` (under a clothing-dataset-small root), ``family``, ``family_2`` (optional),
``split`` (``dev`` / ``holdout`` / ``fit``: the photos the colour-family model is fitted on, with ``dev`` /
``spare``: labelled like ``fit`` but not fitted on, an unseen set beside ``holdout``) and ``note``; its
labelling rules are in ``colour_labels.md`` beside it.
Photos are found under a clothing-dataset-small root, or, for the rows of its ``test`` split, in the
package's bundled sample (made from that split; its ``SOURCE.md`` maps every file to its source).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .palette import ALL_FAMILIES

FIELDS = ("relpath", "family", "family_2", "split", "note")
SPLITS = ("dev", "holdout", "fit", "spare")


@dataclass(frozen=True)
class ColourLabel:
    """One labelled photo."""

    relpath: str
    family: str
    family_2: str | None
    split: str
    note: str = ""


def read_labels(path: str | os.PathLike) -> list[ColourLabel]:
    """The labels of a colour-labels CSV; DatasetError (file:line) for a malformed row."""
    path = Path(path)
    labels: list[ColourLabel] = []
    seen: set[str] = set()
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise DatasetError(f"expected the columns {', '.join(FIELDS)}, got {reader.fieldnames}", path, 1)
        for row in reader:
            line = reader.line_num
            family, family_2 = row["family"], row["family_2"] or None
            for value in (family, family_2):
                if value is not None and value not in ALL_FAMILIES:
                    raise DatasetError(f"unknown colour family {value!r} (one of {', '.join(ALL_FAMILIES)})", path, line)
            if row["split"] not in SPLITS:
                raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {row['split']!r}", path, line)
            if row["relpath"] in seen:
                raise DatasetError(f"{row['relpath']} is labelled twice", path, line)
            seen.add(row["relpath"])
            labels.append(ColourLabel(row["relpath"], family, family_2, row["split"], row["note"]))
    return labels


def sample_sources(sample_root: str | os.PathLike) -> dict[str, Path]:
    """Source relpath (``test/<class>/<name>.jpg``) -> file of the bundled sample, from its SOURCE.md."""
    root = Path(sample_root)
    mapping: dict[str, Path] = {}
    for line in (root / "SOURCE.md").read_text(encoding="utf-8").splitlines():
        if "  <-  " in line:
            local, source = (part.strip() for part in line.split("  <-  ", 1))
            mapping[source] = root / local
    return mapping


def locate(labels: list[ColourLabel], dataset_root: str | os.PathLike | None,
           sample_root: str | os.PathLike | None = None) -> list[Path | None]:
    """The photo file of each label: under ``dataset_root`` when it is a directory, else from the bundled
    sample at ``sample_root`` (the ``test`` split only); None where neither has it."""
    root = Path(dataset_root) if dataset_root is not None else None
    if root is not None and root.is_dir():
        return [root / label.relpath if (root / label.relpath).is_file() else None for label in labels]
    sources = sample_sources(sample_root) if sample_root is not None else {}
    return [sources.get(label.relpath) for label in labels]


def agreement(first: list[ColourLabel], second: list[ColourLabel]) -> tuple[int, float, float]:
    """Two labellers' agreement on the photos both labelled: (how many, the share where their families are
    the same, the share where either's family is one of the other's two families)."""
    other = {label.relpath: label for label in second}
    pairs = [(label, other[label.relpath]) for label in first if label.relpath in other]
    if not pairs:
        return 0, float("nan"), float("nan")
    same = sum(a.family == b.family for a, b in pairs)
    near = sum(a.family in (b.family, b.family_2) or b.family in (a.family, a.family_2) for a, b in pairs)
    return len(pairs), same / len(pairs), near / len(pairs)


@dataclass
class Score:
    """Accuracy of predicted (family, family_2) against labels: ``n``, ``top1`` and ``top2`` (the label is the
    predicted family or runner-up) counts, ``either`` (the predicted family is the label's family or the
    labeller's own second family, which the protocol gives borderline shades) and
    ``confusion[(label, predicted)]`` counts."""

    n: int = 0
    top1: int = 0
    top2: int = 0
    either: int = 0
    confusion: Counter = field(default_factory=Counter)

    def add(self, label: str, family: str, family_2: str | None, label_2: str | None = None) -> None:
        self.n += 1
        self.top1 += family == label
        self.top2 += label in (family, family_2)
        self.either += family in (label, label_2)
        self.confusion[(label, family)] += 1

    def merge(self, other: "Score") -> None:
        """Add ``other``'s counts to these."""
        self.n += other.n
        self.top1 += other.top1
        self.top2 += other.top2
        self.either += other.either
        self.confusion.update(other.confusion)

    @property
    def top1_accuracy(self) -> float:
        return self.top1 / self.n if self.n else float("nan")

    @property
    def top2_accuracy(self) -> float:
        return self.top2 / self.n if self.n else float("nan")

    @property
    def either_accuracy(self) -> float:
        return self.either / self.n if self.n else float("nan")
