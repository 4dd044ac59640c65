"""Smoke test of benchmarks/memory.py at tiny sizes: it runs, measures and stays within its bound."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_search_case_runs_in_a_fresh_process_within_its_bound(tmp_path):
    """`--case search`: a child process measures, the parent prints the table; peak RSS <= the bound."""
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--case", "search", "--n", "300", "--d", "8",
                           "--metric", "euclidean", "--queries", "all", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["metric"] for r in rows] == ["euclidean"]
    for r in rows:
        assert r["queries"] == 300 and 0 < r["baseline"] <= r["peak"] <= r["bound"], r
    assert "all-pairs exact search" in proc.stdout and proc.stdout.count(" yes") == 1


def test_embed_case_generates_images_and_measures(tmp_path):
    """The embedding measurement (run in-process here): images generated once, figures consistent."""
    memory = _module()
    data = tmp_path / "images"
    paths = memory.image_paths(data, 12)
    assert len(paths) == 12 and all(Path(p).is_file() for p in paths)
    mtimes = [Path(p).stat().st_mtime_ns for p in paths]
    assert memory.image_paths(data, 12) == paths and [Path(p).stat().st_mtime_ns for p in paths] == mtimes
    row = memory.child_embed(12, data, size=32, batch_size=4, workers=0, arch="efficientnet_lite0",
                             cache=tmp_path / "cache")
    assert row["n"] == 12 and row["matrix"] == 12 * row["d"] * 4
    assert row["baseline"] <= row["peak"] and row["bound"] > row["baseline"] + row["matrix"]
    assert not (tmp_path / "cache").exists()  # the measurement cleans its cache up


@pytest.mark.slow
def test_all_pairs_search_at_200k_stays_within_data_plus_one_block(tmp_path):
    """Issue 5 at scale: exact search over 200,000 vectors (4,096 queries through the all-pairs blocked
    loop, whose every block is alike) peaks below data + the index's copy + one 128 MiB tile; an n x n
    float32 matrix would be 149 GiB."""
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--case", "search", "--n", "200000", "--d", "64",
                           "--json", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert sorted(r["metric"] for r in rows) == ["cosine", "euclidean"]
    for r in rows:
        assert r["n"] == 200_000 and r["peak"] <= r["bound"] < r["nxn_float32"] / 100, r


@pytest.mark.slow
def test_embedding_20k_generated_images_stays_linear(tmp_path):
    """The embedding path over 20,000 generated images: peak minus the loaded-model baseline stays
    within the (n, d) result plus one cache chunk and the prefetched batches (the bound's items)."""
    memory = _module()
    data = tmp_path / "images"
    row = memory.run_child(["embed", json.dumps({"n": 20_000, "data": str(data), "size": 32, "batch_size": 64,
                                                 "workers": 1, "arch": "efficientnet_lite0",
                                                 "cache": str(tmp_path / "cache")})])
    assert row["n"] == 20_000 and row["peak"] <= row["bound"], row
    assert row["peak"] - row["baseline"] <= 1.5 * row["matrix"] + row["chunk"], row
