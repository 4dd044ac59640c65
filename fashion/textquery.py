"""Shoppers' words → filters: "red summer dress, not black, under 50" parsed into a structured query.

This is a structured query, not a language model: each word or phrase is looked up in a vocabulary
built from the run — its category labels and their common names (tee, t shirt, jeans, trousers,
sneakers, coat …), the colour families and common colour words (navy, burgundy, cream …), the values
of the item table's text columns (a brand, a season) — plus ``not`` / ``no`` / ``without`` in front of
a term, and ``under`` / ``over`` + a number for a ``price`` column. Phrases of up to three words are
matched longest first, plurals included. Every word that matched nothing is returned in
:attr:`TextQuery.ignored`, so a page or the CLI can show it back: nothing is dropped silently.

>>> q = parse("red summer dress, not black", labels=["dress", "shirt"])
>>> q.labels, q.colours, q.not_colours, q.ignored
(('dress',), ('red',), ('black',), ('summer',))
>>> [str(c) for c in q.clauses()]
['label in dress', 'colour in red', 'colour not in black']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .filters import Clause

COLOUR_COLUMN = "colour"  # the item table's colour family (fashion.colour.stage)
PRICE_COLUMN = "price"
MAX_TEXT = 500  # characters: a search box, not a document
MAX_PHRASE = 3  # words in the longest vocabulary phrase

# common names of clothing categories, by the group's canonical name; a group applies to a run when one of
# its names is one of the run's labels (clothing-dataset-small: t-shirt, longsleeve, outwear …; DeepFashion:
# Tee, Blouse, Jeans …), and then every name of the group means that label
CATEGORY_NAMES: dict[str, tuple[str, ...]] = {
    "t-shirt": ("t-shirt", "t shirt", "tshirt", "tee", "tee shirt"),
    "longsleeve": ("longsleeve", "long sleeve", "long-sleeve", "long sleeved", "sweater", "sweatshirt", "jumper",
                   "pullover", "hoodie", "cardigan"),
    "outwear": ("outwear", "outerwear", "coat", "jacket", "parka", "blazer", "anorak", "windbreaker", "raincoat"),
    "pants": ("pants", "trousers", "jeans", "chinos", "slacks", "leggings", "joggers", "sweatpants"),
    "shoes": ("shoes", "shoe", "sneakers", "trainers", "boots", "sandals", "heels", "loafers", "footwear"),
    "hat": ("hat", "cap", "beanie", "bucket hat"),
    "shirt": ("shirt", "blouse", "button down", "button-down", "dress shirt", "polo"),
    "shorts": ("shorts", "bermuda", "bermudas"),
    "skirt": ("skirt", "miniskirt", "mini skirt"),
    "dress": ("dress", "gown", "sundress", "frock"),
}

# colour words → the palette's family (fashion.colour.palette.FAMILIES, plus multicolour)
COLOUR_WORDS: dict[str, str] = {
    **{f: f for f in ("black", "white", "grey", "beige", "brown", "red", "pink", "orange", "yellow", "green",
                      "blue", "navy", "purple", "multicolour")},
    "gray": "grey", "charcoal": "grey", "silver": "grey", "ash": "grey",
    "cream": "beige", "ivory": "beige", "off white": "beige", "off-white": "beige", "tan": "beige",
    "camel": "beige", "khaki": "beige", "sand": "beige", "nude": "beige",
    "chocolate": "brown", "coffee": "brown", "mocha": "brown", "rust": "brown",
    "burgundy": "red", "maroon": "red", "wine": "red", "crimson": "red", "scarlet": "red", "cherry": "red",
    "rose": "pink", "magenta": "pink", "fuchsia": "pink", "blush": "pink",
    "coral": "orange", "peach": "orange", "apricot": "orange",
    "mustard": "yellow", "gold": "yellow", "lemon": "yellow",
    "olive": "green", "mint": "green", "lime": "green", "emerald": "green", "khaki green": "green",
    "teal": "blue", "turquoise": "blue", "sky blue": "blue", "light blue": "blue", "royal blue": "blue",
    "navy blue": "navy", "dark blue": "navy", "midnight blue": "navy",
    "violet": "purple", "lilac": "purple", "lavender": "purple", "plum": "purple",
    "multicolor": "multicolour", "multi-colour": "multicolour", "multi-color": "multicolour",
    "multicoloured": "multicolour", "multicolored": "multicolour", "colourful": "multicolour",
    "colorful": "multicolour",
}
NEGATIONS = ("not", "no", "without", "except", "non")
BELOW, ABOVE = ("under", "below", "cheaper than", "less than", "max", "up to"), ("over", "above", "more than", "min")
_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*|\d+(?:\.\d+)?", re.UNICODE)


def _norm(text: str) -> str:
    """Lower case, ``_`` and runs of spaces as one space (so ``long_sleeve`` and ``Long Sleeve`` agree)."""
    return " ".join(str(text).casefold().replace("_", " ").split())


def _singular(word: str) -> tuple[str, ...]:
    """The forms a plural may come from: dresses → dress, shirts → shirt, jeans stays jeans."""
    forms = [word]
    if word.endswith("es") and len(word) > 4:
        forms.append(word[:-2])
    if word.endswith("s") and len(word) > 3:
        forms.append(word[:-1])
    return tuple(forms)


@dataclass(frozen=True)
class TextQuery:
    """A parsed search text: wanted / excluded labels and colour families, metadata clauses (a text
    column's value, a price bound) and the words nothing matched (:attr:`ignored`, in text order)."""

    text: str
    labels: tuple[str, ...] = ()
    not_labels: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    not_colours: tuple[str, ...] = ()
    filters: tuple[Clause, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the text asked for nothing this run knows (every word ignored)."""
        return not (self.labels or self.not_labels or self.colours or self.not_colours or self.filters)

    def clauses(self, colour_column: str = COLOUR_COLUMN) -> list[Clause]:
        """The query as :mod:`fashion.filters` clauses, to be ANDed."""
        out = []
        if self.labels:
            out.append(Clause("label", "in", self.labels))
        if self.not_labels:
            out.append(Clause("label", "not in", self.not_labels))
        if self.colours:
            out.append(Clause(colour_column, "in", self.colours))
        if self.not_colours:
            out.append(Clause(colour_column, "not in", self.not_colours))
        return out + list(self.filters)


@dataclass
class Vocabulary:
    """phrase (normalised) → (kind, value): kind "label", "colour" or a metadata column's name."""

    terms: dict = field(default_factory=dict)

    @classmethod
    def build(cls, labels: Iterable[str] = (), values: Mapping[str, Iterable[str]] | None = None,
              colours: bool = True) -> "Vocabulary":
        """From the run's labels (with their common names), the colour words, and ``values``: column →
        its distinct text values (a brand, a season); a run's own labels win over everything else."""
        terms: dict = {}
        for column, column_values in (values or {}).items():
            for value in column_values:
                if isinstance(value, str) and _norm(value):
                    terms.setdefault(_norm(value), (column, value))
        if colours:
            terms.update({_norm(w): ("colour", family) for w, family in COLOUR_WORDS.items()})
        by_name = {_norm(label): label for label in labels}
        for names in CATEGORY_NAMES.values():
            matches = [by_name[_norm(n)] for n in names if _norm(n) in by_name]
            if matches:
                terms.update({_norm(n): ("label", matches[0]) for n in names})
        terms.update({name: ("label", label) for name, label in by_name.items()})
        return cls(terms)

    def lookup(self, words: list[str]) -> tuple[int, tuple | None]:
        """(words used, (kind, value)) for the longest phrase at the start of ``words`` (its last word
        also tried in singular form); (1, None) if none."""
        for n in range(min(MAX_PHRASE, len(words)), 0, -1):
            head = " ".join(words[:n - 1] + [""])
            for last in _singular(words[n - 1]):
                term = self.terms.get(head + last)
                if term is not None:
                    return n, term
        return 1, None


def _number(word: str) -> float | None:
    try:
        return float(word.lstrip("$€£"))
    except ValueError:
        return None


def parse(text: str, labels: Iterable[str] = (), values: Mapping[str, Iterable[str]] | None = None,
          numeric: Iterable[str] = (), colours: bool = True, vocabulary: Vocabulary | None = None) -> TextQuery:
    """Parse ``text`` against a run's ``labels``, its text columns' ``values`` (column → values) and its
    ``numeric`` column names (``under 50`` needs a ``price`` column among them); ``colours=False`` when
    the run has no colour columns (colour words are then ignored and shown as such). ``vocabulary``: the
    run's :meth:`Vocabulary.build`, made once by a caller that parses many texts (then ``labels``,
    ``values`` and ``colours`` are not read)."""
    text = str(text)[:MAX_TEXT]
    vocab = Vocabulary.build(labels, values, colours) if vocabulary is None else vocabulary
    words = [_norm(w) for w in _WORD.findall(text.replace("$", " "))]
    wanted: dict[str, list] = {"label": [], "not_label": [], "colour": [], "not_colour": []}
    filters: list[Clause] = []
    ignored: list[str] = []
    negate, i = False, 0
    has_price = PRICE_COLUMN in set(numeric)
    while i < len(words):
        word = words[i]
        if word in NEGATIONS:
            negate, i = True, i + 1
            continue
        bound = next((b for b in BELOW + ABOVE if words[i:i + len(b.split())] == b.split()), None)
        if bound and has_price and i + len(bound.split()) < len(words):
            number = _number(words[i + len(bound.split())])
            if number is not None:
                op = "<=" if bound in BELOW else ">="
                filters.append(Clause(PRICE_COLUMN, op, (f"{number:g}",)))
                i += len(bound.split()) + 1
                continue
        used, term = vocab.lookup(words[i:])
        if term is None:
            ignored.append(word)
        elif term[0] in ("label", "colour"):
            key = ("not_" if negate else "") + term[0]
            if term[1] not in wanted[key]:
                wanted[key].append(term[1])
        else:
            filters.append(Clause(term[0], "!=" if negate else "=", (term[1],)))
        if term is not None:
            negate = False  # a negation covers the next term it meets only
        i += used
    return TextQuery(text, tuple(wanted["label"]), tuple(wanted["not_label"]), tuple(wanted["colour"]),
                     tuple(wanted["not_colour"]), tuple(filters), tuple(ignored))
