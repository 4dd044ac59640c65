"""Filters, words and facets over a run's item table, for :class:`~fashion.service.SimilarityService`.

One :class:`ItemFilter` per open run: it turns ``filter=`` clauses (:mod:`fashion.filters`) and a
search box's words (:mod:`fashion.textquery`) into the sorted ids a search may return (handed to the
index as ``allowed``: selected during the search, never a post-filter of a fixed top-k), ranks the
items of a words-only query, and counts the facets of a set of items. The columns a filter may name
are the item table's, less the ones that say where a file lies on disk (``path``, ``reason``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .. import filters as grammar
from .. import textquery

HIDDEN = ("path", "reason")  # where the file lies on this disk: not a filter, not a facet
NOT_FACETS = ("id", "relpath", "ok", "role", "colour_hex", "colour_share", "sha256", "file_size") + HIDDEN  # colour_hex: a swatch; the last two: fashion add's duplicate check
MAX_FACET_VALUES = 30  # a text column with more distinct values is a search term, not a facet
MAX_VOCABULARY_VALUES = 5000  # distinct values of a text column that the search box's words may name
SCORE_ROWS = 65_536  # embeddings scored per block at open
MASK_CACHE = 128  # clause masks kept (a text clause over 100k items costs ~25 ms; a facet click repeats it)


@dataclass
class Selection:
    """What a request's filters and words select: ``ids`` (sorted; None: every usable item), the clauses
    applied (as text), the words nothing matched, and the label the words asked for (for ranking)."""

    ids: np.ndarray | None
    applied: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    labels: tuple[str, ...] = ()


class ItemFilter:
    """The filterable view of one run's item table (``items``: its DataFrame, ``usable``: usable ids)."""

    def __init__(self, items, usable: np.ndarray):
        self.table = _booleans(items.drop(columns=[c for c in HIDDEN if c in items.columns]).reset_index(drop=True))
        self.usable = np.asarray(usable, dtype=np.int64)
        self._vocabulary = None
        self._facets = None
        self._masks: OrderedDict[grammar.Clause, np.ndarray] = OrderedDict()
        self._masks_lock = threading.Lock()

    def select(self, filters=None, text: str | None = None) -> Selection:
        """The usable items every clause of ``filters`` (text or :class:`~fashion.filters.Clause`, ANDed)
        and the words of ``text`` keep; :class:`~fashion.filters.FilterError` (one line) when a clause
        does not parse or fit the table."""
        clauses = grammar.parse_all(filters)
        ignored, labels = [], ()
        if text is not None and str(text).strip():
            words = self.parse_text(text)
            clauses += words.clauses()
            ignored, labels = list(words.ignored), words.labels
        if not clauses:
            return Selection(None, [], ignored, labels)
        keep = np.ones(len(self.table), dtype=bool)
        for clause in clauses:
            keep &= self._mask(clause)
        return Selection(self.usable[keep[self.usable]], [str(c) for c in clauses], ignored, labels)

    def _mask(self, clause: grammar.Clause) -> np.ndarray:
        """The rows ``clause`` keeps (read-only), from a small LRU cache of recent clauses."""
        with self._masks_lock:
            if clause in self._masks:
                self._masks.move_to_end(clause)
                return self._masks[clause]
        keep = grammar.clause_mask(self.table, clause)
        keep.flags.writeable = False
        with self._masks_lock:
            self._masks[clause] = keep
            while len(self._masks) > MASK_CACHE:
                self._masks.popitem(last=False)
        return keep

    def parse_text(self, text: str) -> textquery.TextQuery:
        """The search box's words against this run: its labels, text columns' values, numeric columns and
        (only where the table has them) colour families."""
        if self._vocabulary is None:
            values, numeric = {}, []
            for column in self.table.columns:
                if column in NOT_FACETS or column == "label":
                    continue
                kind = grammar.column_kind(self.table[column])
                if kind == "number":
                    numeric.append(column)
                elif kind == "text":
                    distinct = self.table[column].dropna().astype(str).unique()
                    if len(distinct) <= MAX_VOCABULARY_VALUES:
                        values[column] = [v for v in distinct if v]
            labels = sorted(set(self.table["label"].astype(str)))
            colours = textquery.COLOUR_COLUMN in self.table.columns
            self._vocabulary = (textquery.Vocabulary.build(labels, values, colours), numeric)
        vocabulary, numeric = self._vocabulary
        return textquery.parse(text, numeric=numeric, vocabulary=vocabulary)

    def facets(self, ids: np.ndarray | None = None) -> list[dict]:
        """Facets of the items ``ids`` (default: every usable item): per column with few values
        ``{"column", "kind", "values": [{"value", "count"}]}`` (most frequent first), per number or date
        column ``{"column", "kind", "min", "max"}``."""
        import pandas as pd

        rows = self.table.iloc[self.usable if ids is None else np.asarray(ids, dtype=np.int64)]
        out = []
        for column, kind in self._facet_columns():
            series = rows[column].dropna()
            if kind in ("number", "date"):
                low, high = (series.min(), series.max()) if len(series) else (None, None)
                if kind == "date":
                    low, high = (None if pd.isna(v) else pd.Timestamp(v).isoformat() for v in (low, high))
                else:
                    low, high = (None if v is None else float(v) for v in (low, high))
                out.append({"column": str(column), "kind": kind, "min": low, "max": high})
                continue
            if kind == "text":
                series = series.astype(str)
                series = series[series.str.len() > 0]
            counts = series.value_counts(sort=True)
            values = [{"value": (str(v).lower() if kind == "bool" else str(v)), "count": int(c)}
                      for v, c in counts.items()]
            out.append({"column": str(column), "kind": kind, "values": values})
        return out

    def _facet_columns(self) -> list[tuple[str, str]]:
        """(column, kind) of the table's facet columns: a fact of the whole table, found once (the kind
        and the distinct-value count of every column over all items are not redone per request)."""
        if self._facets is None:
            found = []
            for column in self.table.columns:
                if column in NOT_FACETS:
                    continue
                kind = grammar.column_kind(self.table[column])
                if kind not in ("number", "date") and self.table[column].nunique(dropna=True) > MAX_FACET_VALUES:
                    continue
                found.append((column, kind))
            self._facets = found
        return self._facets


