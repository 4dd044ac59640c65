"""A finished retrieval run, loaded once and queried many times (the Python API behind `fashion serve`).

>>> svc = SimilarityService.open("out")                       # doctest: +SKIP
>>> svc.search_image("my_photo.jpg", k=5).results[0].label    # doctest: +SKIP
'Shirt'

:meth:`SimilarityService.open` reads a ``measure_sim.py`` / ``fashion neighbors`` output directory
(read and checked as a whole by :func:`fashion.run.reader.open_run`): the item table, the saved index, the embeddings
(memory-mapped, not copied), and rebuilds the embedder with the run's exact settings from ``run.json``
(same weights, checked by checksum; same size, layer, precision and runtime). When the run used a
trained classifier (``--model``), photo searches also carry its predicted category.

Items are addressed by their integer id: the ``id`` of the run's item table (``items/``). Files are
only ever opened through that table, and only when they resolve inside the run's dataset root, so a
caller can never make the service read a path it chose. Every answer is a plain dataclass
(:func:`dataclasses.asdict` gives its JSON).

Modules: :mod:`.loading` rebuilds the run's embedder and reads its model's reports,
:mod:`.query` holds :class:`SimilarityService` (search by photo or id), which answers browsing from
:mod:`.browse` and hands out image files and thumbnails through :mod:`.files`; :mod:`.answers` holds the
dataclasses it returns; :mod:`.columns` holds the item table's string columns without a Python string
per row (labels shared, paths read by id from Arrow).
"""

from __future__ import annotations

from ..rundir import RunDirError  # one class for every refused run directory
from .answers import Item, ItemNotFound, ItemPage, LabelStat, Match, Prediction, SearchResponse, Suspect
from .loading import embedder_for
from .browse import MAX_PAGE
from .files import THUMB_SIZE
from .query import MAX_K, SimilarityService

__all__ = ["SimilarityService", "embedder_for", "RunDirError", "ItemNotFound", "Item",
           "Match", "Prediction", "SearchResponse", "ItemPage", "LabelStat", "Suspect", "MAX_K", "MAX_PAGE",
           "THUMB_SIZE"]
