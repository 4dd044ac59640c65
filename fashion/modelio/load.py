"""Reading a model directory back for inference, without unpickling: :func:`load_model`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import FormatError
from ..heads import penultimate
from .classifier import build_model
from .export import weights_file
from .info import ModelInfo
from .storage import float_state

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

log = logging.getLogger("fashion.modelio")


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

    from ..resize import resize_image

    arrays = [resize_image(im.convert("RGB"), size, "squish") for im in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def load_model(directory) -> LoadedModel:
    """Rebuild the classifier of a ``fashion train`` output directory; no pickled code is run.

    Reads ``model.json``, builds ``create_backbone(arch, pretrained=False)`` + the head, and loads
    ``model.safetensors`` (or ``model.pth`` with ``torch.load(weights_only=True)``) strictly, its int8 or
    float16 tensors (:mod:`.storage`: the bundled model's) into the float32 network.
    """
    from ..backbones import read_state_dict

    from ..rundir import has_manifest, verify

    directory = Path(directory)
    if has_manifest(directory):  # a `fashion train` output: exactly the files its run sealed
        verify(directory)
    info = ModelInfo.read(directory)
    weights = weights_file(directory)
    try:
        state = float_state(read_state_dict(weights))
    except ValueError as exc:
        raise FormatError(str(exc), weights) from None
    model = build_model(info)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"does not match {info.arch} with {len(info.classes)} classes: "
                          f"{str(exc).splitlines()[0]}", weights) from None
    model.eval()
    log.info("loaded %s (%s, %d classes)", weights, info.arch, len(info.classes))
    return LoadedModel(model=model, info=info, weights_path=weights)
