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


def test_knn_engine_benchmark_runs():
    script = SCRIPT.parent / "knn_engine.py"
    proc = subprocess.run([sys.executable, str(script), "--n", "2000", "--d", "32", "--queries", "1", "300",
                           "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[0], r[4]) for r in rows] == [("1", "numpy"), ("300", "torch")]
