"""An ensemble of trained classifiers that exports, loads and embeds as one model (#15).

:class:`EnsembleClassifier` holds the members (each ``nn.Sequential(body, head)`` of
:func:`fashion.modelio.build_classifier`, all fed the same normalised image) and returns the log of
their mean class probabilities: ``softmax`` of its output is the mean of the members' softmaxes, so it
trains, evaluates and predicts wherever a classifier's logits are expected. Its state dict is the
members' (``members.<i>.0.…`` body, ``members.<i>.1.…`` head), saved as safetensors; ``model.json``
lists each member's arch, feature_dim and head (:class:`fashion.modelio.ModelInfo` ``members``).

Embeddings (``measure_sim.py --model DIR``) — the decision, so that no member outweighs another:

- ``layer="body"``: each member's feature map divided by the L2 norm of its pooled vector, maps
  concatenated along channels (:class:`EnsembleBody` with ``normalise=True``); pooled, that is the
  concatenation of the members' unit vectors (d = sum of feature_dims), normalised once more downstream.
- ``layer="head"``: each member's penultimate features (from its raw feature map), L2-normalised, then
  concatenated (:class:`EnsemblePenultimate`; d = 512 per member).

Members must share the input normalisation and the feature map's stride (EfficientNet-Lite0/1/2 do).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _unit(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return x / x.norm(dim=dim, keepdim=True).clamp_min(1e-12)


class EnsembleClassifier(nn.Module):
    """(N, 3, S, S) normalised → (N, c) log of the members' mean probabilities."""

    def __init__(self, members: Sequence[nn.Module], feature_dims: Sequence[int]):
        super().__init__()
        if len(members) < 2 or len(feature_dims) != len(members):
            raise ValueError(f"an ensemble needs at least 2 members and one feature_dim each, got "
                             f"{len(members)} and {list(feature_dims)}")
        self.members, self.feature_dims = nn.ModuleList(members), [int(d) for d in feature_dims]

    def forward(self, x):
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()

    def body(self, normalise: bool) -> "EnsembleBody":
        return EnsembleBody([m[0] for m in self.members], normalise)

    def penultimate(self) -> "EnsemblePenultimate":
        from .heads import penultimate

        return EnsemblePenultimate([penultimate(m[1]) for m in self.members],
                                   self.feature_dims)


class EnsembleBody(nn.Module):
    """(N, 3, S, S) → (N, sum C_i, h, w): the members' feature maps side by side (see the module doc)."""

    def __init__(self, bodies: Sequence[nn.Module], normalise: bool):
        super().__init__()
        self.bodies, self.normalise = nn.ModuleList(bodies), normalise

    def forward(self, x):
        maps = [b(x) for b in self.bodies]
        if len({m.shape[-2:] for m in maps}) != 1:
            raise ValueError(f"ensemble members' feature maps differ in size: {[tuple(m.shape) for m in maps]}")
        if self.normalise:
            maps = [m / m.float().mean(dim=(2, 3), keepdim=True).norm(dim=1, keepdim=True).clamp_min(1e-12)
                    for m in maps]
        return torch.cat(maps, dim=1)


class EnsemblePenultimate(nn.Module):
    """(N, sum C_i, h, w) raw feature maps → (N, sum d_i): each member's penultimate features, unit length."""

    def __init__(self, heads: Sequence[nn.Module], channels: Sequence[int]):
        super().__init__()
        self.heads, self.channels = nn.ModuleList(heads), list(channels)

    def forward(self, fmap):
        parts = torch.split(fmap, self.channels, dim=1)
        return torch.cat([_unit(h(p).float()) for h, p in zip(self.heads, parts)], dim=1)
