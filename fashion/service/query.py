"""The query API of a finished run: :class:`SimilarityService` (search by photo or id, browse, thumbnails)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from ..metrics import check_k
from .answers import Item, ItemNotFound, ItemPage, LabelStat, Match, Prediction, SearchResponse, Suspect
from .batcher import MicroBatcher
from .browse import Browser
from .colourmode import ColourModes
from .budget import Limits, MemoryBudget, photo_cost
from .files import THUMB_SIZE, ImageFiles
from ..run.checks import dataset_root
from ..run.layout import uploads_dir
from ..run.index import load as load_index
from ..run.reader import Run, open_run, pinned
from .filtering import category_scores
from .loading import embedder_for, read_model_reports

log = logging.getLogger("fashion.service")

MAX_K = 100
_K_LIMIT = "the most a request may ask for"  # k beyond the gallery's size is fine: fewer come back
DECODERS = 2  # photos decoded and resized at the same time (the network and index run one at a time): at
# c = 16 the resize's ~5 MB of int32 blocks a photo are held by two photos at most (no CPU change measured)
MAX_BATCH = 4  # photos in one network call (micro-batching, .batcher): with one inference thread the cost a
# photo is flat past batch 2-4 (benchmarks/photo_cpu.py), and every size is one more warm-up call at start


class SimilarityService:
    """Search a finished run by photo or by item id, and browse its items. Build with :meth:`open`.

    Thread-safe: the network runs one call at a time, the photos that wait for it together in one batch
    (:class:`~.batcher.MicroBatcher`), and a lock serialises the index (the cores are the bottleneck, and
    concurrent BLAS/OpenMP calls would only fight over them; an id query never waits for a photo's
    forward pass). Photos are decoded (large JPEGs at a reduced scale) and resized to the network's input
    outside both, at most ``DECODERS`` at a time. With a trained single model, one pass of the network gives the vector and the class
    prediction (:meth:`~fashion.embedding.Embedder.classify`); an ensemble's prediction is its classifier's
    own second pass. A photo search holds its place in :attr:`budget` (:mod:`.budget`) from before
    decoding until the network is done.

    Everything answered comes from what :meth:`open` read at start (one version of the run, even when
    the directory is replaced by a rerun meanwhile); only the dataset's image files are read later.
    """

    def __init__(self, run: Run, embedder, classifier=None, root: Path | None = None,
                 limits: Limits | None = None, reports: tuple | None = None):
        self.run, self.embedder, self.classifier = run, embedder, classifier
        self.path = run.path
        self.root = Path(root) if root is not None else dataset_root(run.info, run.path / "run.json")
        self._id_of = run.gallery_ids  # the ids the index holds
        self.uploads = uploads_dir(run.path).resolve()  # photos added over HTTP (fashion.catalog.uploads)
        self._batcher = MicroBatcher(self._network_batch, max_batch=MAX_BATCH)
        self._index_lock = threading.Lock()
        self._network_lock = threading.Lock()  # the batcher's calls and warm(): one at a time
        self._decoding = threading.BoundedSemaphore(DECODERS)
        self.budget = MemoryBudget(limits or Limits())
        self.max_pixels = self.budget.limits.max_pixels
        self.colours = ColourModes(run, self._id_of)  # colour=same|any|<family> (.colourmode)
        # the item table's columns, browsing, filters and the model's reports (.browse)
        self.browse = Browser(run.items, self.metrics, self.root, colours=(self.colours.family, self.colours.hex),
                              scores=lambda: category_scores(run, classifier, embedder),  # words rank by these
                              reports=reports if reports is not None else read_model_reports(run.info))
        self.filter = self.browse.filter
        self._labels, self._relpaths, self._ok = self.browse.item_labels, self.browse.relpaths, self.browse.ok
        self._in_index = np.zeros(len(self._labels), dtype=bool)
        self._in_index[self._id_of] = True
        self.files = ImageFiles(self.browse.paths, self._ok, self.root, self.budget, self._decoding, self.uploads)

    @classmethod
    def open(cls, run_dir, warm: bool = True, limits: Limits | None = None) -> "SimilarityService":
        """Load the run at ``run_dir`` once (see the module docstring); ``warm`` runs dummy photos through
        the network (:meth:`warm`) so the first real query is not the slow one: while the index is still
        being read in its thread (the two overlap on two cores), so that a service ``open`` returns answers
        every query at full speed; ``limits``: the memory budget of photo searches
        (:class:`~fashion.service.budget.Limits`)."""
        from concurrent.futures import ThreadPoolExecutor

        start = time.perf_counter()
        # every run file is read inside pinned(): one version of the directory, or a refusal
        with pinned(run_dir), ThreadPoolExecutor(1) as pool:
            # the cheap checks first: refuse a bad dir at once; the item table from its mapped copy (.itemcache)
            run = open_run(run_dir, load_index=False, cache_items=True, stored_lists=True)
            index = pool.submit(load_index, run)  # read the index (I/O, no GIL) while the model's imports run
            reports = read_model_reports(run.info)
            embedder = embedder_for(run.info, run.path)
            classifier = None
            model_dir = run.info["embedder"].get("model_dir")
            if model_dir and not embedder.can_classify:  # else the embedder's one pass predicts
                from ..modelio import load_model

                classifier = load_model(model_dir)
            if warm:  # every batch size's first call, while the index loads
                _warm_network(embedder, classifier)
            run.index = index.result()
        service = cls(run, embedder, classifier, limits=limits, reports=reports)
        log.info("opened %s: %d items, %d indexed (%s), model %s, in %.2f s", run.path, len(run.items),
                 len(service._id_of), run.index.name, embedder.name, time.perf_counter() - start)
        return service

    # ---------------------------------------------------------------------------------- facts

    @property
    def n_items(self) -> int:
        """Rows of the item table (ids are 0..n_items-1)."""
        return len(self._labels)

    @property
    def n_gallery(self) -> int:
        return len(self._id_of)

    @property
    def metrics(self) -> dict:
        return self.run.metrics

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes a photo search predicts (empty without a trained model)."""
        if self.classifier is not None:
            return tuple(self.classifier.classes)
        return self.embedder.class_names if self.embedder.can_classify else ()

    def warm(self) -> None:
        """Run the network once at each batch size it may get (a runtime prepares each shape on its
        first call), so the first queries and the first burst of them are not slow ones."""
        _warm_network(self.embedder, self.classifier, self._network_lock)

    def describe(self) -> dict:
        """What /healthz reports: item count, model and index."""
        desc = self.run.info["embedder"]
        model = desc.get("arch", "?") + (f" (trained: {Path(desc['model_dir']).name})" if desc.get("model_dir") else "")
        return {"items": self.n_items, "gallery": self.n_gallery, "model": model, "layer": desc.get("layer"),
                "index": self.run.index.name, "metric": self.run.index.metric,
                "classifier": bool(self.class_names)}

    def item(self, item_id) -> Item:
        return self.browse.item(self._check_id(item_id))

    # ---------------------------------------------------------------------------------- search

    def search_image(self, image, k: int = 10, filters=None, text: str | None = None,
                     colour: str | None = None) -> SearchResponse:
        """The ``k`` gallery items nearest to a photo: a path, bytes of an image file, or a PIL image.

        ``filters``: clauses of :mod:`fashion.filters` (``label=dress``, ``price<100``; ANDed), ``text``:
        a search box's words (:mod:`fashion.textquery`) that become more clauses; the search is then over
        the matching items only (k results whenever k match, the nearest of them). A clause that does not
        parse or fit the item table is a :class:`~fashion.filters.FilterError` (a ValueError), raised
        before the photo is read. ``colour``: a colour mode, ``same``, ``any`` or a colour family
        (:mod:`.colourmode`; the photo's colour is computed as the run's items' are).

        Raises :class:`~fashion.errors.ImageError` when it cannot be decoded, is over ``max_pixels``
        (from its header, before decoding) or gives no features; :class:`~fashion.service.budget.Busy`
        when the memory budget has no room for it within its wait.
        """
        from PIL import Image

        from ..errors import ImageError
        from ..images import image_info, open_image, open_image_bytes, to_rgb

        k = check_k(k, MAX_K, what=_K_LIMIT)
        selection = self.filter.select(filters, text)
        mode = self.colours.check(colour)
        name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<upload>"
        data = bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else None
        if isinstance(image, Image.Image):
            pixels = image.width * image.height
        else:
            pixels = image_info(name, data, max_pixels=self.max_pixels).pixels  # the header: nothing decoded
        size = self.embedder.size  # a large JPEG is decoded at a reduced scale, down to the network's input
        with self.budget.hold(photo_cost(pixels)):  # its decoded pixels are bounded until the network is done
            with self._decoding:  # a few photos decoded and resized at once: no thrash under load
                if isinstance(image, Image.Image):
                    picture = to_rgb(image)
                elif data is not None:
                    picture = open_image_bytes(data, max_pixels=self.max_pixels, strict=True, min_size=size)
                else:
                    picture = open_image(name, max_pixels=self.max_pixels, strict=True, min_size=size)
                net_input = network_input(self.embedder, picture)
            # an ensemble's own resize and the colour's ~5 ms hold no decode slot (thumbnails wait on them)
            small = self._classifier_input(picture)
            family = self.colours.of_picture(picture) if mode is not None else None
            del picture  # only the network's inputs are kept past here
            vector, probs = self._batcher((net_input, small))
        if not np.isfinite(vector).all() or float(vector @ vector) <= 0:
            raise ImageError(name, "no features: the image gives an all-zero embedding (blank image?)")
        prediction = self._prediction(probs) if probs is not None else None
        results = (self._search(vector, k, exclude=None, allowed=selection.ids) if mode is None else
                   self.colours.search(mode, vector, k, None, selection.ids, family, self._search, self._match,
                                       prediction.label if prediction is not None else None))
        return SearchResponse(len(results), results, prediction, filters=selection.applied,
                              ignored=selection.ignored, colour=mode, query_colour=family)

    def _classifier_input(self, picture):
        """The photo squished to the separate classifier's input size (an ensemble's; predict's own resize of
        a picture already at that size is the identity), or None: no classifier, or the one-pass network."""
        if self.classifier is None:
            return None
        from PIL import Image

        from ..resize import resize_image

        return Image.fromarray(resize_image(picture, self.classifier.size, "squish"))

    def neighbors_of(self, item_id, k: int = 10, filters=None, text: str | None = None,
                     colour: str | None = None) -> SearchResponse:
        """The ``k`` gallery items nearest to item ``item_id`` (itself left out), among the items that
        ``filters`` and ``text`` keep, in the ``colour`` mode (as :meth:`search_image`; the query's colour
        is the item's own)."""
        i, k = self._check_id(item_id), check_k(k, MAX_K, what=_K_LIMIT)
        selection = self.filter.select(filters, text)
        mode = self.colours.check(colour)
        if not self._ok[i]:
            raise ItemNotFound(f"item {i} ({self._relpaths[i]}) was skipped by the run: it has no embedding")
        if mode is None and selection.ids is None:
            stored = self._stored(i, k)
            if stored is not None:
                return SearchResponse(len(stored), stored, None, query_id=i, filters=selection.applied,
                                      ignored=selection.ignored, colour=None, query_colour=None)
        vector = self.run.vectors([i])[0].astype(np.float32)  # pread, not the map (fashion.rowreader.RowReader)
        exclude = i if self._in_index[i] else None
        family = (self.colours.family[i] or None) if mode is not None else None
        results = (self._search(vector, k, exclude=exclude, allowed=selection.ids) if mode is None else
                   self.colours.search(mode, vector, k, exclude, selection.ids, family, self._search, self._match,
                                       self.predicted_category(i)))
        return SearchResponse(len(results), results, None, query_id=i, filters=selection.applied,
                              ignored=selection.ignored, colour=mode, query_colour=family)

    def _stored(self, i: int, k: int) -> list[Match] | None:
        """Item ``i``'s first ``k`` neighbours from the run's stored lists, where they answer as its index
        search does (:mod:`fashion.run.listcache`: the same ids and distances, read by id, no search);
        None where the run keeps none for ``i`` or fewer than ``k``."""
        lists = self.run.lists
        found = lists.get(i, k) if lists is not None else None
        if found is None:
            return None
        ids, dist = found
        return [self._match(rank, j, d) for rank, (j, d) in enumerate(
            ((j, d) for j, d in zip(ids.tolist(), dist.tolist()) if j >= 0), 1)]

    def _search(self, vector: np.ndarray, k: int, exclude: int | None, allowed=None) -> list[Match]:
        want = min(k + (exclude is not None), self.n_gallery)
        if allowed is not None:  # the filter's items in the index, selected during the search
            allowed = allowed[self._in_index[allowed]]
            want = min(want, len(allowed))
            if want == 0:
                return []
        with self._index_lock:
            one_openmp_thread()
            dist, ids = (self.run.index.search(vector[None, :], want) if allowed is None
                         else self.run.index.search(vector[None, :], want, allowed=allowed))
        matches, rank = [], 0
        for d, i in zip(dist[0].tolist(), ids[0].tolist()):
            if i == exclude or i < 0 or rank == k:
                continue
            rank += 1
            matches.append(self._match(rank, i, float(d)))
        return matches

    def predicted_category(self, i: int) -> str | None:
        """The trained classifier's category for item ``i`` (from its stored vector), None without one."""
        scores = self.browse.scores
        return None if scores is None else str(scores[1][int(np.argmax(scores[0][i]))])

    def _match(self, rank: int, i: int, distance: float) -> Match:
        return Match(rank, i, str(self._relpaths[i]), str(self._labels[i]), distance,
                     self.colours.family[i] or None, self.colours.hex[i] or None)

    def _network_batch(self, items: list) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """[(uint8 (S, S, 3) network input, classifier input or None)] → [((d,) float32 vector, (c,) class
        probabilities or None)]: one call of the network for the whole batch (the micro-batcher's function)."""
        with self._network_lock:
            return _infer(self.embedder, self.classifier, items)

    def _prediction(self, probs: np.ndarray) -> Prediction:
        order = np.argsort(-probs)[:3]
        classes = self.class_names
        top = [{"label": str(classes[c]), "probability": float(probs[c])} for c in order]
        return Prediction(top[0]["label"], top[0]["probability"], top)

    # ---------------------------------------------------------------------------------- browse, files

    def items(self, label: str | None = None, q: str | None = None, offset: int = 0, limit: int = 50,
              filters=None, text: str | None = None, facets: bool = False) -> ItemPage:
        """Usable items (not skipped) in id order, optionally of one ``label``, whose relpath contains
        ``q`` (case-insensitive) and that ``filters`` and the words of ``text`` keep (as
        :meth:`search_image`); ``limit`` at most 200. When the words name a category and the run has a
        trained classifier, the items come best first by its score for that category (else by id); the
        words nothing matched are in ``ignored``. ``facets``: also count the matching items' facets."""
        return self.browse.items(label, q, offset, limit, filters=filters, text=text, facets=facets)

    def labels(self) -> list[LabelStat]:
        """Every label of the usable items, with its count and the run's per-label precision@k."""
        return self.browse.labels()

    def skipped(self) -> list[dict]:
        """The run's skipped images ({path, reason}) with paths shown relative to the dataset root."""
        return self.browse.skipped()

    def suspects(self) -> list[Suspect]:
        """Items of this run that the trained model's suspect-labels report flags (empty without one)."""
        return self.browse.suspects()

    def suspects_trust(self) -> dict | None:
        """How far the suspects report can be trusted, from the training's metrics.json ("suspect_labels":
        model_accuracy, min_accuracy, reliable, caveat: a plain sentence when the model is too weak); None
        when the run has no trained model or its metrics.json lacks the block. Read at open."""
        return self.browse.trust

    def image_file(self, item_id) -> Path:
        """The item's image file, resolved; only a regular file inside the dataset root or the run's uploads
        (a symlink that leaves them is refused). Raises :class:`ItemNotFound`."""
        return self.files.path(self._check_id(item_id))

    def image_file_checked(self, item_id) -> tuple[Path, str]:
        """:meth:`image_file` and its media type, once its header shows an image of the kind its name in
        the item table says (a hard link to a text file named ``.jpg`` is refused). Raises ItemNotFound."""
        return self.files.checked(self._check_id(item_id))

    def thumbnail(self, item_id, size: int = THUMB_SIZE) -> bytes:
        """A JPEG of the item's image at most ``size`` px a side (kept in memory, never on disk)."""
        return self.files.thumbnail(self._check_id(item_id), size)

    def _check_id(self, item_id) -> int:
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            raise ItemNotFound(f"item ids are integers, got {item_id!r}")
        if not 0 <= int(item_id) < self.n_items:
            raise ItemNotFound(f"no item {item_id}: ids are 0..{self.n_items - 1}")
        return int(item_id)


