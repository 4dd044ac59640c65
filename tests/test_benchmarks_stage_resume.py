"""Smoke test: benchmarks/stage_resume.py runs the index and search stages, then a rerun that keeps them."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stage_resume.py"


def test_stage_resume_prints_a_first_run_and_a_rerun(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--n", "300", "--d", "16", "--workdir", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=300, check=True).stdout.splitlines()
    assert [line.split(":")[0] for line in out] == ["n=300 d=16 index=exact first", "n=300 d=16 index=exact rerun"]
    assert (tmp_path / "w" / "memory-index" / "done.json").is_file()  # the checkpoint the rerun kept
