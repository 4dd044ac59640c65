"""A run embedded with OpenVINO is served from its saved network (fashion.embedding.ir): no torch in the
serving process, the same vectors as the run's, and a saved network keyed by the model's content."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factories import noisy_jpeg

pytest.importorskip("openvino")

COLORS = {"red": (210, 30, 30), "green": (30, 170, 40), "blue": (40, 60, 210)}
REPO = Path(__file__).resolve().parents[1]

# a serving process: open the run, answer /healthz, a photo search, an id search and a words query through
# the app (TestClient: no socket), then list the torch-side modules it imported
SERVE = """
import json, sys
from fastapi.testclient import TestClient
from fashion.server import create_app
from fashion.service import SimilarityService
service = SimilarityService.open(sys.argv[1])
with TestClient(create_app(service), base_url="http://localhost") as client:
    assert client.get("/healthz").status_code == 200
    with open(sys.argv[2], "rb") as f:
        found = client.post("/api/search", files={"image": ("p.jpg", f, "image/jpeg")}, data={"k": "2"}).json()
    assert client.get("/api/items/0/neighbors?k=2").status_code == 200
    assert client.get("/api/search?text=red").status_code == 200
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "timm", "fastai"})
print(json.dumps({"heavy": heavy, "kind": type(service.embedder).__name__, "first": found["results"][0],
                  "prediction": found["prediction"]}))
"""


@pytest.fixture(scope="module")
def openvino_run(tmp_path_factory):
    """A run of 9 photos embedded with OpenVINO by the bundled trained model (at its own input size: one pass gives vector and class)."""
    from fashion.retrieval import MeasureConfig, run

    base = tmp_path_factory.mktemp("ir")
    for c, (label, color) in enumerate(COLORS.items()):
        for i in range(3):
            noisy_jpeg(base / "root" / label / f"{label}_{i}.jpg", color, seed=50 + 10 * c + i, size=(40, 56))
    out = base / "run"
    run(MeasureConfig(input=os.fspath(base / "root"), output_dir=os.fspath(out), batch_size=4, k=3,
                      grids=0, num_workers=0, runtime="openvino"))
    assert json.loads((out / "run.json").read_text())["embedder"]["runtime"] == "openvino"
    return base


def _serve(run_dir: Path, photo: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.fspath(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SERVE, os.fspath(run_dir), os.fspath(photo)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_served_openvino_run_imports_no_torch(openvino_run):
    from fashion.embedding import ir

    run_dir, photo = openvino_run / "run", openvino_run / "root" / "green" / "green_1.jpg"
    first = _serve(run_dir, photo)  # converts once and saves the network under the run's cache/
    saved = list((run_dir / ir.IR_DIR[0] / ir.IR_DIR[1]).iterdir())
    assert len(saved) == 1 and ir.is_saved(saved[0]) and (saved[0] / ir.CLASSES).is_file()
    again = _serve(run_dir, photo)  # every later start: the saved network, no torch, timm or fastai
    assert again["heavy"] == [] and again["kind"] == "SavedNetwork"
    for answer in (first, again):  # the gallery photo finds itself, as the run embedded it; same prediction
        assert answer["first"]["relpath"] == "green/green_1.jpg" and answer["first"]["distance"] < 1e-5
    assert again["prediction"] == first["prediction"] and again["prediction"]["label"]  # the clothing model's class


def test_the_saved_network_gives_the_embedders_vectors(openvino_run):
    import numpy as np

    from fashion.embedding import Embedder, EmbedderSpec
    from fashion.embedding.ir import SavedNetwork
    from fashion.service.loading import embedder_for

    import torch

    info = json.loads((openvino_run / "run" / "run.json").read_text())
    served = embedder_for(info, openvino_run / "run")
    assert isinstance(served, SavedNetwork)
    assert served.compiled.get_property("INFERENCE_NUM_THREADS") == 1  # fashion.service.loading.INFERENCE_THREADS
    embedder = Embedder.from_spec(EmbedderSpec.from_json(info["embedder"]))
    saved = SavedNetwork(next((openvino_run / "run" / "cache" / "openvino-ir").iterdir()),
                         threads=torch.get_num_threads())
    assert saved.can_classify == embedder.can_classify
    pixels = np.random.default_rng(0).integers(0, 256, (3, saved.size, saved.size, 3), dtype=np.uint8)
    (v1, p1), (v2, p2) = saved.infer(pixels), embedder.infer(pixels)
    # the same network compiled from the saved IR: equal to the last bits of float32 (not bitwise: seen
    # 1 ulp apart; the gallery photo's own distance stays < 1e-5 above)
    assert v1.dtype == np.float32 and np.abs(v1 - v2).max() < 1e-6 and np.allclose(p1, p2, atol=1e-6)
    stored = np.load(openvino_run / "run" / "embeddings.npy")[:4]
    last = embedder.classes  # the head's last Linear (no bias in the bundled model's head)
    weight = last.weight.detach().numpy()
    bias = last.bias.detach().numpy() if last.bias is not None else 0.0
    from fashion.service.filtering import class_scores

    assert np.allclose(class_scores(stored, *saved.class_weights), _softmax(stored @ weight.T + bias), atol=1e-6)


def _softmax(x):
    import numpy as np

    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_saved_network_is_keyed_by_the_models_content(openvino_run, tmp_path):
    from fashion.embedding import ir
    from fashion.errors import FashionError
    from fashion.service.loading import embedder_for

    info = json.loads((openvino_run / "run" / "run.json").read_text())
    described = info["embedder"]
    key = ir.ir_digest(described, True)
    assert ir.ir_digest(dict(described), True) == key  # the same model: the same network
    assert ir.ir_digest({**described, "checksum": "0" * 64}, True) != key  # retrained weights: another one
    assert ir.ir_digest({**described, "size": 96}, True) != key and ir.ir_digest(described, False) != key
    # a model directory whose weights changed since the run: refused, not served from the old network
    model = tmp_path / "model"
    shutil.copytree(described["model_dir"], model)
    weights = next(p for p in model.iterdir() if p.name.startswith("model.") and p.suffix != ".json")
    weights.write_bytes(weights.read_bytes() + b"\0")
    changed = {**info, "embedder": {**described, "model_dir": os.fspath(model)}}
    with pytest.raises(FashionError, match="changed"):
        embedder_for(changed, openvino_run / "run")
