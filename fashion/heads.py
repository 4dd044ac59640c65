"""The classifier head's parts that retrieval uses (imports torch lazily); shared by the single model
(:mod:`fashion.modelio`) and the ensemble (:mod:`fashion.ensemble`) without either importing the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def penultimate(head: "nn.Sequential") -> "nn.Sequential":
    """The head without its last Linear: feature map (N, C, h, w) → (N, 512) penultimate features."""
    from torch import nn

    if not (isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear)):
        raise ValueError("expected a fastai create_head head ending in nn.Linear")
    return head[:-1]


def last_layer(head: "nn.Sequential") -> "nn.Linear":
    """The head's last Linear: :func:`penultimate` features (N, 512) → class logits (N, n_classes), so
    ``last_layer(head)(penultimate(head)(fmap)) == head(fmap)``."""
    penultimate(head)  # the same check of the head's shape
    return head[-1]


def linear_arrays(layer: "nn.Linear") -> tuple:
    """(weight (c, d), bias (c,)) of a Linear as float32 numpy arrays (zeros where it has no bias): what
    scores stored vectors without torch (:func:`fashion.service.filtering.class_scores`)."""
    import numpy as np

    weight = layer.weight.detach().numpy().astype(np.float32, copy=False)
    bias = (layer.bias.detach().numpy().astype(np.float32, copy=False) if layer.bias is not None
            else np.zeros(layer.out_features, np.float32))
    return weight, bias