_THREAD = threading.local()


def one_openmp_thread() -> None:
    """One OpenMP thread for faiss' work on this thread (the setting is per thread), set once per thread.

    One query is a small search (a few cells, a re-rank of tens of rows): a team of threads buys nothing
    and, on cores the network and other requests keep busy, each parallel region waits for a descheduled
    team member: a 100k IVF search took 16 ms of wall time with two threads against 1.3 ms with one, at
    load 7 on two cores (benchmarks/README.md, "photo and id queries near the floor")."""
    if not getattr(_THREAD, "one", False):
        import faiss

        faiss.omp_set_num_threads(1)
        _THREAD.one = True


def _warm_network(embedder, classifier=None, lock=None) -> None:
    """Dummy photos through the network (and a separate classifier) at every batch size the
    micro-batcher may give it, each call under ``lock`` when given, and one resize (its imports)."""
    import contextlib

    from PIL import Image

    from ..resize import resize_image

    picture = np.full((embedder.size, embedder.size, 3), (128, 100, 90), dtype=np.uint8)
    network_input(embedder, Image.fromarray(np.vstack([picture, picture])))  # a resize's imports (scipy.sparse)
    small = None if classifier is None else Image.fromarray(resize_image(picture, classifier.size, "squish"))
    for n in range(1, MAX_BATCH + 1):
        with lock or contextlib.nullcontext():
            _infer(embedder, classifier, [(picture, small)] * n)


def _infer(embedder, classifier, items: list) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """One network call (and one of a separate classifier) for a batch of (network input, classifier
    input) pairs: the batch path of real queries and of the warm-up alike."""
    vectors, probs = embedder.infer(np.stack([pixels for pixels, _ in items]))
    if classifier is not None:
        probs = classifier.predict([small for _, small in items]).numpy()
    return [(vectors[i], None if probs is None else probs[i]) for i in range(len(items))]


def network_input(embedder, picture) -> np.ndarray:
    """The network's uint8 (size, size, 3) input of one RGB picture, resized as ``Embedder.embed`` does."""
    from ..resize import resize_image

    return resize_image(picture, embedder.size, embedder.resize)
