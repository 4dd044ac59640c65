"""Embed images with a network's body (or a trained head): (n, d) float32, L2-normalised, cached.

::

    embedder = Embedder.create(arch="efficientnet_lite0")          # pretrained backbone
    embedder = Embedder.create(model="runs/train1", layer="head")   # a `fashion train` output dir
    result = embedder.embed(items, batch_size=64, cache_dir="cache")
    result.vectors  # (n, d) float32, unit rows; zero rows where result.ok is False
    result.failures # [(path, reason), ...] of the images that could not be used

Preprocessing: the image is opened with :func:`fashion.images.open_image` (EXIF-upright RGB, optional
bbox crop), then for a pretrained backbone (``resize="crop"``, ImageNet evaluation style, fastai's
validation ``Resize(size, method="crop")``) its shorter side is resized to ``size`` (bilinear) and the
centre ``size × size`` cut out; for a trained model the transform it was trained with (``"squish"``:
the whole image resized to ``size × size``, as `fashion train` does). Then it is normalised with the
model's mean/std (from the backbone config or model.json, never literals).

``layer="body"``: the body's feature map, global-average-pooled (what the original study used).
``layer="head"``: the trained head's penultimate features (trained models only).

Speed: workers decode and resize and ship uint8 tensors (4× less inter-process traffic than float).
Two runtimes compute the same function (normalise, network, pool or head, L2-normalise):

- ``runtime="torch"``: BatchNorm folded into the convolutions, channels-last memory format and, where
  the CPU has native bf16 (AVX512-BF16/AMX), bf16 autocast.
- ``runtime="openvino"``: the same module converted once per process (~2 s) by OpenVINO
  (a dependency of the package; ``auto`` falls back to torch without it), which fuses the graph (the padding
  copies and activations eager PyTorch runs one by one) and uses bf16 where the CPU has it: 2.2x the
  torch runtime's network speed here (338 vs 155 img/s, benchmarks/embed.py). Its outputs do not
  depend on the batch a row is in.
- ``runtime="auto"`` (default): OpenVINO when it is installed and the job has at least
  ``OPENVINO_MIN_IMAGES`` images (below that the conversion costs more than it saves), else torch;
  resolved on the first :meth:`Embedder.embed` and recorded in :meth:`Embedder.describe`.

Reduced precision is measured in ``benchmarks/embed.py`` to leave retrieval precision@10 unchanged
(within 0.005); ``precision="fp32"`` turns it off in both runtimes.

Cache: ``cache_dir/<checksum[:16]>-<size>-<layer>-<precision>[-openvino]-<resize>[-bbox]/chunk_NNNNN.npz`` files, each
written atomically, holding ``keys`` (path, mtime, file size, bbox), ``vectors``, ``ok`` and ``reasons``.
A rerun reuses every cached key; a run killed half-way loses at most one chunk. Chunks hold a whole
number of batches, so a resumed run feeds the network the same batches as an uninterrupted run and
the vectors are bitwise identical.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .images import RESIZES, resize_image

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch
    from torch import nn

log = logging.getLogger(__name__)

LAYERS = ("body", "head")
PRECISIONS = ("auto", "fp32", "bf16")
RUNTIMES = ("auto", "torch", "openvino")
# runtime="auto" converts to OpenVINO from this many images on (conversion ~2 s; the torch runtime
# embeds ~100 img/s at 224 px here, so below a few hundred images converting does not pay).
OPENVINO_MIN_IMAGES = 512
DEFAULT_CHUNK_SIZE = 1024
NO_FEATURES = "no features: the image gives an all-zero embedding (blank image?)"
NON_FINITE = "non-finite features: the model gives NaN or infinity for this image"


def default_num_workers() -> int:
    """DataLoader workers: one core is left to the network's threads; 0 (in-process) on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, max(0, cores - 1))


