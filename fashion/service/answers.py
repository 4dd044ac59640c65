"""What the service answers: plain dataclasses (:func:`dataclasses.asdict` gives their JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FashionError


class ItemNotFound(FashionError, LookupError):
    """No usable item (or image file) with that id."""


@dataclass
class Item:
    """One row of the run's item table (``colour``, ``colour_hex``: its colour family and swatch, None
    where the run has none)."""

    id: int
    relpath: str
    label: str
    split: str
    colour: str | None = None
    colour_hex: str | None = None


@dataclass
class Match:
    """One neighbour: rank (1-based), item id, its relpath and label, distance to the query, its colour
    family and swatch (None where the run has none)."""

    rank: int
    id: int
    relpath: str
    label: str
    distance: float
    colour: str | None = None
    colour_hex: str | None = None


@dataclass
class Prediction:
    """The trained classifier's category for a photo, its probability, and the top 3."""

    label: str
    probability: float
    top: list[dict] = field(default_factory=list)


@dataclass
class SearchResponse:
    """Matches of one query in rank order; ``prediction`` only for photos and runs with ``--model``."""

    k: int
    results: list[Match]
    prediction: Prediction | None = None
    query_id: int | None = None
    filters: list[str] = field(default_factory=list)  # the clauses applied (filter= and the words')
    ignored: list[str] = field(default_factory=list)  # words of the search text nothing matched
    colour: str | None = None  # the colour mode (same, any or a family; fashion.service.colourmode)
    query_colour: str | None = None  # the query's colour family (its photo's, or the item's)


@dataclass
class ItemPage:
    """A page of items (after the label / file-name filters) and how many match in all."""

    total: int
    offset: int
    limit: int
    items: list[Item]
    filters: list[str] = field(default_factory=list)  # the clauses applied (filter= and the words')
    ignored: list[str] = field(default_factory=list)  # words of the search text nothing matched
    facets: list[dict] | None = None  # the matching items' facets, when asked for


@dataclass
class LabelStat:
    """A label: how many usable items carry it, and the run's precision@k for its queries (None: no query)."""

    label: str
    count: int
    precision: float | None
    queries: int = 0


@dataclass
class Suspect:
    """An item whose label the trained model disputes (the training's suspect_labels.csv)."""

    id: int
    relpath: str
    label: str
    predicted: str
    label_prob: float
    predicted_prob: float
