"""Smoke test: benchmarks/embed.py runs on the bundled sample and prints its tables."""

import os
import re
import subprocess
import sys
from pathlib import Path

from fashion.embedding.int8 import nncf_available
from fashion.sample import sample_root
import pytest

# a whole benchmark script (20–70 s on 2 cores): the slow set, not the default run
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "embed.py"


def test_embed_benchmark_quick_on_the_bundled_sample():
    env = {**os.environ, "FASHION_BENCH_DATA": os.fspath(sample_root())}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--limit", "24", "--batch-size", "8",
                           "--size", "64", "--workers", "0"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| naive: plain fp32 loop" in out and "| project: Embedder.embed, torch runtime" in out
    assert "| project: Embedder.embed, openvino runtime" in out and "project forward, openvino runtime" in out
    assert "decode + Pillow resize" in out and "decode + project resize" in out and "compute floor" in out
    deltas = [float(v) for v in re.findall(r"precision@10 difference ([+-][0-9.]+)", out)]
    int8_rows = 2 if nncf_available() else 0  # calibrated in the run, and read from the cache
    assert len(deltas) == 2 + int8_rows and all(abs(d) <= 0.05 for d in deltas)  # the paths retrieve alike
    if int8_rows:
        assert "| project: Embedder.embed, openvino-int8 runtime" in out and "read from the cache" in out
