"""``fashion search PHOTO|FOLDER... --run DIR``: the clothes of a finished run most similar to new photos.

A thin client of :class:`fashion.service.SimilarityService`: the run is opened once (its model rebuilt
with the run's exact settings, checked by checksum), every photo searched in the run's saved index, and
one grid drawn per photo (the photo top-left, then its matches in rank order, neutral frames since a new
photo has no label).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import ConfigError, ImageError
from .filegate import is_regular
from .names import display, unicode_name
from .options import default
from .service import Match, Prediction, SimilarityService

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """A photo's matches (rank order); ok False with the reason when the photo cannot be read."""

    photo: str
    ok: bool
    matches: list[Match] = field(default_factory=list)
    grid: Path | None = None
    reason: str = ""
    prediction: Prediction | None = None
    filters: list[str] = field(default_factory=list)  # the clauses the search was limited by
    ignored: list[str] = field(default_factory=list)  # search words nothing matched
    colour: str | None = None  # the colour mode (same, any, a family) and the photo's own colour family
    query_colour: str | None = None

    def summary(self) -> str:
        """Human lines: the photo, then one line per match (or why it failed); names with newlines, control
        or undecodable bytes are escaped (:func:`fashion.names.display`), so each stays on its line."""
        photo = display(self.photo)
        if not self.ok:
            return f"{photo}: skipped ({display(self.reason)})"
        lines = [f"{photo}:" + (f"  (grid: {display(self.grid)})" if self.grid else "")]
        if self.filters or self.ignored:
            lines.append(f"  only {' and '.join(map(display, self.filters)) or 'every item'}"
                         + (f"; ignored words: {', '.join(map(display, self.ignored))}" if self.ignored else ""))
        if self.prediction is not None:
            lines.append(f"  predicted: {display(self.prediction.label)} ({self.prediction.probability:.2f})")
        if self.colour is not None:
            lines.append(f"  colour: {self.colour} (the photo's: {self.query_colour or 'none found'})")
        lines += [f"  {m.rank:2d}. {display(m.relpath)}  [{display(m.label)}"
                  + (f", {m.colour}" if m.colour and self.colour else "") + f"]  distance {m.distance:.4f}"
                  for m in self.matches]
        return "\n".join(lines)

    def to_json(self) -> dict:
        """JSON-ready dict: photo, ok, reason, grid, prediction, results (as the HTTP API's results); file
        names as valid Unicode (undecodable bytes as ``\\xNN``, never a lone surrogate)."""
        return {"photo": unicode_name(self.photo), "ok": self.ok, "reason": unicode_name(self.reason),
                "grid": unicode_name(self.grid) if self.grid else None,
                "prediction": asdict(self.prediction) if self.prediction else None,
                "filters": list(self.filters), "ignored": list(self.ignored),
                "colour": self.colour, "query_colour": self.query_colour,
                "results": [{**asdict(m), "relpath": unicode_name(m.relpath)} for m in self.matches]}


def expand_photos(photos: Sequence) -> list[str]:
    """Paths as given, each folder replaced by the image files directly inside it (sorted). An entry that
    is not a regular file (a FIFO, socket or device; a broken link), whatever its name, is kept too: the
    search reports it as skipped with the reason instead of dropping it without a word."""
    from .images import IMAGE_EXTENSIONS

    out = []
    for photo in photos:
        path = Path(photo)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if not p.is_dir() and (p.suffix.lower() in IMAGE_EXTENSIONS or not is_regular(p)))
            if not found:
                log.warning("%s: no image files in this folder", path)
            out += [os.fspath(p) for p in found]
        else:
            out.append(os.fspath(photo))
    return out


def _safe_stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60] or "photo"


def _open(run_dir) -> SimilarityService:
    from .service.budget import one_caller

    return SimilarityService.open(run_dir, warm=False, limits=one_caller())


def search_text(text: str, run_dir, k: int = default("k"), filters=None, service: SimilarityService | None = None):
    """``fashion search --text WORDS`` without photos: the first ``k`` items the words (and ``filters``)
    match, best first by the run's classifier for the category asked (:meth:`SimilarityService.items`);
    an :class:`~fashion.service.ItemPage` whose ``ignored`` lists the words nothing matched."""
    from .service import MAX_PAGE

    if k < 1:
        raise ConfigError(f"k must be positive, got {k}")
    service = service or _open(run_dir)
    return service.items(filters=filters, text=text, limit=min(k, MAX_PAGE))


def search(photos: Sequence, run_dir, k: int = default("k"), output_dir=None, grids: bool = True,
           service: SimilarityService | None = None, filters=None, text: str | None = None,
           colour: str | None = None) -> list[SearchResult]:
    """Find the top-``k`` items of the run at ``run_dir`` for every photo.

    Args:
        photos: image paths (str/Path) or folders of images; unreadable ones come back with ok=False
            and the reason.
        run_dir: output directory of a finished retrieval run.
        k: matches per photo (at most the size of the run's index).
        output_dir: where the grids go (default ``run_dir/search``).
        grids: draw one grid PNG per photo.
        service: an already open service of ``run_dir`` (default: open it here).
        filters: clauses of :mod:`fashion.filters` (``label=dress``, ``price<100``), ANDed; text: search
            words that become more clauses (:mod:`fashion.textquery`): only the matching items are searched.
        colour: a colour mode, ``same``, ``any`` or a colour family (:mod:`fashion.service.colourmode`).

    Returns:
        one :class:`SearchResult` per photo, in order.
    """
    from .atomic import save_image
    from .report import neighbor_grid

    if k < 1:
        raise ConfigError(f"k must be positive, got {k}")
    photos = expand_photos(photos)
    if not photos:
        raise ConfigError("no photos given (or only empty folders)")
    if service is None:
        service = _open(run_dir)
    service.filter.select(filters, text)  # a bad clause: one line before any photo is read
    try:
        service.colours.check(colour)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    k = min(k, service.n_gallery)
    out = Path(output_dir) if output_dir is not None else Path(run_dir) / "search"
    results = []
    for n, photo in enumerate(photos):
        try:
            found = service.search_image(photo, k=k, filters=filters, text=text, colour=colour)
        except ImageError as exc:
            results.append(SearchResult(photo, False, reason=exc.reason))
            continue
        grid_path = None
        if grids:
            paths = [os.fspath(service.run.items["path"].iat[m.id]) for m in found.results]
            image = neighbor_grid(photo, paths, [m.label for m in found.results],
                                  [m.distance for m in found.results], [None] * len(found.results),
                                  query_label="new photo")
            grid_path = save_image(out / f"search_{n:03d}_{_safe_stem(photo)}.png", image)
        results.append(SearchResult(photo, True, found.results, grid_path, prediction=found.prediction,
                                    filters=found.filters, ignored=found.ignored, colour=found.colour,
                                    query_colour=found.query_colour))
    bad = sum(not r.ok for r in results)
    log.info("searched %d photos (%d unreadable) in %s, k=%d", len(photos), bad, run_dir, k)
    return results
