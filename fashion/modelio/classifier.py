"""The classifier network: ``nn.Sequential(body, head)`` (or an ensemble of them), its layer groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .info import DEFAULT_HEAD, ModelInfo

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def build_classifier(arch: str, n_classes: int, pretrained: bool = True, weights=None,
                     head: dict | None = None):
    """``nn.Sequential(body, head)`` mapping (N, 3, H, W) → (N, n_classes) logits, and the BackboneConfig."""
    from fastai.vision.learner import create_head
    from torch import nn

    from ..backbones import create_backbone

    if n_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
    body, cfg = create_backbone(arch, pretrained=pretrained, weights=weights)
    head_cfg = {**DEFAULT_HEAD, **(head or {})}
    return nn.Sequential(body, create_head(cfg.feature_dim, n_classes, **head_cfg)), cfg


def layer_groups(model: "nn.Sequential") -> list[list["nn.Module"]]:
    """Three groups for discriminative LRs and freezing: [body early, body late, head]."""
    from ..backbones import body_groups

    early, late = body_groups(model[0], 2)
    return [early, late, [model[1]]]


def splitter(model: "nn.Sequential") -> list[list["nn.Parameter"]]:
    """fastai splitter: parameters of :func:`layer_groups`, so ``freeze()`` trains the head only."""
    return [[p for module in group for p in module.parameters()] for group in layer_groups(model)]


def build_model(info: ModelInfo) -> "nn.Module":
    """The untrained network ``info`` describes: a classifier, or an :class:`~fashion.ensemble.EnsembleClassifier`."""
    if not info.members:
        return build_classifier(info.arch, len(info.classes), pretrained=False, head=info.head)[0]
    from ..ensemble import EnsembleClassifier

    members = [build_classifier(m["arch"], len(info.classes), pretrained=False, head=m["head"])[0]
               for m in info.members]
    return EnsembleClassifier(members, [m["feature_dim"] for m in info.members])
