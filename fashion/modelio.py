"""The trained classifier: building it, exporting it and loading it back without unpickling.

A classifier is ``nn.Sequential(body, head)``: the body from :mod:`fashion.backbones` (feature map
(N, C, h, w)) and fastai's ``create_head`` (concat pooling → BN/dropout/linear 2C→512 → ReLU →
BN/dropout/linear 512→n_classes). An exported model directory holds

- ``model.safetensors`` — the state dict of that ``nn.Sequential`` (tensors only, no code);
- ``model.json`` — arch, classes, sizes, normalisation, head settings, metrics and the TrainConfig.

:func:`load_model` rebuilds the network from ``model.json`` (``create_backbone(arch, pretrained=False)``
+ head) and loads the tensors: nothing in the directory can run code.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .atomic import atomic_write, write_json
from .errors import ConfigError, FormatError
from .heads import penultimate

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "model.pth"  # a plain state dict, read with weights_only=True
CONFIG_FILE = "model.json"
FORMAT_VERSION = 1
DEFAULT_HEAD = {"lin_ftrs": [512], "ps": 0.5, "concat_pool": True}
_REQUIRED = object()


def build_classifier(arch: str, n_classes: int, pretrained: bool = True, weights=None,
                     head: dict | None = None):
    """``nn.Sequential(body, head)`` mapping (N, 3, H, W) → (N, n_classes) logits, and the BackboneConfig."""
    from fastai.vision.learner import create_head
    from torch import nn

    from .backbones import create_backbone

    if n_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
    body, cfg = create_backbone(arch, pretrained=pretrained, weights=weights)
    head_cfg = {**DEFAULT_HEAD, **(head or {})}
    return nn.Sequential(body, create_head(cfg.feature_dim, n_classes, **head_cfg)), cfg


def layer_groups(model: "nn.Sequential") -> list[list["nn.Module"]]:
    """Three groups for discriminative LRs and freezing: [body early, body late, head]."""
    from .backbones import body_groups

    early, late = body_groups(model[0], 2)
    return [early, late, [model[1]]]


def splitter(model: "nn.Sequential") -> list[list["nn.Parameter"]]:
    """fastai splitter: parameters of :func:`layer_groups`, so ``freeze()`` trains the head only."""
    return [[p for module in group for p in module.parameters()] for group in layer_groups(model)]


def save_state_dict(path, model: "nn.Module") -> Path:
    """Write ``model.state_dict()`` as safetensors, atomically (a failing disk: :class:`OutputError`,
    decided by the OSError's errno in :mod:`fashion.atomic`)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata={"format": "fashion"})  # bytes: the write itself is plain Python I/O
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def export_model(output_dir, model: "nn.Module", info: "ModelInfo") -> Path:
    """Write ``model.safetensors`` and ``model.json`` (``info``, with its format version) into ``output_dir``."""
    output_dir = Path(output_dir)
    save_state_dict(output_dir / WEIGHTS_FILE, model)
    write_json(output_dir / CONFIG_FILE, info.to_json())
    log.info("exported the model to %s", output_dir)
    return output_dir / WEIGHTS_FILE


def bundled_model_dir() -> Path:
    """The clothing model shipped inside the package (``fashion/data/model``, its card in README.md):
    what every entry point embeds and classifies with when given no ``--model`` and no ``--arch``.
    FileNotFoundError when it is not installed."""
    directory = Path(__file__).resolve().parent / "data" / "model"
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"the bundled clothing model is missing at {directory} (model.json + "
                                f"{WEIGHTS_FILE}); reinstall fashion, or pass --model DIR or --arch NAME")
    return directory


# ------------------------------------------------------------------------------------------ model.json

MAX_IMAGE_SIZE = 4096  # px; beyond this a model.json value is a typo, not a model
MAX_FEATURES = 1 << 16  # channels / hidden units
_CROPS = ("none", "bbox")


