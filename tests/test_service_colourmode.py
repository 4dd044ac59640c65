"""Colour modes of photo and item searches (fashion.service.colourmode): `<family>` returns that family only,
nearest first as brute force says; `same` puts the query's colour first; `any` ranks by the vectors with
their colour directions projected out; through the service, the HTTP API and `fashion search --colour`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashion.service.colourmode import check_mode, colour_directions, project

from factories import make_garment_folder

FAMILIES = ("red", "blue", "yellow", "green")


@pytest.fixture(scope="module")
def garment_run(tmp_path_factory):
    """A run over garments of four colours in two shapes (labels tee and ball), three of each."""
    from fashion.retrieval import MeasureConfig, run

    base = tmp_path_factory.mktemp("garments")
    root = make_garment_folder(base / "data", FAMILIES, per_family=3)
    out = base / "run"
    run(MeasureConfig(input=str(root), output_dir=str(out), arch="efficientnet_lite0", k=3, grids=0,
                      runtime="torch", num_workers=0, insight=False))
    return out


@pytest.fixture(scope="module")
def service(garment_run):
    from fashion.service import SimilarityService

    return SimilarityService.open(garment_run, warm=False)


def _brute(service, query_vector, ids, k, projected: bool):
    """The k nearest of ``ids`` (cosine; ties by id), on the vectors with the colour directions projected
    out when ``projected``."""
    ids = np.asarray(ids)
    vectors = np.asarray(service.run.embeddings[ids], dtype=np.float32)
    query = np.asarray(query_vector, dtype=np.float32)[None, :]
    if projected:
        basis = service.colours.basis()
        vectors, query = project(vectors, basis), project(query, basis)
    else:
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        query = query / np.linalg.norm(query)
    dist = 1.0 - vectors.astype(np.float64) @ query[0].astype(np.float64)
    order = np.lexsort((ids, dist))[:k]
    return ids[order].tolist()


def test_check_mode_takes_same_any_and_the_families_only():
    assert check_mode(None) is None and check_mode(" ") is None
    assert check_mode("Same") == "same" and check_mode("blue") == "blue" and check_mode("multicolour") == "multicolour"
    with pytest.raises(ValueError, match="colour must be same, any or a colour family"):
        check_mode("mauve")


def test_colour_directions_remove_colour_and_keep_the_category():
    """Synthetic vectors: a category part, a colour part, noise. After the projection the colour is no
    longer linearly readable and the category still is."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    n, d = 600, 64
    labels, colours = rng.integers(0, 3, n), rng.integers(0, 4, n)
    category, colour = rng.normal(size=(3, d)), rng.normal(size=(4, d))
    x = 2 * category[labels] + 2 * colour[colours] + rng.normal(size=(n, d))
    basis = colour_directions(x, labels, np.array(["c%d" % c for c in colours]))
    assert basis.shape[0] == d and 0 < basis.shape[1] <= 3 * 4
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-8)
    before, after = x / np.linalg.norm(x, axis=1, keepdims=True), project(x, basis)
    model = RidgeClassifier()
    assert cross_val_score(model, before, colours, cv=3).mean() > 0.9
    assert cross_val_score(model, after, colours, cv=3).mean() < 0.45  # chance: 0.25
    assert cross_val_score(model, after, labels, cv=3).mean() > 0.9


def test_family_mode_returns_that_family_only_nearest_first(service):
    items = service.run.items
    red = int(np.flatnonzero(items["colour"].to_numpy() == "red")[0])
    found = service.neighbors_of(red, k=5, colour="blue")
    assert found.colour == "blue" and found.query_colour == "red"
    assert len(found.results) == 5 and {m.colour for m in found.results} == {"blue"}
    blue = np.flatnonzero(items["colour"].to_numpy() == "blue")
    vector = service.run.embeddings[red]
    assert [m.id for m in found.results] == _brute(service, vector, blue, 5, projected=True)
    assert [m.rank for m in found.results] == [1, 2, 3, 4, 5]
    assert all(a.distance <= b.distance for a, b in zip(found.results, found.results[1:]))
    # the request's own filters still apply, and a family the gallery lacks gives nothing
    tees = service.neighbors_of(red, k=10, colour="blue", filters=["label=tee"])
    assert {m.label for m in tees.results} == {"tee"} and len(tees.results) == 3
    assert service.neighbors_of(red, k=5, colour="purple").results == []