def openvino_available() -> bool:
    """True when the ``openvino`` package can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def bf16_supported() -> bool:
    """True when this CPU runs bf16 matrix products natively (oneDNN with AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass
class EmbeddingResult:
    """Output of :meth:`Embedder.embed`.

    vectors: (n, d) float32, unit L2 norm where ``ok``, zeros elsewhere; ok: (n,) bool;
    failures: [(path, reason)] of the rows where ok is False, in item order;
    n_cached / n_computed: rows served from the cache / run through the network; seconds: wall time.
    """

    vectors: np.ndarray
    ok: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_cached: int = 0
    n_computed: int = 0
    seconds: float = 0.0


# ------------------------------------------------------------------------------------ preprocessing


class _ImageDataset:
    """torch map-style dataset: index → (uint8 (3, S, S) tensor, ok, reason, index).

    Never raises for a bad image: it returns ``ok=False`` and the reason, so a worker process
    survives corrupt files and the main process counts and lists them.
    """

    def __init__(self, paths: Sequence[str], bboxes: Sequence | None, size: int, resize: str = "crop"):
        self.paths, self.bboxes, self.size, self.resize = list(paths), bboxes, size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        from .images import open_image

        path = self.paths[i]
        try:
            bbox = None if self.bboxes is None else self.bboxes[i]
            pixels = resize_image(open_image(path, bbox=bbox), self.size, self.resize)
            return torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), True, "", i
        except Exception as exc:  # noqa: BLE001 - any failure of one image must not end the run
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            return torch.zeros((3, self.size, self.size), dtype=torch.uint8), False, str(reason), i


# ------------------------------------------------------------------------------------------- cache


