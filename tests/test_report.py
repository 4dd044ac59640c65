"""fashion.report: neighbour grids and the index.html gallery (markup; the browser test is separate)."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion.report import DIFFERENT_COLOR, QUERY_COLOR, SAME_COLOR, neighbor_grid, write_gallery


@pytest.fixture()
def pictures(tmp_path):
    paths = []
    for i, color in enumerate(["red", "green", "blue", "yellow"]):
        path = tmp_path / f"p{i}.png"
        Image.new("RGB", (60 + 20 * i, 80), color).save(path)
        paths.append(path)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    return paths, bad


def test_grid_layout_frames_and_placeholder(pictures):
    paths, bad = pictures
    tile = 64
    grid = neighbor_grid(paths[0], [paths[1], bad, paths[3]], ["shirt", "pants", "<b>dress</b>"],
                         [0.1, 0.25, 0.5], [True, False, True], tile=tile, query_label="shirt", columns=2)
    assert isinstance(grid, Image.Image) and grid.mode == "RGB"
    cell_w = tile + 8
    assert grid.width == 2 * cell_w
    cell_h = grid.height // 2
    # frames: top-left pixel of each cell is the frame colour, in rank order
    assert grid.getpixel((0, 0)) == QUERY_COLOR
    assert grid.getpixel((cell_w, 0)) == SAME_COLOR
    assert grid.getpixel((0, cell_h)) == DIFFERENT_COLOR
    assert grid.getpixel((cell_w, cell_h)) == SAME_COLOR
    # the query tile shows the red picture; the unreadable one is a grey placeholder
    assert grid.getpixel((4 + tile // 2, 4 + tile // 2)) == (255, 0, 0)
    r, g, b = grid.getpixel((4 + 3, cell_h + 4 + 3))
    assert r == g == b and 150 < r < 240


def test_grid_default_columns_and_errors(pictures):
    paths, _ = pictures
    grid = neighbor_grid(paths[0], paths[1:], ["a", "b", "c"], [0.0, 0.1, 0.2], [1, 0, 1], tile=32)
    assert grid.width == 4 * (32 + 8)  # K + 1 = 4 tiles in one row
    with pytest.raises(ValueError, match="same length"):
        neighbor_grid(paths[0], paths[1:], ["a"], [0.0], [True])


METRICS = {
    "k": 10, "precision_at_k": 0.8123, "n_images": 7, "n_skipped": 1,
    "per_label_precision": {"shirt": 0.9, "<script>alert(1)</script>": 0.5},
    "recall_at_k": {"1": 0.5, "10": 0.9},
    "timing": {"embed": 1.5},
    "skipped": [{"path": "img/<bad>.jpg", "reason": "truncated & corrupt"}],
}


def test_gallery_escapes_and_links(tmp_path):
    grids = tmp_path / "grids"
    grids.mkdir()
    odd = grids / 'a "b" <c> #d ?e&f.png'
    Image.new("RGB", (10, 10)).save(odd)
    files = [tmp_path / "metrics.json", tmp_path / "items & <x>.csv"]
    page_path = write_gallery(tmp_path, METRICS, [(odd, "<img src=x onerror=alert(1)> query")], files)
    page = page_path.read_text()
    assert page_path == tmp_path / "index.html"
    assert "<script>" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="grids/a%20%22b%22%20%3Cc%3E%20%23d%20%3Fe%26f.png"' in page
    assert "items%20%26%20%3Cx%3E.csv" in page and html.escape("items & <x>.csv") in page
    assert "0.8123" in page and "truncated &amp; corrupt" in page
    assert "http://" not in page and "https://" not in page  # offline: nothing remote
    # every tag is well-formed enough: no raw angle bracket from data inside text
    assert not re.search(r"<(?!/?(html|head|meta|title|style|body|h1|h2|p|span|table|tr|th|td|ul|li|a|img|"
                         r"figure|figcaption|!DOCTYPE)\b)", page)


def test_gallery_with_nothing(tmp_path):
    page = write_gallery(tmp_path / "new", {}, [], []).read_text()
    assert "Neighbour grids (0)" in page
    assert not list((tmp_path / "new").glob("*.tmp"))
