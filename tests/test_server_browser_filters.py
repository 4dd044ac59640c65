"""The page's facets and search box in headless Chromium: a metadata facet limits browse, words search."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from factories import read_run_items
from fashion.server.launch import running_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def shop_run(sample_run, tmp_path_factory):
    """The sample run with shop metadata (brand, price) joined by `fashion update`."""
    from fashion.catalog.metadata import update_run

    base = tmp_path_factory.mktemp("shop")
    run = base / "run"
    shutil.copytree(sample_run, run, ignore=shutil.ignore_patterns("cache", "grids"))
    items = read_run_items(run)
    brands = ["Zeta" if i % 4 == 0 else "Acme" for i in range(len(items))]
    pd.DataFrame({"relpath": items["relpath"], "brand": brands, "price": range(len(items))}).to_csv(
        base / "shop.csv", index=False)
    update_run(run, base / "shop.csv")
    return run, items, brands


def _ids(page, grid: str) -> list[int]:
    return [int(i) for i in page.eval_on_selector_all(f"{grid} .card", "cs => cs.map(c => c.dataset.id)")]


def test_facet_and_text_box(chromium, shop_run):
    run, items, brands = shop_run
    zeta = [i for i, b in enumerate(brands) if b == "Zeta"]
    shoes = items.index[items["label"] == "Shoes"].tolist()
    with running_server(run) as server:
        context = chromium.new_context(bypass_csp=True)  # wait_for_function evaluates strings
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/", wait_until="load")

        # browse: tick the brand facet's Zeta value, then a price range on top of it
        page.click("#tab-browse")
        page.wait_for_selector("#browse-facets [data-facet='brand'] input[value='Zeta']")
        page.check("#browse-facets [data-facet='brand'] input[value='Zeta']")
        page.wait_for_function(f"document.querySelectorAll('#browse-grid .card').length === {len(zeta)}")
        assert _ids(page, "#browse-grid") == zeta
        assert "brand in Zeta" in page.inner_text("#browse-ignored")
        page.fill("#browse-price-max", "20")
        page.dispatch_event("#browse-price-max", "change")
        cheap = [i for i in zeta if i <= 20]
        page.wait_for_function(f"document.querySelectorAll('#browse-grid .card').length === {len(cheap)}")
        assert _ids(page, "#browse-grid") == cheap

        # search tab: words alone give the matching items and show back the words nothing matched
        page.click("#tab-search")
        page.fill("#search-text", "shoes for the weekend")
        page.click("#search-words")
        page.wait_for_function("document.querySelector('#results-heading').textContent.includes('items match')")
        assert sorted(_ids(page, "#results")) == shoes
        assert "ignored: for, the, weekend" in page.inner_text("#search-ignored")
        assert errors == []
        context.close()