@dataclass(frozen=True)
class ModelInfo:
    """``model.json``: what rebuilds a trained classifier and how its inputs are prepared.

    arch: backbone name (:mod:`fashion.backbones`); classes: label names, in output order;
    size: image px of the first stages; final_size: px the kept model was trained at (None: ``size``);
    mean / std: per-channel normalisation on the [0, 1] scale (3 values each, std > 0);
    feature_dim: the body's channels; head: fastai ``create_head`` settings (lin_ftrs, ps, concat_pool);
    crop: "bbox" when trained on DeepFashion boxes, else "none"; backbone_source: where the pretrained
    weights came from; best / metrics / train_config: what the run recorded, for people;
    members: for an ensemble (:mod:`fashion.ensemble`), each member's {arch, feature_dim, head}, in
    state-dict order (``arch`` then names them all, joined by "+"); empty for one classifier.
    ``format_version`` (:data:`FORMAT_VERSION`) says how to read the file; files without one are version 1.
    """

    arch: str
    classes: tuple
    size: int
    mean: tuple
    std: tuple
    final_size: int | None = None
    feature_dim: int | None = None
    head: dict = field(default_factory=lambda: dict(DEFAULT_HEAD))
    crop: str = "none"
    backbone_source: str = ""
    best: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    members: tuple = ()
    format_version: int = FORMAT_VERSION

    @property
    def input_size(self) -> int:
        """Image side the kept model expects (``final_size``, else ``size``)."""
        return self.final_size or self.size

    def to_json(self) -> dict:
        """A JSON-ready dict (lists for tuples), the inverse of :meth:`from_json`."""
        out = asdict(self)
        out.update(classes=list(self.classes), mean=list(self.mean), std=list(self.std),
                   members=[dict(m) for m in self.members])
        return {"format_version": out.pop("format_version"), **out}

    @classmethod
    def from_json(cls, data, source="model.json") -> "ModelInfo":
        """Validate a parsed ``model.json``; any bad value is one :class:`FormatError` naming ``source``
        and the key. Keys this version does not know are ignored (logged)."""
        if not isinstance(data, dict):
            raise FormatError(f"expected a JSON object, got {type(data).__name__}", source)
        check = _Checker(data, source)
        version = check.integer("format_version", 1, 1, default=1)
        if version != FORMAT_VERSION:
            raise FormatError(f"format_version {version} is not supported (this fashion reads {FORMAT_VERSION})",
                              source, "format_version")
        size = check.integer("size", 8, MAX_IMAGE_SIZE)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            log.debug("%s: ignoring keys %s", source, unknown)
        return cls(
            arch=check.text("arch"), classes=check.classes("classes"), size=size,
            mean=check.triple("mean", 0.0, 1.0, low_open=False), std=check.triple("std", 0.0, 10.0, low_open=True),
            final_size=check.integer("final_size", 8, MAX_IMAGE_SIZE, default=None),
            feature_dim=check.integer("feature_dim", 1, MAX_FEATURES, default=None),
            head=check.head("head"), crop=check.choice("crop", _CROPS, default="none"),
            backbone_source=check.text("backbone_source", default=""),
            best=check.mapping("best"), metrics=check.mapping("metrics"), train_config=check.mapping("train_config"),
            members=check.members("members"), format_version=version)

    @classmethod
    def read(cls, directory) -> "ModelInfo":
        """The ``model.json`` of a model directory (FileNotFoundError when absent, FormatError when bad)."""
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no model.json (not a `fashion train` output directory?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"invalid JSON: {exc}", path) from None
        return cls.from_json(data, source=path)


