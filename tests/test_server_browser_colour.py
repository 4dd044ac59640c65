"""The page's colour in headless Chromium, under the page's own CSP: a swatch per result, the colour facet,
and the colour control ("this, but in ...") on an item's neighbours."""

from __future__ import annotations

import pytest

from factories import read_run_items
from fashion.server.launch import running_server

pytestmark = pytest.mark.browser


def _cards(page, grid: str) -> list[tuple[int, str]]:
    return page.eval_on_selector_all(f"{grid} .card", "cs => cs.map(c => [Number(c.dataset.id), "
                                     "(c.querySelector('.swatch') || {dataset: {}}).dataset.colour])")


def test_swatches_colour_facet_and_colour_control(chromium, sample_run):
    items = read_run_items(sample_run)
    counts = items.loc[items["ok"], "colour"].value_counts()
    family, other = counts.index[0], counts.index[1]  # the two commonest colours of the run
    with running_server(sample_run) as server:
        context = chromium.new_context()  # the page's CSP enforced: a blocked style or script shows below
        page = context.new_page()
        errors, violations = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(server.url + "/", wait_until="load")

        # browse: the colour facet (a swatch per value) keeps the items of the ticked family only
        page.click("#tab-browse")
        box = f"#browse-facets [data-facet='colour'] input[value='{family}']"
        page.wait_for_selector(box)
        assert page.eval_on_selector_all("#browse-facets [data-facet='colour'] .swatch", "s => s.length") == len(counts)
        page.check(box)
        page.wait_for_selector(f"#browse-info:has-text('of {counts[family]}')")
        shown = _cards(page, "#browse-grid")
        assert len(shown) == min(counts[family], 60) and {c for _, c in shown} == {family}
        expected = items.set_index("id").loc[[i for i, _ in shown], "colour"]
        assert set(expected) == {family}

        # each card's swatch is painted with the item's own colour (set through the CSSOM, allowed by the CSP)
        first = shown[0][0]
        hex_code = items.loc[items["id"] == first, "colour_hex"].iloc[0]
        rgb = f"rgb({int(hex_code[1:3], 16)}, {int(hex_code[3:5], 16)}, {int(hex_code[5:7], 16)})"
        painted = page.eval_on_selector(f"#browse-grid .card[data-id='{first}'] .swatch",
                                        "s => getComputedStyle(s).backgroundColor")
        assert painted == rgb

        # an item's neighbours, then "this, but in <other>": every result of that family
        page.click(f"#browse-grid .card[data-id='{first}']")
        page.wait_for_selector("#results .card")
        page.wait_for_selector(f"#colour-mode option[value='{other}']", state="attached")
        page.select_option("#colour-mode", other)
        page.wait_for_selector("#colour-applied")
        assert f"this, but in {other}" in page.inner_text("#colour-applied")
        page.wait_for_selector(f"#results .card .swatch[data-colour='{other}']")
        results = _cards(page, "#results")
        assert len(results) == min(10, counts[other]) and {c for _, c in results} == {other}
        assert errors == [] and violations == []
        context.close()
