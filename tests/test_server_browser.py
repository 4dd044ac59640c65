"""The live page of `fashion serve` in headless Chromium: upload, results, neighbours, browse, hostile labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from factories import read_run_items, write_run_items
from fashion.server.launch import running_server

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_SKIP = "<script>alert(2)</script>.jpg"


@pytest.fixture(scope="module")
def hostile_run(sample_run, tmp_path_factory):
    """The sample run with one label renamed to markup and a skipped file named like a script."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    shutil.copytree(sample_run, run, ignore=shutil.ignore_patterns("cache", "grids"))
    items = read_run_items(run)
    victim = items["label"].iloc[0]
    items.loc[items["label"] == victim, "label"] = HOSTILE
    write_run_items(run, items)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("per_label_precision", "per_label_queries"):
        metrics[key][HOSTILE] = metrics[key].pop(victim)
    metrics["skipped"] = [{"path": HOSTILE_SKIP, "reason": "<b>bold</b> reason"}]
    (run / "metrics.json").write_text(json.dumps(metrics))
    from fashion import rundir  # a crafted run: reseal its manifest over the edited files

    manifest = json.loads((run / "manifest.json").read_text())
    rundir.write_manifest(run, manifest["run_id"], manifest["kind"])
    return run, items


def test_live_page(chromium, hostile_run):
    run, items = hostile_run
    photo = Path(items["path"].iloc[0])  # labelled HOSTILE in this run
    with running_server(run) as server:
        # CSP off in this browser: the page itself must show data as text (the header is tested in
        # test_server.py); with the CSP on, an innerHTML bug would be masked by it.
        context = chromium.new_context(bypass_csp=True)
        page = context.new_page()
        events = {"dialogs": [], "errors": [], "requests": []}
        page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: events["errors"].append(str(e)))
        page.on("console", lambda m: m.type == "error" and events["errors"].append(m.text))
        page.on("request", lambda r: events["requests"].append(r.url))
        page.goto(server.url + "/", wait_until="load")
        page.wait_for_selector("#label-precision tr >> nth=1")
        assert HOSTILE in page.inner_text("#label-precision") and HOSTILE_SKIP in page.inner_text("#skipped")

        # upload a photo: its gallery copy comes back first, with its (hostile) label as text
        page.set_input_files("#photo", str(photo))
        page.wait_for_selector("#results .card")
        cards = page.locator("#results .card")
        assert cards.count() == 10
        assert cards.first.get_attribute("data-id") == "0" and cards.first.locator(".label").inner_text() == f"#1 {HOSTILE}"
        assert "distance 0.00" in cards.first.inner_text()
        page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")

        # click a result: its own neighbours
        second = cards.nth(1)
        clicked = second.get_attribute("data-id")
        second.click()
        page.wait_for_function("document.querySelector('#results-heading').textContent.startsWith('Neighbours of')")
        assert items["relpath"].iloc[int(clicked)] in page.inner_text("#results-heading")
        page.wait_for_selector("#results .card")
        ids = page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.id)")
        assert len(ids) == 10 and clicked not in ids

        # browse: filter by the hostile label, then by file name
        page.click("#tab-browse")
        page.wait_for_selector("#browse-grid .card")
        page.select_option("#browse-label", HOSTILE)
        n_hostile = int((items["label"] == HOSTILE).sum())
        page.wait_for_function(f"document.querySelectorAll('#browse-grid .card').length === {n_hostile}")
        labels = page.eval_on_selector_all("#browse-grid .card .label", "ls => ls.map(l => l.textContent)")
        assert labels == [HOSTILE] * n_hostile
        assert page.inner_text("#browse-info").endswith(f"of {n_hostile}")
        page.select_option("#browse-label", "")
        page.fill("#browse-q", items["relpath"].iloc[5])
        page.wait_for_function("document.querySelectorAll('#browse-grid .card').length === 1")

        # nothing ran: no dialog, no error, no injected element, nothing fetched from elsewhere
        page.wait_for_timeout(300)
        assert events["dialogs"] == [] and events["errors"] == [], events
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"], #panel script, #panel b').length") == 0
        assert all(u.startswith((server.url, "blob:")) for u in events["requests"]), events["requests"]
        assert not page.locator("#tab-suspects").count()  # no suspects report for a pretrained run
        context.close()
    assert server.process.poll() is not None  # stopped


def test_suspects_tab_says_when_the_model_is_too_weak_to_trust(chromium, model_run):
    out, _ = model_run  # random-weight model; its metrics.json says cleanlab judged with 25 % accuracy
    with running_server(out) as server:
        page = chromium.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/", wait_until="load")
        page.click("#tab-suspects")
        page.wait_for_selector("#suspects-grid .card")
        trust = page.locator("#suspects-trust")
        assert "Caveat: unreliable: the model is right on only 25% of the 4 photos" in trust.inner_text()
        assert "error" in trust.get_attribute("class") and page.locator("#suspects-grid .card").count() == 2
        assert errors == []
        page.close()
    assert server.process.poll() is not None  # stopped