def _booleans(table):
    """``table`` with each object column that holds only booleans and nulls (parquet reads a boolean
    column with empty cells so) as pandas' nullable boolean, which filters and facets read as booleans."""
    for column in table.columns:
        if table[column].dtype == object:
            present = table[column].dropna()
            if len(present) and all(isinstance(v, (bool, np.bool_)) for v in present):
                table[column] = table[column].astype("boolean")
    return table


def category_scores(run, classifier=None, embedder=None) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """((n_items, n_classes) scores of the trained model's categories for every item, its class names),
    from the stored embeddings through the trained head's last layer (:func:`class_scores`, numpy), when
    the run embedded with that head's penultimate features (``layer`` head) of a single model; None
    otherwise (then words rank by id). The last layer comes from, in order: a saved network's
    ``class_weights`` (no torch), ``classifier`` (the run's model when already loaded), ``embedder``'s
    one-pass classifier (:attr:`~fashion.embedding.Embedder.classes`, the same last layer: the model is not
    loaded again), else the run's ``model_dir`` (read once, at open).

    The embeddings are stored at unit length, so the scores keep the classifier's order of the categories
    for each item but are softmaxed at a different temperature than a fresh prediction of the photo."""
    described = run.info.get("embedder", {})
    if described.get("layer") != "head" or not described.get("model_dir"):
        return None
    if classifier is None and getattr(embedder, "class_weights", None) is not None:  # a saved network: no torch
        (weight, bias), names = embedder.class_weights, embedder.class_names
    else:
        from ..heads import last_layer, linear_arrays

        if classifier is None and embedder is not None and getattr(embedder, "classes", None) is not None \
                and embedder.layer == "head":
            last, names = embedder.classes, embedder.class_names  # the embedder loaded this model already
        else:
            if classifier is None:
                from ..modelio import load_model

                classifier = load_model(described["model_dir"])
            if classifier.is_ensemble:
                return None
            last, names = last_layer(classifier.head), tuple(classifier.classes)
        weight, bias = linear_arrays(last)
    if weight.shape[1] != run.embeddings.shape[1]:
        return None
    return class_scores(run.embeddings, weight, bias), tuple(names)


def class_scores(vectors, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(n, c) float32 softmax of the logits ``vectors @ weight.T + bias`` of (n, d) stored vectors (memory-
    mapped, read a block of :data:`SCORE_ROWS` at a time): the one softmax of the category scores.

    >>> class_scores(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), np.zeros(2, np.float32)).round(3)
    array([[0.731, 0.269],
           [0.269, 0.731]], dtype=float32)
    """
    scores = np.empty((len(vectors), len(weight)), dtype=np.float32)
    for start in range(0, len(scores), SCORE_ROWS):
        logits = np.array(vectors[start:start + SCORE_ROWS], dtype=np.float32) @ weight.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        scores[start:start + len(logits)] = logits / logits.sum(axis=1, keepdims=True)
    return scores


def rank_by_category(ids: np.ndarray, labels: tuple[str, ...], scores: np.ndarray | None, classes) -> np.ndarray:
    """``ids`` best first by the score of the asked ``labels`` (the highest of them per item), ties by id;
    in id order when there are no scores or no asked label among the classifier's classes."""
    columns = [list(classes).index(label) for label in labels if label in list(classes)] if scores is not None else []
    if not columns or not len(ids):
        return ids
    score = scores[ids][:, columns].max(axis=1)
    return ids[np.lexsort((ids, -score))]
