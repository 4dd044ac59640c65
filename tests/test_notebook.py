"""train.ipynb runs top to bottom (papermill) on the bundled sample with tiny settings.

Slow (a few minutes on two cores): the same library path is covered quickly by
tests/test_training.py::test_train_writes_every_output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "train.ipynb"


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.slow
def test_notebook_runs_on_the_sample(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "run"
    # the kernel runs in tmp_path: without this it would import the installed fashion, not this checkout's
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NOTEBOOK.parent), os.environ.get("PYTHONPATH")])))
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "train.out.ipynb"), kernel_name="python3", cwd=str(tmp_path),
        parameters={"output_dir": str(out), "size": 64, "final_size": 64, "epochs": 1, "batch_size": 16,
                    "lr_find_iters": 5},
        progress_bar=False)
    for name in ("model.safetensors", "model.json", "metrics.json", "history.csv", "confusion_matrix.png",
                 "top_losses.png", "suspect_labels.csv", "lr_find_stage3.png", "loss_stage3.png", "run.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 61 and metrics["counts"]["classes"] == 10
    executed = json.loads((tmp_path / "train.out.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    figures = [o for o in outputs if str(o.get("data", {}).get("text/plain", "")).startswith("['<Figure")
               or "".join(o.get("data", {}).get("text/plain", "")).startswith("<Figure")]
    assert len(figures) >= 9 and all("image/png" in o["data"] for o in figures)  # every stage's figures render
    stderr = ["".join(o["text"]) for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, stderr  # logs are plain output; no IProgress or deprecation notices
    # lr_find_iters=5: every curve is too short; each LR-finder cell says so and the stages fall back
    stdout = "".join("".join(o["text"]) for o in outputs if o.get("output_type") == "stream")
    assert f"root: {NOTEBOOK.parent / 'fashion' / 'data' / 'sample'}" in stdout  # this checkout's library ran
    assert stdout.count("is not used because only 1 point on the curve") == 3
    # the bundled clothing model on the same 61 test photos (the sample's photos are ones it never saw)
    assert "bundled model: top-1 " in stdout and "on 61 test photos" in stdout
    # the perturbed-photo figures beside the test figure (#30), all three checks
    assert "the same photos perturbed: {'perturbed photos': " in stdout and "'garment smaller in the frame': " in stdout
    info = json.loads((out / "run.json").read_text())
    assert [d["source"] for d in info["lr_decisions"]] == ["fallback"] * 3