def test_same_mode_puts_the_query_colour_first_then_the_rest(service):
    items = service.run.items
    yellow = np.flatnonzero(items["colour"].to_numpy() == "yellow")
    i = int(yellow[0])
    found = service.neighbors_of(i, k=8, colour="same")
    assert found.query_colour == "yellow"
    first = [m.id for m in found.results[:5]]  # the other 5 yellow items, nearest first
    assert first == _brute(service, service.run.embeddings[i], yellow[yellow != i], 5, projected=False)
    others = np.setdiff1d(service.run.gallery_ids, yellow)
    assert [m.id for m in found.results[5:]] == _brute(service, service.run.embeddings[i], others, 3, projected=False)


def test_any_mode_ranks_by_the_projected_vectors(service):
    i = 0
    found = service.neighbors_of(i, k=6, colour="any")
    gallery = service.run.gallery_ids
    assert [m.id for m in found.results] == _brute(service, service.run.embeddings[i], gallery[gallery != i], 6,
                                                   projected=True)


def test_photo_search_computes_the_photos_colour(service):
    items = service.run.items
    green = int(np.flatnonzero(items["colour"].to_numpy() == "green")[0])
    found = service.search_image(items["path"].iloc[green], k=4, colour="red")
    assert found.query_colour == "green" and {m.colour for m in found.results} == {"red"}
    assert all(m.colour_hex and m.colour_hex.startswith("#") for m in found.results)
    plain = service.search_image(items["path"].iloc[green], k=4)
    assert plain.colour is None and plain.query_colour is None
    with pytest.raises(ValueError, match="colour must be"):
        service.search_image(items["path"].iloc[green], k=4, colour="mauve")


