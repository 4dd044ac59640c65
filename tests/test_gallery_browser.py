"""The index.html gallery in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from fashion.report import neighbor_grid, write_gallery

pytestmark = pytest.mark.browser


@pytest.fixture
def browser(chromium):
    return chromium


def _open(browser, page_path: Path):
    page = browser.new_page()
    events = {"dialogs": [], "errors": [], "requests": []}
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: events["errors"].append(str(e)))
    page.on("request", lambda r: events["requests"].append(r.url))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    return page, events


def _pictures(root: Path, names: list[str]) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = root / name
        Image.new("RGB", (50 + 10 * i, 70), (40 * i % 255, 120, 200)).save(path, format="PNG")
        paths.append(path)
    return paths


def _gallery(out: Path, names: list[str], labels: list[str]) -> Path:
    pics = _pictures(out / "photos", names)
    grids = []
    for q in range(2):
        others = [p for p in pics if p != pics[q]][:3]
        grid = neighbor_grid(pics[q], others, labels[:3], [0.1, 0.2, 0.3], [True, False, True],
                             tile=48, query_label=labels[q])
        path = out / "grids" / f"{q:02d}_{names[q]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path, format="PNG")
        grids.append((path, f"query {names[q]} ({labels[q]})"))
    metrics = {"k": 3, "precision_at_k": 0.5, "per_label_precision": dict.fromkeys(labels, 0.5),
               "skipped": [[names[0], labels[0]]]}
    return write_gallery(out, metrics, grids, [pics[0], grids[0][0]], title=labels[0])


def test_gallery_grids_load(browser, tmp_path):
    page_path = _gallery(tmp_path / "run", ["a.png", "b c.png", "d#1.png", "e?.png"],
                         ["shirt", "pants", "t-shirt", "dress"])
    page, events = _open(browser, page_path)
    widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == 2 and all(w > 0 for w in widths), widths
    assert page.locator("table").count() >= 2
    shot = tmp_path / "gallery.png"
    page.screenshot(path=os.fspath(shot), full_page=True)
    assert shot.stat().st_size > 1000 and Image.open(shot).width > 100
    assert not events["errors"]
    assert all(url.startswith(("file:", "data:")) for url in events["requests"]), events["requests"]
    page.close()


def test_gallery_with_hostile_names_runs_no_script(browser, tmp_path):
    names = ["<script>alert(1)<.png", "<img src=x onerror=alert(2)>.png", "'\"><svg onload=alert(3)>.png",
             "&amp;.png"]
    labels = ["<script>alert(4)</script>", "</title><script>alert(5)</script>",
              "<img src=x onerror=alert(6)>", "javascript:alert(7)"]
    page_path = _gallery(tmp_path / "evil", names, labels)
    page, events = _open(browser, page_path)
    page.wait_for_timeout(200)
    assert events["dialogs"] == [] and events["errors"] == []
    assert page.evaluate("document.scripts.length") == 0
    assert page.title() == labels[0]  # shown as text, not parsed
    body = page.inner_text("body")
    assert labels[1] in body and names[0] in body
    widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths), widths
    page.close()


REPO = Path(__file__).resolve().parents[1]


def test_readme_quick_start_gallery_loads_from_a_relative_output_dir(browser, tmp_path):
    """The README's exact quick-start command, run where a new user runs it (cwd = a fresh folder,
    a relative --output_dir): every image of out/index.html loads from file://; a rerun with fewer
    --grids leaves no stale grid behind."""
    import subprocess
    import sys

    command = [sys.executable, os.fspath(REPO / "measure_sim.py"), "--output_dir", "out"]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    page_path = tmp_path / "out" / "index.html"
    text = page_path.read_text()
    assert 'src="grids/' in text and os.fspath(tmp_path) not in text  # relative to the page, not the cwd
    page, events = _open(browser, page_path)
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    insight = text.count('src="map.png"') + text.count('src="duplicates/')  # insight (#14): map, clusters
    assert insight >= 1 and len(widths) == 12 + insight and all(w > 0 for w in widths), widths
    body = page.inner_text("body")
    assert body.index("precision@10: ") < body.index("precision_at_k")  # words first, raw keys after
    assert " over 372 queries" in body  # the bundled sample: the 372 test photos
    assert not events["errors"]
    page.close()

    subprocess.run(command + ["--grids", "2"], cwd=tmp_path, check=True, capture_output=True, timeout=600)
    assert len(list((tmp_path / "out" / "grids").iterdir())) == 2
    page, _ = _open(browser, page_path)
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == 2 + insight and all(w > 0 for w in widths), widths
    page.close()
