"""The public composition: :class:`Embedder` builds the network for a backbone or a trained model and
runs the reader → net → writer pipeline over a table of items, serving what it can from the cache."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..resize import RESIZES
from . import pipeline
from .cache import ChunkCache, cache_key
from .reader import ImageDataset, paths_and_boxes
from .spec import DEFAULT_ARCH, EmbedderSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

log = logging.getLogger("fashion.embedding")

LAYERS = ("body", "head")
PRECISIONS = ("auto", "fp32", "bf16")
RUNTIMES = ("auto", "torch", "openvino", "openvino-int8")  # openvino-int8: opt-in, see .int8
# runtime="auto" converts to OpenVINO from this many images on: below a few hundred images the
# one-off conversion costs more than it saves (benchmarks/README.md)
OPENVINO_MIN_IMAGES = 512
DEFAULT_CHUNK_SIZE = 1024
NO_FEATURES = "no features: the image gives an all-zero embedding (blank image?)"
NON_FINITE = "non-finite features: the model gives NaN or infinity for this image"


@dataclass
class EmbeddingResult:
    """Output of :meth:`Embedder.embed`.

    vectors: (n, d) float32, unit L2 norm where ``ok``, zeros elsewhere; ok: (n,) bool;
    failures: [(path, reason)] of the rows where ok is False, in item order;
    n_cached / n_computed: rows served from the cache / run through the network; seconds: wall time;
    timing: seconds per pipeline stage (read, net, write) of the computed rows.
    """

    vectors: np.ndarray
    ok: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_cached: int = 0
    n_computed: int = 0
    seconds: float = 0.0
    timing: dict = field(default_factory=dict)


class Embedder:
    """A network body (+ optional head part) that maps images to L2-normalised float32 vectors.

    Build it with :meth:`from_spec`, :meth:`create`, :meth:`from_backbone` or :meth:`from_model_dir`;
    :attr:`spec` describes what was built. Attributes:
    name (arch), size (px), mean/std (3-tuples), checksum (sha256 hex of the weights), layer
    ("body"/"head"), precision ("fp32"/"bf16", resolved), runtime ("auto"/"torch"/"openvino"),
    source (where the weights came from), model_dir (trained model directory or None), crop (bbox
    crop by default, from model.json), resize ("crop" for pretrained backbones, "squish" for trained models).
    """

    def __init__(self, body: "nn.Module", *, name: str, size: int, mean, std, checksum: str,
                 layer: str = "body", head: "nn.Module | None" = None, source: str = "",
                 model_dir=None, precision: str = "auto", crop: bool = False, resize: str = "crop",
                 runtime: str = "auto", classes: "nn.Module | None" = None, class_names=()):
        from . import net

        if layer not in LAYERS:
            raise ConfigError(f"layer must be one of {LAYERS}, got {layer!r}")
        if layer == "head" and head is None:
            raise ConfigError("layer='head' needs a trained model (--model DIR): a pretrained backbone has no "
                             "trained head; use layer='body'")
        if resize not in RESIZES:
            raise ConfigError(f"resize must be one of {RESIZES}, got {resize!r}")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if runtime.startswith("openvino") and not net.openvino_available():
            raise ConfigError(f"runtime={runtime!r} needs the openvino package: pip install openvino "
                              "(or use runtime='torch')")
        if runtime == "openvino-int8":
            from .int8 import nncf_available

            if not nncf_available():
                raise ConfigError("runtime='openvino-int8' needs NNCF: pip install 'fashion[int8]' (the nncf "
                                 "package), or use runtime='openvino'")
        if int(size) < 8:
            raise ConfigError(f"size must be at least 8 pixels, got {size}")
        self.name, self.size, self.layer, self.source = name, int(size), layer, source
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.checksum, self.model_dir, self.crop, self.resize = checksum, model_dir, bool(crop), resize
        if precision == "auto":
            precision = "bf16" if net.bf16_supported() else "fp32"
        self.precision, self.runtime = precision, runtime
        self._body, self._head = body.eval(), (head.eval() if head is not None else None)
        # the trained classifier's last part (net.EmbeddingNet's ``classes``) and its class names: the
        # vector and the prediction of a photo from one pass (classify); None without a trained model
        self._classes = classes.eval() if classes is not None else None
        self.class_names = tuple(str(c) for c in class_names) if classes is not None else ()
        self._torch = None  # net.TorchRuntime over the prepared network, built on first use
        self._openvino = None  # net.OpenVINORuntime, converted on first use
        self._classify = None  # the runtime of the network with the classes output, built on first use
        self._dim: int | None = None
        self._calibration: dict | None = None  # openvino-int8: the calibration set (int8.calibration_set)
        self._int8_dir: Path | None = None  # openvino-int8: where the quantised network is kept

    # ---------------------------------------------------------------------------------- builders

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> "Embedder":
        """The embedder ``spec`` describes; :class:`~fashion.errors.FashionError` when the spec names a
        weights checksum and the weights found now differ (a run's model retrained since)."""
        embedder = cls.create(model=spec.model_dir, arch=spec.arch, layer=spec.layer, size=spec.size,
                              precision=spec.precision, runtime=spec.runtime)
        spec.check_checksum(embedder.checksum)
        return embedder

    @classmethod
    def create(cls, model=None, arch: str = DEFAULT_ARCH, layer: str = "auto", size: int | None = None,
               precision: str = "auto", pretrained: bool = True, weights=None, runtime: str = "auto") -> "Embedder":
        """A trained model directory when ``model`` is given, else the (pretrained) backbone ``arch``.

        ``layer="auto"``: the trained head's penultimate features when there is a trained model (they
        retrieve better, benchmarks/README.md), else the pooled body features.
        """
        if layer == "auto":
            layer = "head" if model is not None else "body"
        if model is not None:
            return cls.from_model_dir(model, layer=layer, size=size, precision=precision, runtime=runtime)
        if layer != "body":
            raise ConfigError("layer='head' needs a trained model (--model DIR); a pretrained backbone "
                             "has no trained head")
        return cls.from_backbone(arch, pretrained=pretrained, weights=weights, size=size, precision=precision,
                                 runtime=runtime)

    @classmethod
    def from_backbone(cls, name: str = DEFAULT_ARCH, pretrained: bool = True, weights=None,
                      size: int | None = None, precision: str = "auto", runtime: str = "auto") -> "Embedder":
        """Body of a registered backbone (``fashion.backbones.create_backbone``)."""
        from ..backbones import create_backbone
        from ..rundir import file_sha256
        from .net import state_dict_sha256

        body, cfg = create_backbone(name, pretrained=pretrained, weights=weights)
        checksum = file_sha256(weights) if weights is not None else state_dict_sha256(body)
        return cls(body, name=cfg.name, size=size or cfg.input_size, mean=cfg.mean, std=cfg.std,
                   checksum=checksum, source=cfg.source, precision=precision, runtime=runtime)

    @classmethod
    def from_model_dir(cls, path, layer: str = "body", size: int | None = None,
                       precision: str = "auto", runtime: str = "auto") -> "Embedder":
        """A `fashion train` output directory, via :func:`fashion.modelio.load_model`."""
        from ..heads import last_layer
        from ..modelio import load_model, weights_sha256

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"model directory not found: {path}")
        loaded = load_model(path)
        info = loaded.info
        body, head = loaded.embedding_parts(layer)
        size = int(size or info.input_size)
        classes = None  # one pass for vector and prediction where it is the classifier's own computation
        if info.one_pass(size):
            classes = last_layer(loaded.head) if layer == "head" else loaded.head
        return cls(body, name=info.arch, size=size, mean=info.mean, std=info.std,
                   checksum=weights_sha256(loaded.weights_path), layer=layer,
                   head=head, source=f"trained:{path}",
                   model_dir=os.fspath(path.resolve()), precision=precision, crop=info.crop == "bbox",
                   resize="squish", runtime=runtime,  # the transform fashion.training trains with
                   classes=classes, class_names=info.classes)

    @property
    def spec(self) -> EmbedderSpec:
        """What was built, every field resolved: :meth:`from_spec` of it rebuilds this embedder."""
        return EmbedderSpec(arch=self.name, model_dir=self.model_dir, layer=self.layer, size=self.size,
                            crop=self.crop, runtime=self.runtime, precision=self.precision, checksum=self.checksum)

    def describe(self) -> dict:
        """JSON-ready description (run.json's ``embedder`` block): :attr:`spec` (from which
        :meth:`from_spec` rebuilds this embedder) and what follows from it (mean, std, source, resize, dim)."""
        return {**self.spec.to_json(), "mean": list(self.mean), "std": list(self.std), "source": self.source,
                "resize": self.resize, "dim": self.dim,
                **({"calibration": self.calibration()} if self.runtime == "openvino-int8" else {})}

    def calibration(self) -> dict:
        """The int8 calibration set (:func:`fashion.embedding.int8.calibration_set`), read once."""
        if self._calibration is None:
            from .int8 import calibration_set

            self._calibration = calibration_set()
        return self._calibration

    def resolve_runtime(self, n: int) -> str:
        """Fix ``runtime="auto"`` for a job of ``n`` images: OpenVINO from ``OPENVINO_MIN_IMAGES`` on
        when it is installed, else torch; returns it."""
        from .net import openvino_available

        if self.runtime == "auto":
            self.runtime = ("openvino" if n >= OPENVINO_MIN_IMAGES and openvino_available() else "torch")
            log.info("%s: %s runtime for %d images", self.name, self.runtime, n)
        return self.runtime

    # ---------------------------------------------------------------------------------- forward

    def _torch_runtime(self):
        if self._torch is None:
            from . import net

            self._torch = net.TorchRuntime(net.build_net(self._body, self._head, self.mean, self.std, self.size,
                                                         self.name), self.precision)
        return self._torch

    def _openvino_runtime(self):
        if self._openvino is None:
            from . import net

            self._openvino = net.OpenVINORuntime(self._torch_runtime().net, self.size, self.precision, self.name,
                                                 self._quantize if self.runtime == "openvino-int8" else None)
        return self._openvino

    def _quantize(self, model):
        """openvino-int8: the converted model's int8 version, kept beside this embedder's cache chunks."""
        from .int8 import quantized_model

        return quantized_model(model, self.size, self.resize, self._int8_dir)

    def forward(self, images: "torch.Tensor") -> "torch.Tensor":
        """uint8 (N, 3, S, S) RGB → float32 (N, d) L2-normalised vectors (``runtime="auto"`` not yet
        resolved by :meth:`embed` runs torch)."""
        runtime = self._openvino_runtime() if self.runtime.startswith("openvino") else self._torch_runtime()
        return runtime(images)

    @property
    def can_classify(self) -> bool:
        """True when :meth:`classify` can predict (a trained single model at its own input size; not the
        int8 runtime, whose saved network has the vectors alone)."""
        return self._classes is not None and self.runtime != "openvino-int8"

    @property
    def classes(self) -> "nn.Module | None":
        """The trained classifier's last part this embedder holds (with ``layer == "head"``: the head's last
        Linear, over the vectors' penultimate features), or None without a trained single model."""
        return self._classes

    def classify(self, images: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor]":
        """uint8 (N, 3, S, S) RGB → (vectors float32 (N, d) as :meth:`forward`, class probabilities float32
        (N, len(class_names)) in the order of ``class_names``), from one pass of the network: the body's
        feature map feeds both. Raises ConfigError unless :attr:`can_classify`."""
        if not self.can_classify:
            raise ConfigError(f"{self.name}: no one-pass classifier here (a trained single model is needed, not "
                              f"an ensemble or the int8 runtime, embedded at its own input size)")
        if self._classify is None:
            from . import net

            joint = net.build_net(self._body, self._head, self.mean, self.std, self.size, self.name, self._classes)
            if self.runtime == "openvino":
                self._classify = net.OpenVINORuntime(joint, self.size, self.precision, self.name)
            else:  # torch, or "auto" not yet resolved (as forward)
                self._classify = net.TorchRuntime(joint, self.precision)
        return self._classify(images)

    def infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, S, S, 3) RGB → ((N, d) float32 vectors as :meth:`forward`, (N, c) class probabilities
        from the same pass when :attr:`can_classify`, else None): numpy in, numpy out."""
        import torch

        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # a channels-last view: the net's layout, no copy
        if self.can_classify:
            vectors, probs = self.classify(batch)
            return vectors.numpy().astype(np.float32, copy=False), probs.numpy().astype(np.float32, copy=False)
        return self.forward(batch).numpy().astype(np.float32, copy=False), None

    def openvino_model(self):
        """The converted ``openvino.Model`` that :meth:`infer` runs (``runtime="openvino"``; what
        :func:`fashion.embedding.ir.save_embedder` saves)."""
        if self.runtime != "openvino":
            raise ConfigError(f"only the openvino runtime's network is saved, not {self.runtime!r}'s")
        self.infer(np.zeros((1, self.size, self.size, 3), np.uint8))  # converts the network infer runs
        return (self._classify if self.can_classify else self._openvino_runtime()).model

    @property
    def dim(self) -> int:
        """Length d of the vectors (one dummy torch forward pass the first time: no OpenVINO conversion)."""
        if self._dim is None:
            import torch

            zeros = torch.zeros((1, 3, self.size, self.size), dtype=torch.uint8)
            self._dim = int(self._torch_runtime()(zeros).shape[1])
        return self._dim

    # ---------------------------------------------------------------------------------- embed

    def cache_path(self, cache_dir, crop: bool = False) -> Path:
        """This embedder's cache sub-directory of ``cache_dir``:
        ``<checksum[:16]>.<settings>-<size>-<layer>-<precision>[-openvino|-openvino-int8-<calibration id>]-<resize>[-bbox]``, where
        ``settings`` (:func:`fashion.chunkstore.settings_tag`) covers the other inputs of a vector: the full weights
        checksum, arch, mean, std, size, layer, precision, resize and crop."""
        from ..chunkstore import settings_tag
        from .cache import CACHE_FORMAT

        if self.runtime == "openvino-int8":  # the calibration set is part of what made the vectors
            runtime = f"-openvino-int8-{self.calibration()['id']}"
        else:
            runtime = "-openvino" if self.runtime == "openvino" else ""  # the torch tag predates runtimes
        # the runtime is in the name itself ("-openvino"), so a path asked for before "auto" is resolved
        # (always torch below OPENVINO_MIN_IMAGES) names the torch cache, as it always did
        spec = self.spec
        settings = settings_tag(format=CACHE_FORMAT, checksum=spec.checksum, arch=spec.arch, mean=list(self.mean),
                                std=list(self.std), size=spec.size, layer=spec.layer, precision=spec.precision,
                                resize=self.resize, crop=bool(crop))
        tag = (f"{self.checksum[:16]}.{settings}-{self.size}-{self.layer}-{self.precision}{runtime}-{self.resize}"
               + ("-bbox" if crop else ""))
        return Path(cache_dir) / tag

    def embed(self, items, batch_size: int = 64, cache_dir=None, num_workers: int | None = None,
              crop: bool | None = None, progress: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE,
              num_threads: int | None = None) -> EmbeddingResult:
        """Embed every item; bad images are skipped, counted and listed, never fatal.

        Bad: unreadable, or featureless (a vector of zero or non-finite norm, e.g. a blank image).

        Args:
            items: a DataFrame with a ``path`` column (and ``bbox`` for cropping) or a list of paths.
            batch_size: images per forward pass.
            cache_dir: where to keep/reuse chunked vectors (None: no cache).
            num_workers: DataLoader worker processes (None: :func:`fashion.embedding.reader.default_num_workers`).
            crop: crop to the items' ``bbox`` (None: the model's training setting).
            progress: show a progress bar (on a terminal).
            chunk_size: cache rows per chunk, rounded up to whole batches.
            num_threads: torch threads while embedding (None: unchanged).

        Returns:
            :class:`EmbeddingResult` with (n, d) vectors in item order.
        """
        start = time.perf_counter()
        paths, bboxes = paths_and_boxes(items, self.crop if crop is None else crop)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        n = len(paths)
        self.resolve_runtime(n)
        keys = [cache_key(p, None if bboxes is None else bboxes[i]) for i, p in enumerate(paths)]
        cache = ChunkCache(self.cache_path(cache_dir, bboxes is not None)) if cache_dir is not None else None
        if cache_dir is not None and self._int8_dir is None:  # openvino-int8 keeps its network beside the chunks
            self._int8_dir = self.cache_path(cache_dir, bboxes is not None)
        hits = {} if cache is None else {i: cache.entries[k] for i, k in enumerate(keys) if k in cache.entries}
        # one (n, d) result written in place, batch by batch: no per-row arrays, no second copy of it
        if hits and self._dim is None:  # d from the cache: no network needed to know it
            self._dim = len(next(iter(hits.values()))[0])
        out = pipeline.Rows(np.zeros((n, self.dim), dtype=np.float32), np.zeros(n, dtype=bool), [""] * n)
        for i, (vec, good, reason) in hits.items():
            if good:
                out.vectors[i] = vec
            out.ok[i], out.reasons[i] = good, reason
        todo = [i for i in range(n) if i not in hits]
        timing = {}
        if todo:
            from .net import torch_threads

            writer = pipeline.Writer(cache, keys, per_chunk=max(1, -(-chunk_size // batch_size)))
            with torch_threads(num_threads):
                timing = pipeline.run(ImageDataset(paths, bboxes, self.size, self.resize), todo, self.forward, out,
                                      writer, batch_size, num_workers, progress).as_dict()
        reject_featureless(out.vectors, out.ok, out.reasons)
        failures = [(paths[i], out.reasons[i]) for i in np.flatnonzero(~out.ok)]
        result = EmbeddingResult(out.vectors, out.ok, failures, len(hits), len(todo), time.perf_counter() - start,
                                 timing)
        log.info("embedded %d images in %.1f s: %d computed, %d from cache, %d skipped (unreadable or blank)",
                 n, result.seconds, len(todo), len(hits), len(failures))
        if timing:
            log.debug("embedding stages: %s", ", ".join(f"{k} {v:.2f}s" for k, v in timing.items()))
        return result


def reject_featureless(vectors: np.ndarray, ok: np.ndarray, reasons: list[str]) -> None:
    """Mark rows whose vector has zero or non-finite norm as failed, in place (zeroed, ok=False).

    A blank (one-colour) image can give an all-zero body vector (ReLU6 features pooled to zero): it has
    no direction, so no cosine distance. Checked on the assembled result, so cached and freshly
    computed rows get the same outcome.
    """
    sq = np.einsum("ij,ij->i", vectors, vectors)  # (n,): no temporary of the matrix's size
    finite = np.isfinite(sq)
    bad = ok & ~(finite & (sq > 0))
    vectors[bad], ok[bad] = 0.0, False
    for i in np.flatnonzero(bad):
        reasons[i] = NO_FEATURES if finite[i] else NON_FINITE
