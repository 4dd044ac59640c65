"""Smoke test: benchmarks/outofsplit.py runs on a tiny split folder with a random-weight model directory
and reports every figure; a test photo copied from train is never counted unseen."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factories import make_garment_folder

# a whole benchmark script (two embedding passes, three perturbations, a K-fold): the slow set
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "outofsplit.py"


def test_outofsplit_benchmark_on_a_tiny_split(tmp_path):
    import torch

    from fashion.modelio import ModelInfo, build_classifier, export_model

    data = tmp_path / "data"
    make_garment_folder(data / "train", ["red", "blue", "yellow"], per_family=2, size=(90, 120))
    make_garment_folder(data / "validation", ["green"], per_family=2, size=(90, 120))
    make_garment_folder(data / "test", ["purple", "orange"], per_family=2, size=(90, 120))
    shutil.copy(data / "train" / "tee" / "red_0.jpg", data / "test" / "tee" / "copied_from_train.jpg")
    torch.manual_seed(0)
    model, _ = build_classifier("efficientnet_lite0", 2, pretrained=False)
    export_model(tmp_path / "model", model.eval(), ModelInfo(arch="efficientnet_lite0", classes=("ball", "tee"),
                                                               size=64, mean=(0.5,) * 3, std=(0.5,) * 3))
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data", os.fspath(data), "--model", os.fspath(tmp_path / "model"),
                           "--cache-dir", os.fspath(tmp_path / "cache"), "--perturbations", "all,background,scale",
                           "--twin-thresholds", "0.001,0.2", "--thresholds", "0.001", "--folds", "2", "--seeds", "0",
                           "--pairs-sheet", os.fspath(tmp_path / "pairs_"), "--sheet", os.fspath(tmp_path / "twins.png"), "--json", os.fspath(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": os.fspath(SCRIPT.parents[1])})
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert set(figures["top1"]) == {"none", "all", "background", "scale"}
    assert all(0 <= v["test"] <= 1 for v in figures["top1"].values())
    strict = figures["unseen"]["0.001"]
    assert strict["n_test"] == 9 and strict["n_unseen"] == 8  # the copy has a twin in train, nothing else that close
    assert figures["unseen"]["0.2"]["n_unseen"] <= 8
    cv = figures["groups"]["0.001"]["cv"]
    assert cv["n"] == 25 and 0 <= cv["plain"] <= 1 and 0 <= cv["grouped"] <= 1
    assert "unseen test photos" in proc.stdout and "proxy" in proc.stdout
    assert len(list(tmp_path.glob("pairs_*.png"))) == 6 and (tmp_path / "twins.png").is_file()