def test_colour_modes_through_the_api_and_the_cli(garment_run, service, capsys):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fashion.cli import main
    from fashion.server import create_app

    items = service.run.items
    photo = items["path"].iloc[0]
    with TestClient(create_app(service), base_url="http://localhost") as client:
        with open(photo, "rb") as fh:
            answer = client.post("/api/search", params={"colour": "blue"}, data={"k": "3"},
                                 files={"image": ("a.jpg", fh.read(), "image/jpeg")})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["colour"] == "blue" and body["query_colour"] == items["colour"].iloc[0]
        assert len(body["results"]) == 3 and {r["colour"] for r in body["results"]} == {"blue"}
        near = client.get("/api/items/0/neighbors", params={"colour": "same", "k": 3}).json()
        assert near["query_colour"] == items["colour"].iloc[0]
        bad = client.get("/api/items/0/neighbors", params={"colour": "mauve"})
        assert bad.status_code == 422 and "colour must be" in bad.json()["detail"]
        item = client.get("/api/items/0").json()
        assert item["colour"] == items["colour"].iloc[0] and item["colour_hex"].startswith("#")
    assert main(["search", photo, "--run", str(garment_run), "--colour", "yellow", "--json", "--no-grids",
                 "-k", "4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["colour"] == "yellow" and {r["colour"] for r in printed[0]["results"]} == {"yellow"}
    assert main(["search", photo, "--run", str(garment_run), "--colour", "mauve", "--no-grids"]) != 0


def test_family_mode_puts_the_predicted_category_first_where_the_run_has_a_classifier(model_run):
    from fashion.service import SimilarityService

    run_dir, _ = model_run
    service = SimilarityService.open(run_dir, warm=False)
    items = service.run.items
    colours, labels = items["colour"].fillna("").to_numpy(), items["label"].to_numpy()
    family = commonest(colours[service.run.gallery_ids])
    i = int(service.run.gallery_ids[0])
    category = service.predicted_category(i)
    assert category in set(labels)
    found = service.neighbors_of(i, k=20, colour=family)
    gallery = service.run.gallery_ids[service.run.gallery_ids != i]
    in_family = gallery[colours[gallery] == family]
    first = in_family[labels[in_family] == category]
    rest = in_family[labels[in_family] != category]
    vector = service.run.embeddings[i]
    expected = _brute(service, vector, first, 20, True) + _brute(service, vector, rest, 20, True)
    assert [m.id for m in found.results] == expected[:20] and {m.colour for m in found.results} == {family}


def commonest(values) -> str:
    """The commonest non-empty value."""
    names, counts = np.unique([v for v in values if v], return_counts=True)
    return str(names[np.argmax(counts)])


@pytest.mark.parametrize("candidates", [1000, 4])
def test_above_exact_rows_the_candidates_come_from_the_index(garment_run, monkeypatch, candidates):
    """More allowed items than EXACT_ROWS: the CANDIDATES nearest to the projected query through the run's
    index, scored exactly (all of them when CANDIDATES covers the gallery: brute force's answer)."""
    from fashion.service import SimilarityService, colourmode

    monkeypatch.setattr(colourmode, "EXACT_ROWS", 3)
    monkeypatch.setattr(colourmode, "CANDIDATES", candidates)
    service = SimilarityService.open(garment_run, warm=False)  # fitted under the patched constants
    calls = []
    real = service.run.index.search
    monkeypatch.setattr(service.run.index, "search", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    items, gallery = service.run.items, service.run.gallery_ids
    i = int(gallery[0])
    others = gallery[gallery != i]
    blue = others[items["colour"].to_numpy()[others] == "blue"]
    vector = service.run.embeddings[i]
    basis = service.colours.basis()
    assert service.colours._projected is None  # the gallery is above EXACT_ROWS: rows are read per query

    def expected(ids, k):
        return _through_index(service, basis, vector, i, ids, k, candidates)

    for colour, ids in (("any", others), ("blue", blue)):
        calls.clear()
        found = service.neighbors_of(i, k=3, colour=colour)
        assert calls and all("allowed" in kw for kw in calls)  # the index path was taken
        assert [m.id for m in found.results] == expected(ids, 3), colour


def _through_index(service, basis, vector, i, ids, k, candidates):
    """The colour mode's expected top ``k`` of ``ids`` for item ``i`` above EXACT_ROWS: brute force on all of
    them when ``candidates`` covers them, else on the ``candidates`` nearest to the projected query that the
    mode's own narrowing takes from the index (itself left out); the scoring and order are checked here."""
    if candidates < len(ids):
        query = project(np.asarray(vector, np.float32)[None, :], basis)
        narrowed = service.colours._candidates(query, np.asarray(ids, np.int64), i)
        assert len(narrowed) == candidates and i not in narrowed and np.isin(narrowed, ids).all()
        ids = narrowed
    return _brute(service, vector, ids, k, projected=True)


@pytest.mark.parametrize("candidates", [1000, 4])
def test_family_mode_above_exact_rows_takes_the_category_first_from_the_index(garment_run, monkeypatch, candidates):
    """"This, but in <family>" where the run has a classifier and more allowed items than EXACT_ROWS: the
    family's items of the query's predicted category, and all the family's items, are each narrowed to the
    CANDIDATES nearest through the run's index (one search each), scored exactly; the category's nearest come
    first, then the nearest of the rest. The garment run has no classifier: its prediction is fixed to "tee"
    here (the classifier's own path to the category is tested above on model_run, whose 20 items cannot put
    both pools above EXACT_ROWS)."""
    from fashion.service import SimilarityService, colourmode

    monkeypatch.setattr(colourmode, "EXACT_ROWS", 2)
    monkeypatch.setattr(colourmode, "CANDIDATES", candidates)
    service = SimilarityService.open(garment_run, warm=False)
    monkeypatch.setattr(service, "predicted_category", lambda i: "tee")
    calls = []
    real = service.run.index.search
    monkeypatch.setattr(service.run.index, "search", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    items, gallery = service.run.items, service.run.gallery_ids
    colours, labels = items["colour"].to_numpy(), items["label"].to_numpy()
    i = int(gallery[colours[gallery] == "red"][0])
    in_family = gallery[colours[gallery] == "blue"]
    first = in_family[labels[in_family] == "tee"]
    assert len(first) == 3 and len(in_family) == 6  # both pools above EXACT_ROWS, the family beyond the category
    vector = service.run.embeddings[i]
    basis = service.colours.basis()

    def nearest(ids, k):
        return _through_index(service, basis, vector, i, ids, k, candidates)

    calls.clear()
    found = service.neighbors_of(i, k=5, colour="blue")
    assert len(calls) == 2 and all("allowed" in kw for kw in calls)  # one index search per pool
    head = nearest(first, 5)
    assert [m.id for m in found.results] == (head + [j for j in nearest(in_family, 5) if j not in head])[:5]
    assert [m.label for m in found.results[:3]] == ["tee"] * 3 and {m.colour for m in found.results} == {"blue"}
    # without a category, the same query is the family's nearest only (one index search)
    monkeypatch.setattr(service, "predicted_category", lambda i: None)
    calls.clear()
    plain = service.neighbors_of(i, k=5, colour="blue")
    assert len(calls) == 1
    assert [m.id for m in plain.results] == nearest(in_family, 5)
