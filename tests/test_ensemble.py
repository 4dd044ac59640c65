"""fashion.ensemble: several classifiers exported, loaded and embedded as one model (no pickle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fashion import datasets, modelio, training  # noqa: E402
from fashion.errors import FormatError  # noqa: E402

from factories import make_folder, one_thread  # noqa: E402,F401  (one_thread: autouse)

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}
ARCHS = ("efficientnet_lite0", "efficientnet_lite1")




def ensemble_info(**kw) -> modelio.ModelInfo:
    base = dict(arch="+".join(ARCHS), classes=tuple(COLOURS), size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                members=tuple({"arch": a, "feature_dim": 1280, "head": dict(modelio.DEFAULT_HEAD)} for a in ARCHS))
    base.update(kw)
    return modelio.ModelInfo(**base)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained Lite0 + Lite1 ensemble (random weights) written as a model directory."""
    torch.manual_seed(0)
    info = ensemble_info()
    model = modelio.build_model(info).eval()
    out = tmp_path_factory.mktemp("ensemble")
    modelio.export_model(out, model, info)
    return out, model, info


def test_ensemble_output_is_the_log_of_the_members_mean_probabilities(exported):
    _, model, _ = exported
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in model.members]).mean(0)
        assert torch.allclose(torch.softmax(model(x), 1), mean, atol=1e-5)


def test_load_model_rebuilds_the_ensemble_from_safetensors_and_json(exported):
    out, model, info = exported
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    loaded = modelio.load_model(out)
    assert loaded.is_ensemble and loaded.info.members == info.members
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model(x), atol=1e-5)
    with pytest.raises(ValueError):
        loaded.head  # one head per member


def test_ensemble_embeddings_give_each_member_equal_weight(exported):
    out, _, _ = exported
    loaded = modelio.load_model(out)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        body, none = loaded.embedding_parts("body")
        pooled = body(x).mean(dim=(2, 3))
        assert none is None and pooled.shape == (3, 2560)
        assert torch.allclose(pooled[:, :1280].norm(dim=1), torch.ones(3), atol=1e-4)
        assert torch.allclose(pooled[:, 1280:].norm(dim=1), torch.ones(3), atol=1e-4)
        raw, head = loaded.embedding_parts("head")
        feats = head(raw(x))
        assert feats.shape == (3, 1024)
        assert torch.allclose(feats[:, :512].norm(dim=1), torch.ones(3), atol=1e-4)


def test_measure_sim_embeds_with_an_ensemble_model_dir(exported, tmp_path):
    from fashion.embedding import Embedder

    out, _, _ = exported
    root = make_folder(tmp_path / "d", COLOURS, 2, size=(40, 40))
    items = datasets.load(root, format="folder").frame
    for layer, dim in (("body", 2560), ("head", 1024)):
        result = Embedder.from_model_dir(out, layer=layer, runtime="torch", precision="fp32").embed(
            items, num_workers=0, progress=False)
        assert result.vectors.shape == (len(items), dim) and result.ok.all()


@pytest.mark.parametrize("members", [[{"arch": "efficientnet_lite0", "feature_dim": 1280}],
                                     [{"arch": "", "feature_dim": 1280}, {"arch": "x", "feature_dim": 1}],
                                     [{"arch": "a", "feature_dim": 0}, {"arch": "b", "feature_dim": 8}], "lite0"])
def test_model_json_rejects_bad_members_naming_the_key(exported, members):
    data = ensemble_info().to_json()
    data["members"] = members
    with pytest.raises(FormatError, match="members"):
        modelio.ModelInfo.from_json(data, source="model.json")


def test_weights_of_another_ensemble_are_one_format_error(exported, tmp_path):
    out, _, info = exported
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    data = info.to_json()
    data["members"] = [dict(m, arch="efficientnet_lite2") for m in data["members"]]
    (other / "model.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match="does not match"):
        modelio.load_model(other)


@pytest.mark.slow  # two members' training runs: minutes on the shared cores
def test_train_with_ensemble_exports_one_model(tmp_path):
    items = datasets.load(make_folder(tmp_path / "d", COLOURS, 3, splits=("train", "valid", "test"), size=(40, 40)),
                          format="folder").frame
    cfg = training.TrainConfig(arch=ARCHS[0], ensemble=ARCHS[1:], size=32, final_size=32, epochs=(1, 0, 0), lr=1e-3,
                               batch_size=4, pretrained=False, leak_check=False, hard_check=False, seed=0)
    out = tmp_path / "out"
    result = training.train(items, cfg, out)
    info = modelio.ModelInfo.read(out)
    assert [m["arch"] for m in info.members] == list(ARCHS) and info.arch == "+".join(ARCHS)
    for arch in ARCHS:  # each member is a model directory of its own
        assert modelio.ModelInfo.read(out / "members" / arch).arch == arch
    loaded = modelio.load_model(out)
    from PIL import Image

    photos = [Image.open(p).convert("RGB") for p in items[items["split"] == "test"]["path"]]
    predicted = loaded.predict(photos).argmax(1).numpy()
    saved = json.loads((out / "metrics.json").read_text())["test"]["accuracy"]
    labels = items[items["split"] == "test"]["label"].map({c: i for i, c in enumerate(loaded.classes)}).to_numpy()
    assert (predicted == labels).mean() == pytest.approx(saved, abs=1 / len(labels) + 1e-9)
    assert result.metrics["test"]["n"] == len(labels)
