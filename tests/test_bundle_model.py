"""scripts/bundle_model.py: a run's model copied into the package with float16 weights, and the bundled
model (fashion/data/model) that entry points use when given no --model and no --arch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fashion.modelio import CONFIG_FILE, WEIGHTS_FILE, ModelInfo, build_classifier, export_model, load_model  # noqa: E402

from factories import load_script, make_folder, one_thread  # noqa: E402,F401

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bundle_model.py"
bundle = load_script("scripts/bundle_model.py")

COLORS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


@pytest.fixture()
def run_dir(tmp_path):
    torch.manual_seed(0)
    model, _ = build_classifier("efficientnet_lite0", 3, pretrained=False)
    out = tmp_path / "run"
    export_model(out, model.eval(), ModelInfo(arch="efficientnet_lite0", classes=tuple(sorted(COLORS)), size=48,
                                              mean=(0.5,) * 3, std=(0.5,) * 3, metrics={"accuracy": 0.5}))
    return out


def test_bundle_stores_float16_that_loads_into_the_float32_network(run_dir, tmp_path):
    from safetensors import safe_open

    dst = tmp_path / "pkg" / "model"
    dst.mkdir(parents=True)
    (dst / "README.md").write_text("# card\n")
    bundle.bundle_model(run_dir, dst)
    assert (dst / CONFIG_FILE).read_bytes() == (run_dir / CONFIG_FILE).read_bytes()
    assert (dst / "README.md").read_text() == "# card\n"  # the hand-written card stays
    with safe_open(str(dst / WEIGHTS_FILE), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert (dst / WEIGHTS_FILE).stat().st_size < 0.55 * (run_dir / WEIGHTS_FILE).stat().st_size
    ref, stored = load_model(run_dir), load_model(dst)
    assert next(stored.model.parameters()).dtype == torch.float32
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(ref.model(x), stored.model(x), atol=2e-2)
    bundle.bundle_model(run_dir, dst, dtype="float32")
    with torch.no_grad():
        assert torch.equal(ref.model(x), load_model(dst).model(x))
    bundle.bundle_model(run_dir, dst, dtype="int8")  # weight matrices and kernels as int8, a scale per channel
    assert (dst / WEIGHTS_FILE).stat().st_size < 0.3 * (run_dir / WEIGHTS_FILE).stat().st_size
    with torch.no_grad():  # an untrained net has no accuracy to keep: the real one is checked on photos (--data)
        expected = ref.model(x)
        assert torch.allclose(expected, load_model(dst).model(x), atol=0.1 * expected.abs().max().item())
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model"]  # no .building / .old left


def test_bundle_checks_the_stored_weights_on_a_test_split(run_dir, tmp_path):
    data = make_folder(tmp_path / "data", COLORS, per_class=3, splits=("train", "test"))
    dst = bundle.bundle_model(run_dir, tmp_path / "model", data=data)
    check = json.loads((dst / "fp16_check.json").read_text())
    assert check["n"] == 9 and check["changed_predictions"] <= 1 and check["max_prob_difference"] < 0.05
    assert set(check["run"]) == {"top1", "perturbed_top1"}
    bundle.bundle_model(run_dir, dst, dtype="int8", data=data)  # the check is named for what it checked
    assert sorted(p.name for p in dst.iterdir()) == ["int8_check.json", "model.json", "model.safetensors"]


def test_bundle_command_refuses_a_directory_without_a_model(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path / "model")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no model.json" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------------------- the bundled model


def test_bundled_model_is_small_loads_and_has_a_card():
    from fashion.modelio import bundled_model_dir

    directory = bundled_model_dir()
    assert (directory / WEIGHTS_FILE).stat().st_size <= 15 * 2**20
    loaded = load_model(directory)
    assert loaded.info.arch == "efficientnet_lite0" and loaded.size == 224 and len(loaded.classes) == 10
    card = (directory / "README.md").read_text()
    for needed in ("CC0", "--seed 42", "perturbed", "P@10"):
        assert needed in card, needed


def test_the_model_card_states_the_bundled_files_own_figures():
    """The card is written by hand; a re-bundle that leaves its headline figures or its command stale fails
    here: they are read back from the bundled model.json and fp16_check.json."""
    from fashion.modelio import bundled_model_dir

    directory = bundled_model_dir()
    card = (directory / "README.md").read_text()
    written = json.loads((directory / CONFIG_FILE).read_text())
    metrics, config = written["metrics"], written["train_config"]
    three = lambda figures: f"{figures['1']:.3f}** / {figures['3']:.3f}"  # noqa: E731
    assert f"| **{three(metrics['topk'])} / {metrics['topk']['5']:.3f} |" in card, "test top-1 / 3 / 5"
    assert f"| **{three(metrics['perturbed'])} |" in card, "perturbed top-1 / 3"
    assert f"| {metrics['perturbed_background']['1']:.3f} / {metrics['perturbed_scale']['1']:.3f} |" in card
    assert f"| {metrics['tta']['1']:.3f} |" in card, "test top-1 with TTA"
    check = json.loads((directory / bundle.check_file("float16")).read_text())
    assert f"**{check['stored']['top1']:.3f}** ({check['changed_predictions']} of {check['n']} predictions changed" in card
    epochs = ",".join(str(n) for n in config["epochs"])
    assert f"--epochs {epochs} " in card and f"--seed {config['seed']}" in card
    if config.get("distill"):  # a distilled model's card names its teachers and their weight
        assert f"--distill {','.join(config['distill'])}" in card and f"--distill-weight {config['distill_weight']}" in card


def test_no_model_and_no_arch_means_the_bundled_model():
    from fashion.embedding.spec import resolve_model
    from fashion.modelio import bundled_model_dir
    from fashion.retrieval import MeasureConfig

    assert resolve_model() == (str(bundled_model_dir()), "efficientnet_lite0")
    assert MeasureConfig().model == str(bundled_model_dir())
    bare = MeasureConfig(arch="efficientnet_lite2")
    assert bare.model is None and bare.arch == "efficientnet_lite2"
    assert MeasureConfig(model="runs/x").model == "runs/x"


def test_measure_sim_help_names_the_bundled_model():
    import argparse

    from fashion.cli.neighbors import add_neighbors_arguments

    p = argparse.ArgumentParser()
    add_neighbors_arguments(p)
    args = p.parse_args(["--output-dir", "out"])
    assert args.model is None and args.arch is None
    assert "bundled clothing model" in p.format_help()


def test_quick_start_run_searches_and_predicts_with_the_bundled_model(tmp_path):
    """measure_sim's defaults embed with the bundled model's head; `fashion search PHOTO --run out` then
    names a predicted category (the service's classifier is the run's model)."""
    import os
    import subprocess

    from fashion import sample
    from fashion.modelio import bundled_model_dir
    from fashion.retrieval import MeasureConfig, run

    out = tmp_path / "out"
    run(MeasureConfig(output_dir=os.fspath(out), limit=30, k=5, grids=0, runtime="torch", num_workers=0,
                      insight=False))
    info = json.loads((out / "run.json").read_text())
    assert info["embedder"]["model_dir"] == os.fspath(bundled_model_dir()) and info["embedder"]["layer"] == "head"
    photo = sorted((sample.sample_root() / "img" / "Shoes").glob("*.jpg"))[-1]
    done = subprocess.run([sys.executable, "-m", "fashion", "search", os.fspath(photo), "--run", os.fspath(out),
                           "--json", "--no-grids", "-k", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)[0]
    assert found["prediction"]["label"] == "shoes" and len(found["results"]) == 3
