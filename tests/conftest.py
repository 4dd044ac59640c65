"""Test-wide settings and the shared session fixtures: headless Chromium, the sample runs, the one Ray."""

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


RAY_LOOPBACK = "127.0.0.1"


def ray_processes(temp_dir) -> list[int]:
    """Pids of the processes whose command line names ``temp_dir`` (a Ray's own temporary directory)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(temp_dir) in part for part in (p.info["cmdline"] or [])):
                found.append(p.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _listening(pids) -> set:
    import psutil

    pids = set(pids)
    return {c.laddr.ip for c in psutil.net_connections("inet") if c.status == "LISTEN" and c.pid in pids}


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The one Ray of the test session, for every ``ray`` test; yields its GCS address.

    Loopback only (2 CPUs, ~300 MB object store, no dashboard, node IP 127.0.0.1, checked: every process
    listens on it), its temp dir under the test's temporary directory; shut down at the session's end,
    checked that none of its processes is left. Token authentication is off for this loopback-only
    cluster (``RAY_AUTH_MODE=disabled``), so no token file is written (Ray would otherwise create
    ``~/.ray/auth_token``); Ray reads these variables at import, so they are set before it is imported."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep 127.0.0.1 as the node address
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import time

    ray = pytest.importorskip("ray", reason="the [scale] extra is not installed (pip install -e '.[scale]')")
    base = tmp_path_factory.mktemp("ray")
    env = {"RAY_TMPDIR": str(base)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    temp_dir = base / "t"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, _node_ip_address=RAY_LOOPBACK,
             _temp_dir=str(temp_dir), log_to_driver=False)
    try:
        nodes = ray.nodes()
        assert nodes and all(n["NodeManagerAddress"] == RAY_LOOPBACK for n in nodes), nodes
        assert ray.get_runtime_context().gcs_address.startswith(RAY_LOOPBACK + ":")
        listening = _listening(ray_processes(temp_dir))
        assert listening and all(ip in (RAY_LOOPBACK, "::ffff:127.0.0.1") for ip in listening), listening
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        deadline = time.time() + 30
        while ray_processes(temp_dir) and time.time() < deadline:
            time.sleep(0.5)
        assert not ray_processes(temp_dir), "Ray processes left behind"
