"""Test-wide settings and the shared headless-Chromium fixture."""

import os
import shutil

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

CHROMIUM = os.environ.get("FASHION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, no sandbox (CI runs as root), and none of the background traffic a closed network refuses.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """A Playwright Browser on Debian's Chromium; skips with the reason when either is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright's Python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """A small finished run on the bundled sample (60 photos, torch runtime, k = 5): the service tests' data.
    The bare ImageNet backbone (no trained head, so photo searches carry no prediction); the bundled
    model's run is tests/test_bundle_model.py's."""
    from fashion.retrieval import MeasureConfig, run

    out = tmp_path_factory.mktemp("sample_run") / "out"
    run(MeasureConfig(output_dir=os.fspath(out), arch="efficientnet_lite0", limit=60, k=5, grids=0, runtime="torch",
                      num_workers=0))
    return out


@pytest.fixture(scope="session")
def sample_service(sample_run):
    """:class:`fashion.service.SimilarityService` over :func:`sample_run`, opened once."""
    from fashion.service import SimilarityService

    return SimilarityService.open(sample_run)


@pytest.fixture(scope="module")
def client(sample_service):
    """FastAPI's TestClient on :func:`sample_service`'s app, as a browser on localhost would call it
    (the Host allow-list admits localhost)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fashion.server import create_app

    with TestClient(create_app(sample_service), base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="session")
def model_run(tmp_path_factory):
    """A run made with a (random-weight) trained-model directory whose training left a suspects report."""
    import json

    import numpy as np
    import pandas as pd
    import torch

    from fashion import sample
    from fashion.modelio import ModelInfo, build_classifier, export_model
    from fashion.retrieval import MeasureConfig, run

    classes = sorted(p.name for p in (sample.sample_root() / "img").iterdir())
    torch.manual_seed(0)
    model, _ = build_classifier("efficientnet_lite0", len(classes), pretrained=False)
    base = tmp_path_factory.mktemp("model_run")
    export_model(base / "model", model.eval(), ModelInfo(arch="efficientnet_lite0", classes=tuple(classes), size=64,
                                                         mean=(0.5,) * 3, std=(0.5,) * 3))
    out = base / "out"
    run(MeasureConfig(output_dir=str(out), model=str(base / "model"), limit=20, k=3, grids=0, runtime="torch",
                      num_workers=0))
    from fashion.run.reader import read_items

    items = read_items(out)
    pd.DataFrame({"path": [items["path"].iloc[4], items["path"].iloc[2], "/elsewhere/not_in_run.jpg"],
                  "label": ["Hat", "Dress", "Skirt"], "predicted": ["Shirt", "Pants", "Dress"],
                  "label_prob": [0.01, 0.02, 0.03], "predicted_prob": [0.9, 0.8, 0.7]}
                 ).to_csv(base / "model" / "suspect_labels.csv", index=False)
    # what training writes beside it: cleanlab judged with a weak model (evaluate.suspect_caveat)
    from fashion.training.evaluate import suspect_caveat

    trust = suspect_caveat(np.array([0, 1, 2, 0]), np.eye(3)[[0, 2, 0, 1]])
    (base / "model" / "metrics.json").write_text(json.dumps({"suspect_labels": {"n": 2, "judged": 4, **trust}}))
    return out, classes