def _cache_key(path: str, bbox) -> str | None:
    """Identity of one image's embedding input; None when the file cannot be stat'ed (never cached)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    box = "" if bbox is None else ",".join(str(int(round(float(v)))) for v in bbox)
    return f"{os.path.abspath(path)}\x1f{st.st_mtime_ns}\x1f{st.st_size}\x1f{box}"


class _ChunkCache:
    """Directory of atomically written ``chunk_NNNNN.npz`` files mapping key → (vector, ok, reason)."""

    def __init__(self, directory: Path):
        from .atomic import ensure_dir

        self.dir = ensure_dir(directory)
        self.entries: dict[str, tuple[np.ndarray, bool, str]] = {}
        self.next_chunk = 0
        for chunk in sorted(self.dir.glob("chunk_*.npz")):
            try:
                self.next_chunk = max(self.next_chunk, int(chunk.stem.split("_")[1]) + 1)
                with np.load(chunk, allow_pickle=False) as z:
                    for key, vec, ok, reason in zip(z["keys"], z["vectors"], z["ok"], z["reasons"]):
                        self.entries[str(key)] = (vec, bool(ok), str(reason))
            except Exception as exc:  # noqa: BLE001 - a damaged chunk is recomputed, not fatal
                log.warning("ignoring unreadable cache chunk %s: %s", chunk, exc)

    def write(self, keys: list[str], vectors: np.ndarray, ok: np.ndarray, reasons: list[str]) -> None:
        from .atomic import atomic_write

        path = self.dir / f"chunk_{self.next_chunk:05d}.npz"
        self.next_chunk += 1
        with atomic_write(path, "wb") as f:
            np.savez(f, keys=np.array(keys, dtype=str), vectors=vectors.astype(np.float32, copy=False),
                     ok=np.asarray(ok, dtype=bool), reasons=np.array(reasons, dtype=str))
        log.debug("wrote cache chunk %s (%d rows)", path, len(keys))


# ------------------------------------------------------------------------------------------ helpers


def state_dict_sha256(module: "nn.Module") -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state dict (sorted by name)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _get(config: Any, key: str, default=None):
    """Read ``key`` from a dict or an attribute of a dataclass/namespace."""
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def _penultimate(head: "nn.Module") -> "nn.Module":
    """The head without its final classification layer (fastai's create_head ends with a Linear)."""
    from torch import nn

    if isinstance(head, nn.Sequential) and len(head) > 1 and isinstance(head[-1], nn.Linear):
        return head[:-1]
    raise ValueError(f"cannot find the penultimate layer of a {type(head).__name__} head "
                     "(expected an nn.Sequential ending in nn.Linear)")


def fold_batchnorm(module: "nn.Module", size: int = 64) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution into it, in place.

    Inference only: ``bn(conv(x)) == conv'(x)`` with ``w' = w·γ/√(var+ε)``, ``b' = (b−μ)·γ/√(var+ε)+β``.
    Pairs are found by running one dummy (1, 3, size, size) batch and matching each BatchNorm's input
    tensor to the output of the convolution that produced it, so any architecture works. A timm
    ``BatchNormAct2d`` keeps its activation (and dropout); a plain BatchNorm becomes ``nn.Identity``.
    Returns the number of folded pairs. (torch.profiler showed batch_norm at ~27% of the forward time.)
    """
    import torch
    from torch import nn

    produced: dict[int, nn.Conv2d] = {}
    pairs: list[tuple[str, nn.Conv2d, nn.BatchNorm2d]] = []
    names = {m: n for n, m in module.named_modules()}

    def after_conv(conv, _inputs, output):
        produced[id(output)] = conv

    def before_bn(bn, inputs):
        conv = produced.get(id(inputs[0]))
        if conv is not None and conv.out_channels == bn.num_features:
            pairs.append((names[bn], conv, bn))

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d) and m.track_running_stats and m.affine:
            hooks.append(m.register_forward_pre_hook(before_bn))
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for name, conv, bn in pairs:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, nn.Sequential(*rest) if rest else nn.Identity())
    return len(pairs)


def _embedding_module(body: "nn.Module", head: "nn.Module | None", mean, std) -> "nn.Module":
    """uint8 (N, 3, S, S) → L2-normalised float32 (N, d) as one module: what both runtimes run (the
    torch runtime under bf16 autocast where it applies; OpenVINO converts it)."""
    import torch
    from torch import nn

    class EmbeddingNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = body, head
            self.register_buffer("shift", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("scale", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

        def forward(self, images):
            x = ((images.float() - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)
            fmap = self.body(x)
            feats = fmap.float().mean(dim=(2, 3)) if self.head is None else self.head(fmap)
            feats = feats.float()  # the pooled sum and the norm in float32, also under autocast
            return feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return EmbeddingNet().eval()


@contextlib.contextmanager
def _torch_threads(n: int | None):
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------------------------------------------------ embedder


class Embedder:
    """A network body (+ optional head part) that maps images to L2-normalised float32 vectors.

    Build it with :meth:`create`, :meth:`from_backbone` or :meth:`from_model_dir`. Attributes:
    name (arch), size (px), mean/std (3-tuples), checksum (sha256 hex of the weights), layer
    ("body"/"head"), precision ("fp32"/"bf16", resolved), source (where the weights came from),
    model_dir (trained model directory or None), crop (bbox crop by default, from model.json).
    """

    def __init__(self, body: "nn.Module", *, name: str, size: int, mean, std, checksum: str,
                 layer: str = "body", head: "nn.Module | None" = None, source: str = "",
                 model_dir=None, precision: str = "auto", crop: bool = False, resize: str = "crop",
                 runtime: str = "auto"):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        if layer == "head" and head is None:
            raise ValueError("layer='head' needs a trained model (--model DIR): a pretrained backbone has no "
                             "trained head; use layer='body'")
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if runtime == "openvino" and not openvino_available():
            raise ValueError("runtime='openvino' needs the openvino package: pip install openvino "
                             "(or use runtime='torch')")
        if int(size) < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.name, self.size, self.layer, self.source = name, int(size), layer, source
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.checksum, self.model_dir, self.crop, self.resize = checksum, model_dir, bool(crop), resize
        if precision == "auto":
            precision = "bf16" if bf16_supported() else "fp32"
        self.precision, self.runtime = precision, runtime
        self._body, self._head = body.eval(), (head.eval() if head is not None else None)
        self._prepared = False
        self._net = None  # _embedding_module over the prepared body, built by _prepare
        self._compiled = None  # the OpenVINO model, converted on first use
        self._dim: int | None = None

    # ---------------------------------------------------------------------------------- builders

    @classmethod
    def create(cls, model=None, arch: str = "efficientnet_lite0", layer: str = "auto", size: int | None = None,
               precision: str = "auto", pretrained: bool = True, weights=None, runtime: str = "auto") -> "Embedder":
        """A trained model directory when ``model`` is given, else the (pretrained) backbone ``arch``.

        ``layer="auto"``: the trained head's penultimate features when there is a trained model (they
        retrieve better: precision@10 0.840 vs 0.750 for body features on clothing-dataset-small,
        benchmarks/README.md), else the pooled body features.
        """
        if layer == "auto":
            layer = "head" if model is not None else "body"
        if model is not None:
            return cls.from_model_dir(model, layer=layer, size=size, precision=precision, runtime=runtime)
        if layer != "body":
            raise ValueError("layer='head' needs a trained model (--model DIR); a pretrained backbone "
                             "has no trained head")
        return cls.from_backbone(arch, pretrained=pretrained, weights=weights, size=size, precision=precision,
                                 runtime=runtime)

    @classmethod
    def from_backbone(cls, name: str = "efficientnet_lite0", pretrained: bool = True, weights=None,
                      size: int | None = None, precision: str = "auto", runtime: str = "auto") -> "Embedder":
        """Body of a registered backbone (``fashion.backbones.create_backbone``)."""
        from .backbones import create_backbone

        body, cfg = create_backbone(name, pretrained=pretrained, weights=weights)
        checksum = file_sha256(weights) if weights is not None else state_dict_sha256(body)
        return cls(body, name=cfg.name, size=size or cfg.input_size, mean=cfg.mean, std=cfg.std,
                   checksum=checksum, source=cfg.source, precision=precision, runtime=runtime)

    @classmethod
    def from_model_dir(cls, path, layer: str = "body", size: int | None = None,
                       precision: str = "auto", runtime: str = "auto") -> "Embedder":
        """A `fashion train` output directory, via ``fashion.training.load_model``."""
        from .training import load_model

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"model directory not found: {path}")
        loaded = load_model(path)
        config = loaded.config
        weights = _weights_file(loaded, path)
        size = size or _get(config, "final_size") or _get(config, "size")
        head = loaded.head if layer == "head" else None
        if head is not None:
            head = getattr(loaded, "penultimate", None) or _penultimate(head)
        return cls(loaded.body, name=str(_get(config, "arch", "?")), size=int(size),
                   mean=_get(config, "mean"), std=_get(config, "std"), checksum=file_sha256(weights),
                   layer=layer, head=head, source=f"trained:{path}", model_dir=os.fspath(path.resolve()),
                   precision=precision, crop=_get(config, "crop", _train_setting(config, "crop")) == "bbox",
                   # the transform the model was trained with (fashion.training squish-resizes)
                   resize=_get(config, "resize", "squish"), runtime=runtime)

    def describe(self) -> dict:
        """JSON-ready description (for run.json) from which :meth:`create` can rebuild this embedder."""
        return {"arch": self.name, "model_dir": self.model_dir, "layer": self.layer, "size": self.size,
                "mean": list(self.mean), "std": list(self.std), "checksum": self.checksum,
                "source": self.source, "precision": self.precision, "runtime": self.runtime, "crop": self.crop,
                "resize": self.resize, "dim": self.dim}

    def resolve_runtime(self, n: int) -> str:
        """Fix ``runtime="auto"`` for a job of ``n`` images (see the module docstring); returns it."""
        if self.runtime == "auto":
            self.runtime = ("openvino" if n >= OPENVINO_MIN_IMAGES and openvino_available() else "torch")
            log.info("%s: %s runtime for %d images", self.name, self.runtime, n)
        return self.runtime

    # ---------------------------------------------------------------------------------- forward

    def _prepare(self) -> None:
        import torch

        if not self._prepared:
            # a private copy: the caller's module (e.g. a trained classifier's body) stays untouched
            self._body = copy.deepcopy(self._body).eval()
            folded = fold_batchnorm(self._body, size=min(self.size, 64))
            # channels-last lets oneDNN pick its fastest convolution kernels (2x on this CPU)
            self._body = self._body.to(memory_format=torch.channels_last)
            self._net = _embedding_module(self._body, self._head, self.mean, self.std)
            self._prepared = True
            log.debug("%s: folded %d BatchNorms into convolutions", self.name, folded)

    def _openvino_model(self):
        """The embedding module converted and compiled by OpenVINO (once; bf16 where precision says)."""
        if self._compiled is None:
            import warnings

            import openvino as ov
            import torch

            self._prepare()
            example = torch.zeros((2, 3, self.size, self.size), dtype=torch.uint8)
            start = time.perf_counter()
            with warnings.catch_warnings():  # tracing warnings (torch.jit) say nothing to the user
                warnings.simplefilter("ignore")
                model = ov.convert_model(self._net, example_input=example, input=[(-1, 3, self.size, self.size)])
            self._compiled = ov.Core().compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": torch.get_num_threads()})
            log.info("%s: converted to OpenVINO in %.1f s", self.name, time.perf_counter() - start)
        return self._compiled

    def forward(self, images: "torch.Tensor") -> "torch.Tensor":
        """uint8 (N, 3, S, S) RGB → float32 (N, d) L2-normalised vectors (``runtime="auto"`` not yet
        resolved by :meth:`embed` runs torch)."""
        import torch

        if self.runtime == "openvino":
            out = self._openvino_model()(images.numpy())[0]
            return torch.from_numpy(np.array(out, dtype=np.float32))  # a copy: OpenVINO reuses its buffer
        return self._torch_forward(images)

    def _torch_forward(self, images: "torch.Tensor") -> "torch.Tensor":
        import torch

        self._prepare()
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            return self._net(images)

    @property
    def dim(self) -> int:
        """Length d of the vectors (one dummy torch forward pass the first time: no OpenVINO conversion)."""
        import torch

        if self._dim is None:
            zeros = torch.zeros((1, 3, self.size, self.size), dtype=torch.uint8)
            self._dim = int(self._torch_forward(zeros).shape[1])
        return self._dim

    # ---------------------------------------------------------------------------------- embed

    def cache_path(self, cache_dir, crop: bool = False) -> Path:
        """This embedder's cache sub-directory of ``cache_dir``."""
        runtime = "-openvino" if self.runtime == "openvino" else ""  # the torch tag predates runtimes
        tag = (f"{self.checksum[:16]}-{self.size}-{self.layer}-{self.precision}{runtime}-{self.resize}"
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
            num_workers: DataLoader worker processes (None: :func:`default_num_workers`).
            crop: crop to the items' ``bbox`` (None: the model's training setting).
            progress: show a progress bar (on a terminal).
            chunk_size: cache rows per chunk, rounded up to whole batches.
            num_threads: torch threads while embedding (None: unchanged).

        Returns:
            :class:`EmbeddingResult` with (n, d) vectors in item order.
        """
        start = time.perf_counter()
        paths, bboxes = _paths_and_boxes(items, self.crop if crop is None else crop)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = len(paths)
        self.resolve_runtime(n)
        keys = [_cache_key(p, None if bboxes is None else bboxes[i]) for i, p in enumerate(paths)]
        cache = _ChunkCache(self.cache_path(cache_dir, bboxes is not None)) if cache_dir is not None else None
        hits = {} if cache is None else {i: cache.entries[k] for i, k in enumerate(keys) if k in cache.entries}
        # one (n, d) result written in place, batch by batch: no per-row arrays, no second copy of it
        if hits and self._dim is None:  # d from the cache: no network needed to know it
            self._dim = len(next(iter(hits.values()))[0])
        dim = self.dim
        vectors, ok, reasons = np.zeros((n, dim), dtype=np.float32), np.zeros(n, dtype=bool), [""] * n
        for i, (vec, good, reason) in hits.items():
            if good:
                vectors[i] = vec
            ok[i], reasons[i] = good, reason
        todo = [i for i in range(n) if i not in hits]
        if todo:
            with _torch_threads(num_threads):
                self._compute(todo, paths, bboxes, keys, (vectors, ok, reasons), cache, batch_size, num_workers,
                              progress, chunk_size)
        _reject_featureless(vectors, ok, reasons)
        failures = [(paths[i], reasons[i]) for i in np.flatnonzero(~ok)]
        result = EmbeddingResult(vectors, ok, failures, len(hits), len(todo), time.perf_counter() - start)
        log.info("embedded %d images in %.1f s: %d computed, %d from cache, %d skipped (unreadable or blank)",
                 n, result.seconds, len(todo), len(hits), len(failures))
        return result

    def _compute(self, todo, paths, bboxes, keys, out, cache, batch_size, num_workers, progress,
                 chunk_size) -> None:
        """Run the network over the ``todo`` rows, filling ``out`` = (vectors, ok, reasons) in place and
        writing cache chunks."""
        import torch
        from torch.utils.data import DataLoader, Subset
        from tqdm.auto import tqdm

        vectors, ok_out, reasons_out = out
        dataset = Subset(_ImageDataset(paths, bboxes, self.size, self.resize), todo)
        workers = default_num_workers() if num_workers is None else max(0, int(num_workers))
        workers = min(workers, max(0, len(todo) // batch_size))  # no idle processes for tiny jobs
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                            persistent_workers=False, prefetch_factor=4 if workers else None)
        per_chunk = max(1, -(-chunk_size // batch_size))  # whole batches: resumed runs see the same batches
        pending: list[int] = []
        with tqdm(total=len(todo), desc="embedding", unit="img", disable=None if progress else True) as bar:
            for n_batch, (images, ok, reasons, index) in enumerate(loader, 1):
                ok, index = ok.numpy().astype(bool), index.numpy()
                if ok.any():
                    vectors[index[ok]] = self.forward(images[torch.from_numpy(ok)]).numpy()
                ok_out[index] = ok
                for row, good, reason in zip(index.tolist(), ok, reasons):
                    reasons_out[row] = "" if good else reason
                pending += index.tolist()
                if cache is not None and (n_batch % per_chunk == 0):
                    self._flush(cache, pending, keys, out)
                    pending = []
                bar.update(len(ok))
        if cache is not None and pending:
            self._flush(cache, pending, keys, out)

    def _flush(self, cache: _ChunkCache, pending: list[int], keys, out) -> None:
        vectors, ok, reasons = out
        kept = [i for i in pending if keys[i] is not None]  # unstat-able files are retried next time
        if kept:
            cache.write([keys[i] for i in kept], vectors[kept], ok[kept], [reasons[i] for i in kept])


def _reject_featureless(vectors: np.ndarray, ok: np.ndarray, reasons: list[str]) -> None:
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


def _paths_and_boxes(items, crop: bool) -> tuple[list[str], list | None]:
    """(absolute-or-given paths, bboxes or None) from a DataFrame or a sequence of paths."""
    if hasattr(items, "columns"):
        if "path" not in items.columns:
            raise ValueError(f"items need a 'path' column, got columns {list(items.columns)}")
        paths = [os.fspath(p) for p in items["path"]]
        bboxes = None
        if crop and "bbox" in items.columns:
            bboxes = [None if _missing(b) else tuple(b) for b in items["bbox"]]
        return paths, bboxes
    if isinstance(items, (str, os.PathLike)):
        raise TypeError("items must be a DataFrame or a list of paths, not a single path")
    return [os.fspath(p) for p in items], None


def _train_setting(config, key: str, default="none"):
    """A training option recorded in model.json's ``train_config`` (dict), if any."""
    train = _get(config, "train_config") or {}
    return _get(train, key, default)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _weights_file(loaded, directory: Path) -> Path:
    """The weights file a trained model was loaded from (its sha256 is the model checksum)."""
    for attr in ("weights_path", "weights_file", "path"):
        candidate = getattr(loaded, attr, None)
        if candidate is not None and Path(candidate).is_file():
            return Path(candidate)
    for name in ("model.safetensors", "model.pth"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no weights file (model.safetensors or model.pth) in {directory}")
