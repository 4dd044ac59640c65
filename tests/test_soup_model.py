"""scripts/soup_model.py: a greedy weight-averaged soup of runs that share their held-out photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fashion.modelio import ModelInfo, build_classifier, export_model, load_model  # noqa: E402

from factories import load_script, make_folder, one_thread  # noqa: E402,F401

soup = load_script("scripts/soup_model.py")

COLORS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def _run(path: Path, seed: int, valid_pct: float = 0.34, scale: float = 1.0) -> Path:
    torch.manual_seed(seed)
    model, _ = build_classifier("efficientnet_lite0", 3, pretrained=False)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    export_model(path, model.eval(), ModelInfo(arch="efficientnet_lite0", classes=tuple(sorted(COLORS)), size=48,
                                               mean=(0.5,) * 3, std=(0.5,) * 3,
                                               train_config={"seed": 0, "valid_pct": valid_pct}))
    return path


def test_average_is_uniform_over_floating_tensors_and_keeps_counters():
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    out = soup.average([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 7


def test_a_run_equal_to_the_first_enters_the_soup_and_the_soup_is_written(tmp_path):
    data = make_folder(tmp_path / "data", COLORS, per_class=4, splits=("train", "test"))
    first = _run(tmp_path / "a", seed=0)
    twin = tmp_path / "b"
    twin.mkdir()
    for f in first.iterdir():
        (twin / f.name).write_bytes(f.read_bytes())
    report = soup.soup([first, twin], data, output=tmp_path / "soup")
    assert torch.is_grad_enabled()  # no global switch left behind for the tests that train after it
    assert len(report["ingredients"]) == 2  # the average of two equal runs: its loss does not rise
    for split, n in (("held_out", 4), ("test", 12)):  # 34 % of the 12 train photos held out, seeded
        assert report[f"soup_{split}"] == report[f"best_single_{split}"]
        assert set(report[f"soup_{split}"]) == {"plain", "all", "background", "scale"}
    written = load_model(tmp_path / "soup")
    assert written.info.metrics["soup"] == report["ingredients"]
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(written.model(x), load_model(first).model(x), atol=1e-5)
    json.dumps(report)  # --json writes it as it is


def test_runs_with_other_held_out_photos_are_refused(tmp_path):
    data = make_folder(tmp_path / "data", COLORS, per_class=2, splits=("train", "test"))
    with pytest.raises(SystemExit, match="another valid_pct"):
        soup.soup([_run(tmp_path / "a", 0), _run(tmp_path / "b", 1, valid_pct=0.5)], data)
