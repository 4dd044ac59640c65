"""Smoke test: benchmarks/probe_backbones.py runs on the bundled sample and prints its table."""

import os
import re
import subprocess
import sys
from pathlib import Path

from fashion.sample import sample_root
import pytest

# a whole benchmark script (20–70 s on 2 cores): the slow set, not the default run
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_backbones.py"


def test_probe_benchmark_on_the_bundled_sample(tmp_path):
    env = {**os.environ, "FASHION_BENCH_DATA": os.fspath(sample_root())}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--arch", "efficientnet_lite0", "--size", "64",
                           "--cache-dir", os.fspath(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = re.search(r"\| efficientnet_lite0 \((torch|openvino)\) \|.*\| ([0-9.]+) \| ([0-9.]+) \|", proc.stdout)
    assert row, proc.stdout
    valid, test = float(row.group(2)), float(row.group(3))
    assert 0.2 < test <= 1.0 and 0.2 < valid <= 1.0  # 10 classes: well above chance even at 64 px
