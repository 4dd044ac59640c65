"""Test-wide settings: no display, few threads, deterministic."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
