"""The insight part of the HTTP API (issue #14): duplicate clusters (leaks first), the embedding map and
the neighbour label suspects of a run, from the run's ``duplicates.csv``, ``map.csv`` and ``suspects.csv``
(written by measure_sim's insight stage; empty when it was turned off) as the service read them at open.

- ``GET /api/duplicates?offset=&limit=`` → ``{"summary", "total", "offset", "limit", "clusters": [{"cluster",
  "leak", "splits", "labels", "items": [{"id", "relpath", "label", "split"}], "pairs": [{"a", "b", "distance",
  "method"}]}]}``
- ``GET /api/map`` → ``{"method", "n", "points": [{"id", "x", "y", "label", "duplicate", "suspect"}]}``
- ``GET /api/knn-suspects`` → ``{"suspects": [{"id", "relpath", "label", "own_share", "neighbor_label",
  "neighbor_share"}]}``

Ids are the run's item ids, the same ids every other endpoint takes; nothing is read from a request but
integers. A served run that switches version (:class:`fashion.service.live.LiveService`, issue 28) answers
from the tables of the version it serves now: they are read again, once, at the first request after a swap
(a change carries them without its removed items, :mod:`fashion.catalog.insight`).
"""

from __future__ import annotations

import logging
import threading

from fastapi import FastAPI, Query

log = logging.getLogger(__name__)

MAX_CLUSTERS = 200


class InsightData:
    """The run's insight tables, as the service read them at open (never read from the directory here:
    after a rerun into the served directory, the map and the counts still come from one run)."""

    def __init__(self, service):
        import pandas as pd

        from ..insight.page import cluster_order

        self.service = service
        tables = service.run.insight
        n = service.n_items
        dups = tables.get("duplicates.csv")
        if dups is not None:  # only ids of this run's items
            dups = dups[dups["a"].between(0, n - 1) & dups["b"].between(0, n - 1)]
        self.duplicates = dups if dups is not None else pd.DataFrame(columns=["cluster", "a", "b"])
        self.order = cluster_order(self.duplicates) if len(self.duplicates) else []
        layout = tables.get("map.csv")
        self.map = layout[layout["id"].between(0, n - 1)] if layout is not None else None
        suspects = tables.get("suspects.csv")
        self.suspects = suspects[suspects["id"].between(0, n - 1)] if suspects is not None else None
        self.summary = service.metrics.get("insight")

    def _item(self, i: int) -> dict:
        it = self.service.item(int(i))
        return {"id": it.id, "relpath": it.relpath, "label": it.label, "split": it.split}

    def clusters(self, offset: int, limit: int) -> dict:
        out = []
        for c in self.order[offset:offset + limit]:
            pairs = self.duplicates[self.duplicates["cluster"] == c]
            members = sorted(set(pairs["a"].astype(int)) | set(pairs["b"].astype(int)))
            items = [self._item(i) for i in members]
            splits = sorted({i["split"] for i in items})
            out.append({"cluster": int(c), "leak": len(splits) > 1, "splits": splits,
                        "labels": sorted({i["label"] for i in items}), "items": items,
                        "pairs": [{"a": int(r.a), "b": int(r.b), "distance": float(r.distance), "method": str(r.method)}
                                  for r in pairs.itertuples()]})
        summary = (self.summary or {}).get("duplicates")
        return {"summary": summary, "total": len(self.order), "offset": offset, "limit": limit, "clusters": out}

    def points(self) -> dict:
        if self.map is None:
            return {"method": None, "n": 0, "points": []}
        dup = set(self.duplicates["a"].astype(int)) | set(self.duplicates["b"].astype(int))
        sus = set(self.suspects["id"].astype(int)) if self.suspects is not None else set()
        labels = [self.service.item(int(i)).label for i in self.map["id"]]
        points = [{"id": int(i), "x": float(x), "y": float(y), "label": lab, "duplicate": int(i) in dup,
                   "suspect": int(i) in sus} for i, x, y, lab in zip(self.map["id"], self.map["x"], self.map["y"], labels)]
        method = ((self.summary or {}).get("map") or {}).get("method")
        return {"method": method, "n": len(points), "points": points}

    def knn_suspects(self) -> dict:
        if self.suspects is None:
            return {"suspects": []}
        return {"suspects": [{"id": int(r.id), "relpath": self.service.item(int(r.id)).relpath, "label": str(r.label),
                              "own_share": float(r.own_share), "neighbor_label": str(r.neighbor_label),
                              "neighbor_share": float(r.neighbor_share)} for r in self.suspects.itertuples()]}


class CurrentInsight:
    """The :class:`InsightData` of the version ``service`` serves now: a live service's current version
    (its ``current``), read again when that changes; a plain service's, read once."""

    def __init__(self, service):
        self.service = service
        self._lock = threading.Lock()
        self._of, self._data = None, None

    def __call__(self) -> InsightData:
        current = getattr(self.service, "current", self.service)
        with self._lock:
            if self._of is not current:
                self._data, self._of = InsightData(current), current
            return self._data


def add_insight_routes(app: FastAPI, service) -> None:
    """Register the insight endpoints on ``app`` (see the module docstring)."""
    data = CurrentInsight(service)
    data()  # read at start: a bad table is refused before the server answers

    @app.get("/api/duplicates")
    def duplicates(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=MAX_CLUSTERS)) -> dict:
        return data().clusters(offset, limit)

    @app.get("/api/map")
    def embedding_map() -> dict:
        return data().points()

    @app.get("/api/knn-suspects")
    def knn_suspects() -> dict:
        return data().knn_suspects()
