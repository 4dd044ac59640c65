"""fashion.search: new photos against a finished run's saved index."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fashion import rundir
from fashion.errors import FashionError
from fashion.retrieval import MeasureConfig, run
from fashion.search import SearchResult, search

from factories import noisy_jpeg, read_run_items

COLORS = {"red": (210, 30, 30), "green": (30, 170, 40), "blue": (40, 60, 210)}


def _picture(path: Path, color, seed: int) -> Path:
    return noisy_jpeg(path, color, seed, size=(44, 56), noise=20)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("search")
    for c, (label, color) in enumerate(COLORS.items()):
        for i in range(4):
            _picture(base / "root" / label / f"{label}_{i}.jpg", color, seed=10 * c + i)
    out = base / "run"
    run(MeasureConfig(input=os.fspath(base / "root"), output_dir=os.fspath(out), size=64, batch_size=8, k=3,
                      grids=1, num_workers=0))
    return base, out


def test_search_finds_the_right_colour(finished_run, tmp_path):
    base, out = finished_run
    new = _picture(tmp_path / "new photo #1.jpg", COLORS["green"], seed=999)
    known = base / "root" / "blue" / "blue_2.jpg"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"nope")
    results = search([new, bad, known], out, k=4, output_dir=tmp_path / "grids")
    assert [type(r) for r in results] == [SearchResult] * 3
    first, broken, same = results
    assert first.ok and len(first.matches) == 4 and [m.rank for m in first.matches] == [1, 2, 3, 4]
    assert all(m.label == "green" for m in first.matches[:3])
    assert [m.distance for m in first.matches] == sorted(m.distance for m in first.matches)
    assert not broken.ok and broken.reason and broken.grid is None
    assert same.matches[0].relpath == "blue/blue_2.jpg" and same.matches[0].distance < 1e-3
    items = read_run_items(out)
    assert items.loc[same.matches[0].id, "relpath"] == "blue/blue_2.jpg"
    assert first.grid.is_file() and first.grid.parent == tmp_path / "grids" and "#" not in first.grid.name
    assert Image.open(first.grid).width > 0
    assert "green" in first.summary() and "skipped" in broken.summary()


def test_search_default_output_and_k_clamp(finished_run):
    base, out = finished_run
    (result,) = search([base / "root" / "red" / "red_0.jpg"], out, k=50)
    assert len(result.matches) == 12 and result.grid.parent == out / "search"


def test_search_refuses_changed_model_and_bad_run(finished_run, tmp_path):
    base, out = finished_run
    photo = base / "root" / "red" / "red_1.jpg"
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        search([photo], tmp_path)
    fake = tmp_path / "fake"
    shutil.copytree(out, fake, ignore=shutil.ignore_patterns("cache"))
    info = json.loads((out / "run.json").read_text())
    info["embedder"]["checksum"] = "0" * 64
    (fake / "run.json").write_text(json.dumps(info))
    manifest = json.loads((out / "manifest.json").read_text())
    rundir.write_manifest(fake, manifest["run_id"], manifest["kind"])  # sealed: the model check is what refuses
    with pytest.raises(FashionError, match="changed"):
        search([photo], fake)


def test_search_embeds_photos_with_the_runs_runtime(tmp_path, monkeypatch, caplog):
    """A run embedded with OpenVINO: its photos are embedded with OpenVINO too (a gallery image finds
    itself at distance ~0); without OpenVINO installed, torch with a warning (close, not bitwise)."""
    pytest.importorskip("openvino")
    from fashion.embedding import net, ovcore

    for c, (label, color) in enumerate(COLORS.items()):
        for i in range(3):
            _picture(tmp_path / "root" / label / f"{label}_{i}.jpg", color, seed=50 + 10 * c + i)
    out = tmp_path / "run"
    run(MeasureConfig(input=os.fspath(tmp_path / "root"), output_dir=os.fspath(out), size=64, batch_size=4,
                      k=3, grids=0, num_workers=0, runtime="openvino"))
    assert json.loads((out / "run.json").read_text())["embedder"]["runtime"] == "openvino"
    known = tmp_path / "root" / "green" / "green_1.jpg"
    (same,) = search([known], out, k=2, grids=False)
    assert same.matches[0].relpath == "green/green_1.jpg" and same.matches[0].distance < 1e-5
    monkeypatch.setattr(net, "openvino_available", lambda: False)
    monkeypatch.setattr(ovcore, "openvino_available", lambda: False)  # the service's check (no torch import)
    with caplog.at_level("WARNING", logger="fashion.service"):
        (fallback,) = search([known], out, k=2, grids=False)
    assert "OpenVINO, which is not installed" in caplog.text
    assert fallback.matches[0].relpath == "green/green_1.jpg" and fallback.matches[0].distance < 0.02


def test_cli_search_folder_json_and_exit_codes(finished_run, tmp_path, capsys):
    from fashion.cli import main

    base, out = finished_run
    folder = tmp_path / "photos"
    _picture(folder / "a.jpg", COLORS["red"], seed=5)
    _picture(folder / "b.png", COLORS["blue"], seed=6)
    (folder / "notes.txt").write_text("not a photo")  # not an image suffix: not listed
    assert main(["search", str(folder), "--run", str(out), "-k", "2", "--json", "--no-grids"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [Path(r["photo"]).name for r in answer] == ["a.jpg", "b.png"]
    assert all(r["ok"] and len(r["results"]) == 2 and r["grid"] is None for r in answer)
    assert set(answer[0]["results"][0]) == {"rank", "id", "relpath", "label", "distance", "colour", "colour_hex"}
    assert answer[0]["results"][0]["label"] == "red" and answer[1]["results"][0]["label"] == "blue"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert main(["search", str(bad), "--run", str(out), "--no-grids"]) == 1
    assert "none of the 1 photos could be searched" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "empty_dir_missing"), "--run", str(out), "--no-grids"]) == 1


def test_cli_serve_refuses_a_half_written_run_in_one_line(finished_run, tmp_path, capsys):
    import shutil

    from fashion.cli import main

    _, out = finished_run
    half = tmp_path / "half"
    shutil.copytree(out, half)
    (half / "embeddings.npy").write_bytes((out / "embeddings.npy").read_bytes()[:200])
    assert main(["serve", str(half), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "embeddings.npy" in err
