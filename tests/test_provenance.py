"""fashion.provenance: what a run.json records about the code and the process that wrote it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fashion import provenance


def test_git_revision_of_a_checkout_and_of_a_plain_folder(tmp_path):
    repo = Path(provenance.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("the package is not in a git checkout here")
    found = provenance.git_revision()
    assert found["commit"] == head.stdout.strip() and len(found["commit"]) == 40
    assert isinstance(found["dirty"], bool)
    assert provenance.git_revision(tmp_path) is None  # not a checkout


def test_versions_and_command_line(monkeypatch):
    import numpy

    found = provenance.versions()
    assert found["numpy"] == numpy.__version__ and found["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(provenance.DISTRIBUTIONS) <= set(found)
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fashion", "train", "data", "--output_dir", "out"])
    assert provenance.command_line() == ["fashion", "train", "data", "--output_dir", "out"]
    monkeypatch.setattr(sys, "argv", [""])
    assert provenance.command_line() == []
