"""What produced a run, for its ``run.json``: the command line, library versions, the code's git revision.

Shared by the retrieval run (:mod:`fashion.retrieval`) and the training run (:mod:`fashion.training`).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

#: Distributions whose versions shape a run's numbers.
DISTRIBUTIONS = ("fashion", "torch", "torchvision", "fastai", "timm", "faiss-cpu", "scikit-learn", "cleanlab",
                 "numpy", "pandas", "Pillow")


def versions() -> dict:
    """Versions of python and the libraries that shape the numbers (None: not installed)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def command_line() -> list[str]:
    """The process's command line as a list (program name without its directory); [] when there is none."""
    return [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv and sys.argv[0] else []


def git_revision(directory: os.PathLike | str | None = None) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``directory`` (default: this
    package's source), or None where there is none (an installed wheel, no git on the PATH)."""
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def created() -> str:
    """Local time stamp with its UTC offset, as every run.json writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
