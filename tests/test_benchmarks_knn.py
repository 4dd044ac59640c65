"""Smoke test: benchmarks/knn.py --quick runs and prints its table."""

import subprocess
import sys
from pathlib import Path
import pytest

# a whole benchmark script (20–70 s on 2 cores): the slow set, not the default run
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "knn.py"


def test_knn_benchmark_quick():
    methods = ["floor", "exact", "kdtree"]
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--methods", *methods],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in methods:
        assert name in proc.stdout
    assert "recall@k" in proc.stdout and "extrapolated" in proc.stdout and "ERROR" not in proc.stdout


def test_knn_benchmark_base_tree_runs_exact_from_another_checkout(tmp_path):
    """--base-tree: exact from another checkout (a copy of fashion/ whose kernel notes that it was
    imported): the row exact-base, its neighbours equal to exact's, and the same-run ratio line."""
    import shutil

    base = tmp_path / "base"
    shutil.copytree(SCRIPT.parents[1] / "fashion", base / "fashion", ignore=shutil.ignore_patterns("__pycache__"))
    kernel = base / "fashion" / "neighbors" / "kernel.py"
    marker = tmp_path / "imported"
    kernel.write_text(kernel.read_text() + f"\nopen({str(marker)!r}, 'a').write(__file__ + '\\n')\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--methods", "exact", "--base-tree", str(base)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = next(line.split() for line in proc.stdout.splitlines() if line.startswith("exact-base"))
    assert row[5] == "1.0000"  # recall@k against exact
    assert "exact / exact-base = " in proc.stdout and "ERROR" not in proc.stdout
    assert marker.read_text().split() == [str(kernel)]  # the base child only: exact used this checkout's


def test_knn_engine_benchmark_runs():
    script = SCRIPT.parent / "knn_engine.py"
    proc = subprocess.run([sys.executable, str(script), "--n", "2000", "--d", "32", "--queries", "1", "300",
                           "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[0], r[4]) for r in rows] == [("1", "numpy"), ("300", "torch")]
