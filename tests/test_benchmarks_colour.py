"""Smoke test: benchmarks/colour.py on the bundled sample, with the error-analysis options (issue 32):
one split only, its mistakes drawn as a contact sheet, a second labeller's agreement."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

# a whole benchmark script (~20 s on 2 cores): the slow set, not the default run
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "colour.py"


def test_colour_benchmark_scores_one_split_draws_its_mistakes_and_compares_labellers(tmp_path):
    sheet = tmp_path / "dev.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", os.fspath(tmp_path / "no-dataset"), "--split", "dev",
                           "--errors", "dev", "--sheet", os.fspath(sheet),
                           "--second", os.fspath(REPO / "tests" / "data" / "colour_labels_second.csv")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": os.fspath(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    dev = re.search(r"^dev\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)", proc.stdout, re.M)
    holdout = re.search(r"^holdout\s+(\d+)\s+nan", proc.stdout, re.M)
    assert dev and holdout, proc.stdout  # the holdout half is not scored with --split dev
    n, top1 = int(dev.group(1)), float(dev.group(2))
    assert n >= 150 and 0.3 < top1 <= 1.0
    mistakes = int(re.search(r"dev mistakes \((\d+)\)", proc.stdout).group(1))
    assert mistakes == round(n * (1 - top1))
    with Image.open(sheet) as image:  # one cell (photo | mask, two text lines) per mistake, 4 a row
        assert image.size == (4 * 2 * 150, -(-mistakes // 4) * (150 + 28))
    second = re.search(r"second labeller .*: (\d+) photos; the labellers agree on top-1 ([0-9.]+)", proc.stdout)
    assert second and int(second.group(1)) >= 40 and 0.5 < float(second.group(2)) <= 1.0


def test_colour_benchmark_times_two_checkouts_on_the_same_photos(tmp_path):
    """--speed N --base-tree DIR: both codes colour the same N photos (after one warm-up photo) in their own
    processes; a table of wall and CPU ms per photo, the ratio, and how many families the two agree on."""
    from factories import PHOTO_COLOURS, garment_photo

    root = tmp_path / "dataset"
    for n, (family, rgb) in enumerate(list(PHOTO_COLOURS.items())[:5]):
        folder = root / "train" / f"class{n % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        garment_photo(rgb, "sheet", seed=n).save(folder / f"{family}.jpg", quality=90)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", os.fspath(root), "--speed", "4",
                           "--base-tree", os.fspath(REPO), "--repeat", "1"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": os.fspath(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"^(this|base)\s+\S+\s+([0-9.]+)\s+([0-9.]+)", proc.stdout, re.M)
    assert [name for name, _, _ in rows] == ["this", "base"] and all(float(cpu) > 0 for _, _, cpu in rows), proc.stdout
    assert re.search(r"families agree on 4 of 4 photos", proc.stdout), proc.stdout  # the same code twice
    short = subprocess.run([sys.executable, str(SCRIPT), "--root", os.fspath(root), "--speed", "9"],
                           capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": os.fspath(REPO)})
    assert short.returncode == 2 and "needs at least 10 photos" in short.stderr
