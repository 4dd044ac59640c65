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

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .atomic import atomic_path, write_json

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "model.pth"  # a plain state dict, read with weights_only=True
CONFIG_FILE = "model.json"
FORMAT_VERSION = 1
DEFAULT_HEAD = {"lin_ftrs": [512], "ps": 0.5, "concat_pool": True}


def build_classifier(arch: str, n_classes: int, pretrained: bool = True, weights=None,
                     head: dict | None = None):
    """``nn.Sequential(body, head)`` mapping (N, 3, H, W) → (N, n_classes) logits, and the BackboneConfig."""
    from fastai.vision.learner import create_head
    from torch import nn

    from .backbones import create_backbone

    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
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


def penultimate(head: "nn.Sequential") -> "nn.Sequential":
    """The head without its last Linear: feature map (N, C, h, w) → (N, 512) penultimate features."""
    from torch import nn

    if not (isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear)):
        raise ValueError("expected a fastai create_head head ending in nn.Linear")
    return head[:-1]


def file_sha256(path) -> str:
    """sha256 of a file's bytes (a weights file's checksum: what a run records as its model's identity)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_state_dict(path, model: "nn.Module") -> Path:
    """Write ``model.state_dict()`` as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, os.fspath(tmp), metadata={"format": "fashion"})
    return Path(path)


def export_model(output_dir, model: "nn.Module", info: dict) -> Path:
    """Write ``model.safetensors`` and ``model.json`` (``info`` + format version) into ``output_dir``."""
    output_dir = Path(output_dir)
    save_state_dict(output_dir / WEIGHTS_FILE, model)
    write_json(output_dir / CONFIG_FILE, {"format_version": FORMAT_VERSION, **info})
    log.info("exported the model to %s", output_dir)
    return output_dir / WEIGHTS_FILE


@dataclass
class LoadedModel:
    """A model directory loaded for inference.

    model: ``nn.Sequential(body, head)`` in eval mode, (N, 3, S, S) normalised → (N, n_classes) logits;
    body / head: its two parts; config: the ``model.json`` dict (arch, classes, size, final_size,
    mean, std, feature_dim, head, metrics, train_config ...); classes: list of class names;
    weights_path: the file the tensors came from.
    """

    model: Any
    config: dict
    weights_path: Path
    classes: list[str] = field(default_factory=list)

    @property
    def body(self) -> "nn.Module":
        return self.model[0]

    @property
    def head(self) -> "nn.Sequential":
        return self.model[1]

    @property
    def penultimate(self) -> "nn.Sequential":
        """Feature map (N, C, h, w) → (N, 512): the head's penultimate features (for retrieval)."""
        return penultimate(self.head)

    @property
    def size(self) -> int:
        return int(self.config.get("final_size") or self.config["size"])

    def preprocess(self, images: Sequence) -> "torch.Tensor":
        """PIL RGB images → normalised float (N, 3, S, S), as the training's validation pipeline."""
        return preprocess(images, self.size, self.config["mean"], self.config["std"])

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


def read_config(directory) -> dict:
    """The ``model.json`` of a model directory (FileNotFoundError / ValueError with the path)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model.json (not a `fashion train` output directory?)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from None
    missing = [k for k in ("arch", "classes", "size", "mean", "std") if k not in config]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return config


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
    config = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        weights = directory / LEGACY_WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_FILE} or {LEGACY_WEIGHTS_FILE}")
    state = read_state_dict(weights)
    model, _ = build_classifier(config["arch"], len(config["classes"]), pretrained=False,
                                head=config.get("head"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights}: does not match {config['arch']} with {len(config['classes'])} classes: "
                         f"{str(exc).splitlines()[0]}") from None
    model.eval()
    log.info("loaded %s (%s, %d classes)", weights, config["arch"], len(config["classes"]))
    return LoadedModel(model=model, config=config, weights_path=weights, classes=list(config["classes"]))
