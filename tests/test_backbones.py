"""Tests of the backbone registry (fashion.backbones)."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

from fashion import backbones
from fashion.backbones import BackboneConfig, WeightsUnavailableError, create_backbone, list_backbones


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        create_backbone("no_such_net", pretrained=False)
    message = str(info.value)
    assert "no_such_net" in message
    for name in list_backbones():
        assert name in message


def test_registry_has_builtin_entries():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
            "resnet18", "resnet34", "resnet50"} <= set(list_backbones())


@pytest.mark.parametrize("name", sorted(set(list_backbones()) | {"timm:mobilenetv3_small_050", "resnet10t"}))
def test_every_entry_builds_and_gives_a_feature_map(name):
    body, cfg = create_backbone(name, pretrained=False)
    assert isinstance(cfg, BackboneConfig) and cfg.source == "random"
    assert len(cfg.mean) == 3 and len(cfg.std) == 3 and cfg.input_size > 0
    body.eval()
    with torch.no_grad():
        out = body(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, cfg.feature_dim, 2, 2)  # stride 32
    early, late = backbones.body_groups(body)
    assert early and late


def test_lite_configs_use_tf_normalisation_and_sizes():
    sizes = {}
    for n in (0, 1, 2):
        _, cfg = create_backbone(f"efficientnet_lite{n}", pretrained=False)
        assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)
        sizes[n] = cfg.input_size
    assert sizes == {0: 224, 1: 240, 2: 260}


def test_bundled_lite0_weights_classify_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    model, cfg = backbones.create_imagenet_model("efficientnet_lite0")
    assert cfg.source.startswith("package:")
    image = Image.fromarray(skimage_data.chelsea()).resize((cfg.input_size, cfg.input_size))
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1)[None] / 255
    x = (x - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(cfg.std)[:, None, None]
    with torch.no_grad():
        top = model.eval()(x).argmax(1).item()
    assert 281 <= top <= 285  # ImageNet's domestic cat classes


def test_bundled_weights_body_is_the_classifier_body():
    body, cfg = create_backbone("efficientnet_lite0")
    assert cfg.source.startswith("package:") and cfg.feature_dim == 1280
    model, _ = backbones.create_imagenet_model("efficientnet_lite0")
    assert torch.equal(body.state_dict()["conv_stem.weight"], model.state_dict()["conv_stem.weight"])


def test_resnet_offline_gives_one_clear_line(monkeypatch):
    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("resnet50")
    message = str(info.value)
    assert "\n" not in message
    assert "ResNet50_Weights.IMAGENET1K_V2" in message and "resnet50-11ad3fa6.pth" in message
    assert "--weights" in message


def test_timm_hub_offline_gives_clear_error(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("offline")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsUnavailableError, match="weights=PATH"):
        create_backbone("timm:resnet10t")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_round_trip(tmp_path, suffix):
    full, _ = backbones.create_imagenet_model("resnet18", pretrained=False)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(full.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(full.state_dict(), str(path))
    loaded, cfg = create_backbone("resnet18", weights=path)
    assert cfg.source == f"file:{path}"
    expected = {k: v for k, v in full.state_dict().items() if not k.startswith("fc.")}
    got = loaded.state_dict()
    assert len(got) == len(expected)
    for (k1, v1), v2 in zip(expected.items(), got.values()):
        assert torch.equal(v1, v2), k1


def test_lite_weights_file_loads_by_position(tmp_path):
    path = backbones._lite_package_weights("efficientnet_lite0")  # EfficientNet-PyTorch key names
    body, cfg = create_backbone("efficientnet_lite0", weights=path)
    reference, _ = create_backbone("efficientnet_lite0")
    assert cfg.source == f"file:{path}"
    assert all(torch.equal(a, b) for a, b in zip(body.state_dict().values(), reference.state_dict().values()))


def test_shape_mismatch_is_reported(tmp_path):
    full, _ = backbones.create_imagenet_model("resnet18", pretrained=False)
    state = {f"k{i}": v for i, v in enumerate(full.state_dict().values())}
    state["k0"] = torch.zeros(1, 2, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="shape"):
        create_backbone("resnet18", weights=path)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, path)
    with pytest.raises(WeightsUnavailableError):
        create_backbone("resnet18", weights=path)


def test_import_fashion_backbones_is_light():
    import subprocess
    import sys

    code = "import sys, fashion.backbones; assert 'torch' not in sys.modules and 'timm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
