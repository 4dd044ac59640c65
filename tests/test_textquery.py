"""The search box's parser (fashion.textquery): a table of shoppers' phrases, against the labels of
clothing-dataset-small and of DeepFashion, metadata values and a price column."""

from __future__ import annotations

import pandas as pd
import pytest

from fashion.filters import Clause, mask
from fashion.textquery import parse

SMALL = ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt"]
DEEPFASHION = ["Blouse", "Tee", "Jeans", "Dress", "Skirt", "Jacket"]


@pytest.mark.parametrize("text, labels, colours, not_colours, ignored", [
    ("red summer dress", ["dress"], ["red"], [], ["summer"]),
    ("Red Dresses", ["dress"], ["red"], [], []),
    ("navy tee", ["t-shirt"], ["navy"], [], []),
    ("t shirt in light blue", ["t-shirt"], ["blue"], [], ["in"]),
    ("tshirts not black", ["t-shirt"], [], ["black"], []),
    ("jeans without grey or white", ["pants"], ["white"], ["grey"], ["or"]),
    ("burgundy sneakers", ["shoes"], ["red"], [], []),
    ("cream coloured long sleeve sweater", ["longsleeve"], ["beige"], [], ["coloured"]),
    ("winter coat", ["outwear"], [], [], ["winter"]),
    ("dress shirt", ["shirt"], [], [], []),
    ("gray trousers and a cap", ["pants", "hat"], ["grey"], [], ["and", "a"]),
    ("hello world", [], [], [], ["hello", "world"]),
    ("", [], [], [], []),
])
def test_phrases_against_clothing_dataset_small(text, labels, colours, not_colours, ignored):
    q = parse(text, labels=SMALL)
    assert list(q.labels) == labels
    assert list(q.colours) == colours and list(q.not_colours) == not_colours
    assert list(q.ignored) == ignored


@pytest.mark.parametrize("text, labels", [("blue tee", ["Tee"]), ("t-shirt", ["Tee"]), ("jeans", ["Jeans"]),
                                          ("blouses", ["Blouse"]), ("coat", ["Jacket"]), ("shorts", [])])
def test_the_run_s_own_labels_are_what_names_map_to(text, labels):
    assert list(parse(text, labels=DEEPFASHION).labels) == labels


def test_negated_labels_metadata_values_and_price_bounds():
    q = parse("Acme dresses under $50 not skirts", labels=SMALL, values={"brand": ["Acme", "Zeta Co"]},
              numeric=["price"])
    assert q.labels == ("dress",) and q.not_labels == ("skirt",) and q.ignored == ()
    assert q.filters == (Clause("brand", "=", ("Acme",)), Clause("price", "<=", ("50",)))
    assert parse("zeta co over 20", values={"brand": ["Zeta Co"]}, numeric=["price"]).filters == (
        Clause("brand", "=", ("Zeta Co",)), Clause("price", ">=", ("20",)))
    # no price column: "under 50" is not understood, and says so
    assert parse("under 50", labels=SMALL).ignored == ("under", "50")


def test_colour_words_are_ignored_where_the_run_has_no_colours():
    q = parse("red dress", labels=SMALL, colours=False)
    assert q.colours == () and q.ignored == ("red",) and q.labels == ("dress",)


def test_the_clauses_select_the_items_the_words_describe():
    items = pd.DataFrame({"label": ["dress", "dress", "skirt", "dress"],
                          "colour": ["red", "black", "red", "red"],
                          "brand": ["Acme", "Acme", "Acme", "Zeta"], "price": [40.0, 30.0, 20.0, 10.0]})
    q = parse("red acme dress under 45, not black", labels=SMALL, values={"brand": ["Acme", "Zeta"]},
              numeric=["price"])
    assert mask(items, q.clauses()).tolist() == [True, False, False, False]
    assert parse("hello").empty and not q.empty


def test_long_text_is_cut_not_refused():
    assert parse("dress " * 1000, labels=SMALL).labels == ("dress",)