class _Checker:
    """Reads one key of a JSON object each call, raising FormatError(source, key) for a bad value."""

    def __init__(self, data: dict, source):
        self.data, self.source = data, source

    def _get(self, key, default):
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        if default is _REQUIRED:
            raise FormatError("missing", self.source, key)
        return default

    def _fail(self, key, message):
        raise FormatError(message, self.source, key)

    def text(self, key, default=_REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or (default is _REQUIRED and not value.strip()):
            self._fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, key, low, high, default=_REQUIRED):
        value = self._get(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self._fail(key, f"expected an integer in [{low}, {high}], got {value!r}")
        return value

    def triple(self, key, low, high, low_open: bool) -> tuple:
        value = self._get(key, _REQUIRED)
        ok = (isinstance(value, list) and len(value) == 3
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
        if ok:
            ok = all((low < v if low_open else low <= v) and v <= high for v in value)
        if not ok:
            bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            self._fail(key, f"expected 3 numbers in {bound} (one per RGB channel), got {value!r}")
        return tuple(float(v) for v in value)

    def classes(self, key) -> tuple:
        value = self._get(key, _REQUIRED)
        if (not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v for v in value)
                or len(set(value)) != len(value)):
            self._fail(key, f"expected a list of at least 2 distinct non-empty names, got {_short(value)}")
        return tuple(value)

    def choice(self, key, choices, default=_REQUIRED) -> str:
        value = self._get(key, default)
        if value not in choices:
            self._fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def mapping(self, key) -> dict:
        value = self._get(key, {})
        if not isinstance(value, dict):
            self._fail(key, f"expected a JSON object, got {_short(value)}")
        return value

    def members(self, key) -> tuple:
        value = self._get(key, [])
        if not isinstance(value, list) or len(value) == 1 or not all(isinstance(m, dict) for m in value):
            self._fail(key, f"expected a list of at least 2 objects {{arch, feature_dim, head}}, got {_short(value)}")
        out = []
        for i, member in enumerate(value):
            check = _Checker(member, self.source)
            try:
                out.append({"arch": check.text("arch"), "feature_dim": check.integer("feature_dim", 1, MAX_FEATURES),
                            "head": check.head("head")})
            except FormatError as exc:
                self._fail(key, f"member {i}: {exc}")
        return tuple(out)

    def head(self, key) -> dict:
        value = self.mapping(key) or dict(DEFAULT_HEAD)
        unknown = set(value) - set(DEFAULT_HEAD)
        lin, ps, concat = value.get("lin_ftrs", []), value.get("ps", 0.5), value.get("concat_pool", True)
        if (unknown or not isinstance(lin, list)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_FEATURES for v in lin)
                or isinstance(ps, bool) or not isinstance(ps, (int, float)) or not 0 <= ps < 1
                or not isinstance(concat, bool)):
            self._fail(key, f"expected {{lin_ftrs: [hidden sizes in 1..{MAX_FEATURES}], ps: dropout in [0, 1), "
                            f"concat_pool: true/false}}, got {_short(value)}")
        return {**DEFAULT_HEAD, **value}


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class LoadedModel:
    """A model directory loaded for inference.

    model: ``nn.Sequential(body, head)`` in eval mode, (N, 3, S, S) normalised → (N, n_classes) logits;
    body / head: its two parts; info: the validated ``model.json``; weights_path: the file the
    tensors came from.
    """

    model: Any
    info: ModelInfo
    weights_path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    @property
    def is_ensemble(self) -> bool:
        return bool(self.info.members)

    @property
    def body(self) -> "nn.Module":
        """(N, 3, S, S) → feature map; an ensemble's is its members' raw maps side by side."""
        return self.model.body(normalise=False) if self.is_ensemble else self.model[0]

    @property
    def head(self) -> "nn.Sequential":
        if self.is_ensemble:
            raise ValueError("an ensemble has one head per member (model.members[i][1])")
        return self.model[1]

    @property
    def penultimate(self) -> "nn.Module":
        """Feature map of :attr:`body` → (N, 512 per member): the head's penultimate features (for retrieval)."""
        return self.model.penultimate() if self.is_ensemble else penultimate(self.head)

    def embedding_parts(self, layer: str) -> "tuple[nn.Module, nn.Module | None]":
        """(body, head or None) that :mod:`fashion.embedding` runs for ``layer`` "body" (pooled body
        features) or "head" (penultimate features); an ensemble's are described in :mod:`fashion.ensemble`."""
        if layer == "head":
            return self.body, self.penultimate
        return (self.model.body(normalise=True) if self.is_ensemble else self.body), None

    @property
    def size(self) -> int:
        return self.info.input_size

    def preprocess(self, images: Sequence) -> "torch.Tensor":
        """PIL RGB images → normalised float (N, 3, S, S), as the training's validation pipeline."""
        return preprocess(images, self.size, self.info.mean, self.info.std)

    def predict(self, images: Sequence, batch_size: int = 32) -> "torch.Tensor":
        """PIL RGB images → class probabilities float32 (N, n_classes)."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = self.preprocess(images[start:start + batch_size])
                out.append(torch.softmax(self.model(x).float(), dim=1))
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))


def preprocess(images: Sequence, size: int, mean, std) -> "torch.Tensor":
    """PIL RGB images → float (N, 3, size, size): squish-resize (bilinear), scale to [0, 1], normalise."""
    import numpy as np
    import torch

    from .images import resize_image

    arrays = [resize_image(im.convert("RGB"), size, "squish") for im in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def build_model(info: ModelInfo) -> "nn.Module":
    """The untrained network ``info`` describes: a classifier, or an :class:`~fashion.ensemble.EnsembleClassifier`."""
    if not info.members:
        return build_classifier(info.arch, len(info.classes), pretrained=False, head=info.head)[0]
    from .ensemble import EnsembleClassifier

    members = [build_classifier(m["arch"], len(info.classes), pretrained=False, head=m["head"])[0]
               for m in info.members]
    return EnsembleClassifier(members, [m["feature_dim"] for m in info.members])


def load_model(directory) -> LoadedModel:
    """Rebuild the classifier of a ``fashion train`` output directory; no pickled code is run.

    Reads ``model.json``, builds ``create_backbone(arch, pretrained=False)`` + the head, and loads
    ``model.safetensors`` (or ``model.pth`` with ``torch.load(weights_only=True)``) strictly.
    """
    from .backbones import read_state_dict

    from .rundir import has_manifest, verify

    directory = Path(directory)
    if has_manifest(directory):  # a `fashion train` output: exactly the files its run sealed
        verify(directory)
    info = ModelInfo.read(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        weights = directory / LEGACY_WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_FILE} or {LEGACY_WEIGHTS_FILE}")
    state = read_state_dict(weights)
    model = build_model(info)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"does not match {info.arch} with {len(info.classes)} classes: "
                          f"{str(exc).splitlines()[0]}", weights) from None
    model.eval()
    log.info("loaded %s (%s, %d classes)", weights, info.arch, len(info.classes))
    return LoadedModel(model=model, info=info, weights_path=weights)
