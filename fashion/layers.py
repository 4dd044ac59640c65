"""torch modules that :mod:`fashion.backbones` wraps networks in (imports torch: import it lazily)."""

from __future__ import annotations

from torch import nn


class TimmFeatures(nn.Module):
    """Any timm model whose forward returns ``model.forward_features(x)``: (N, num_features, h, w).

    Some timm heads run layers after pooling (MobileNetV3's ``conv_head``), so resetting the
    classifier is not enough for an arbitrary model; ``forward_features`` is timm's contract.
    (Transformers return tokens (N, L, C) there, not a map: use CNNs as backbones.)
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        inner.reset_classifier(0)  # the classifier's weights are never used
        self.model = inner

    def forward(self, x):
        return self.model.forward_features(x)
