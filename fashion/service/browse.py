"""Browsing a run's items: :class:`Browser` (pages of items by label, name, filter clauses and search
words; the labels with their counts and precision; the skipped images; the trained model's suspects)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .answers import Item, ItemPage, LabelStat, Suspect
from .columns import LazyStrings, shared_strings
from .filtering import ItemFilter, rank_by_category

MAX_PAGE = 200


class Browser:
    """The item table's columns as arrays and what is answered from them alone (no network, no index).

    items: the run's item table; metrics: its metrics.json; root: the dataset root (skipped paths are
    shown relative to it); scores: a function giving :func:`~.filtering.category_scores` (None: words rank
    by id), called once, by the first query that ranks by category (a pass over every stored vector:
    seconds at 1M items, so not at start); reports: (suspect_labels table or None, trust block or None)
    of the run's trained model; colours: (colour family, swatch hex) arrays, "" where an item has none
    (:class:`~.colourmode.ColourModes`).
    """

    def __init__(self, items, metrics: dict, root: Path, scores=None, reports: tuple = (None, None),
                 colours: tuple | None = None):
        import threading

        import pandas as pd

        # no Python string per row at start (.columns): labels and splits share their few strings,
        # paths and relpaths stay in Arrow and are read by id
        self.item_labels = shared_strings(items["label"])
        self.relpaths = LazyStrings(items["relpath"])
        self.splits = shared_strings(items["split"])
        self.paths = LazyStrings(items["path"])
        self.ok = items["ok"].to_numpy(dtype=bool)
        self.usable = np.flatnonzero(self.ok)
        self.metrics, self.root = metrics, Path(root)
        self._score_fn, self._scores, self._scores_lock = scores, None, threading.Lock()
        self.colours = colours if colours is not None else (np.full(len(items), ""),) * 2
        self.filter = ItemFilter(items, self.usable)  # filter= clauses and search words → allowed ids
        self._lower_relpaths = None  # made by the first text filter (seconds at 1M items), not at start
        # hashing, not np.unique's sort of a million Python strings (seconds at 1M items)
        by_label = pd.Series(self.item_labels[self.usable]).value_counts().sort_index()
        precision = metrics.get("per_label_precision", {})
        queries = metrics.get("per_label_queries", {})
        self._label_stats = [LabelStat(str(n), int(c), precision.get(str(n)), int(queries.get(str(n), 0)))
                             for n, c in zip(by_label.index.to_numpy(), by_label.to_numpy())]
        table, self.trust = reports
        self._suspects = self._match_suspects(table)

    @property
    def scores(self):
        """(scores, class names) of :func:`~.filtering.category_scores`, or None; computed on first use."""
        with self._scores_lock:
            if self._score_fn is not None:
                self._scores, self._score_fn = self._score_fn(), None
            return self._scores

    def item(self, i: int) -> Item:
        return Item(i, str(self.relpaths[i]), str(self.item_labels[i]), str(self.splits[i]),
                    self.colours[0][i] or None, self.colours[1][i] or None)

    def items(self, label: str | None = None, q: str | None = None, offset: int = 0, limit: int = 50,
              filters=None, text: str | None = None, facets: bool = False) -> ItemPage:
        """See :meth:`fashion.service.SimilarityService.items`."""
        if not 0 <= int(offset) or not 1 <= int(limit) <= MAX_PAGE:
            raise ValueError(f"offset must be >= 0 and limit from 1 to {MAX_PAGE}, got {offset}, {limit}")
        selection = self.filter.select(filters, text)
        ids = self.usable if selection.ids is None else selection.ids
        if label:
            ids = ids[self.item_labels[ids] == label]
        if q:
            if self._lower_relpaths is None:
                self._lower_relpaths = np.char.lower(self.relpaths.to_numpy().astype(str))
            ids = ids[np.char.find(self._lower_relpaths[ids], q.lower()) >= 0]
        if selection.labels and self.scores is not None:
            ids = rank_by_category(ids, selection.labels, *self.scores)
        page = ids[int(offset):int(offset) + int(limit)]
        return ItemPage(len(ids), int(offset), int(limit), [self.item(int(i)) for i in page],
                        filters=selection.applied, ignored=selection.ignored,
                        facets=self.filter.facets(ids) if facets else None)

    def labels(self) -> list[LabelStat]:
        return list(self._label_stats)

    def skipped(self) -> list[dict]:
        """The run's skipped images ({path, reason}) with paths shown relative to the dataset root."""
        out = []
        for entry in self.metrics.get("skipped", [])[:1000]:
            path = str(entry.get("path", "")) if isinstance(entry, dict) else str(entry)
            try:
                path = os.path.relpath(path, self.root) if os.path.isabs(path) else path
            except ValueError:
                pass
            out.append({"path": path, "reason": str(entry.get("reason", "")) if isinstance(entry, dict) else ""})
        return out

    def suspects(self) -> list[Suspect]:
        return list(self._suspects)

    def _match_suspects(self, table) -> list[Suspect]:
        if table is None:
            return []
        by_path = {os.path.abspath(p): i for i, p in enumerate(self.paths.to_numpy())}
        out = []
        for row in table.itertuples(index=False):
            i = by_path.get(os.path.abspath(str(row.path)))
            if i is not None:  # only the run's own items: served by id like every other image
                out.append(Suspect(i, str(self.relpaths[i]), str(row.label), str(row.predicted),
                                   float(row.label_prob), float(row.predicted_prob)))
        return out
