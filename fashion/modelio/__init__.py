"""The trained classifier: building it, exporting it and loading it back without unpickling.

A classifier is ``nn.Sequential(body, head)``: the body from :mod:`fashion.backbones` (feature map
(N, C, h, w)) and fastai's ``create_head`` (concat pooling → BN/dropout/linear 2C→512 → ReLU →
BN/dropout/linear 512→n_classes). An exported model directory holds

- ``model.safetensors`` — the state dict of that ``nn.Sequential`` (tensors only, no code);
- ``model.json`` — arch, classes, sizes, normalisation, head settings, metrics and the TrainConfig.

:func:`load_model` rebuilds the network from ``model.json`` (``create_backbone(arch, pretrained=False)``
+ head) and loads the tensors: nothing in the directory can run code.

Modules, one job each: :mod:`.info` (``model.json``: :class:`ModelInfo`, validated), :mod:`.classifier`
(building the network), :mod:`.export` (writing a model directory; the bundled model's; the weights' checksum),
:mod:`.load` (reading one back: :class:`LoadedModel`), :mod:`.storage` (the tensors' storage type: float32, float16
or int8 with a scale per output channel).
"""

from __future__ import annotations

from .classifier import build_classifier, build_model, layer_groups, splitter
from .export import (LEGACY_WEIGHTS_FILE, WEIGHTS_FILE, bundled_model_dir, export_model, save_state_dict, weights_file,
                     weights_sha256)
from .info import CONFIG_FILE, DEFAULT_HEAD, FORMAT_VERSION, MAX_FEATURES, MAX_IMAGE_SIZE, ModelInfo
from .load import LoadedModel, load_model, preprocess
from .storage import DTYPES, float_state, stored_state

__all__ = ["build_classifier", "build_model", "layer_groups", "splitter", "LEGACY_WEIGHTS_FILE", "WEIGHTS_FILE", "weights_file",
           "weights_sha256",
           "bundled_model_dir", "export_model", "save_state_dict", "CONFIG_FILE", "DEFAULT_HEAD", "FORMAT_VERSION",
           "MAX_FEATURES", "MAX_IMAGE_SIZE", "ModelInfo", "LoadedModel", "load_model", "preprocess", "DTYPES", "float_state",
           "stored_state"]
