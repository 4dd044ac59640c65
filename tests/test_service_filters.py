"""Filters, words and facets through SimilarityService, the HTTP API and `fashion search`: exact under the
filter (equal to brute force over the matching items), one-line errors, words shown back when ignored."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fashion.filters import FilterError
from fashion.service import SimilarityService

from factories import read_run_items


def _brute(service, vector, ids, k, exclude=None):
    """The k nearest of ``ids`` by cosine distance (ties by id), brute force over the run's embeddings."""
    ids = np.asarray([i for i in ids if i != exclude])
    emb = np.asarray(service.run.embeddings[ids], dtype=np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    v = np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)
    dist = 1.0 - emb @ v
    order = np.lexsort((ids, dist))[:k]
    return ids[order].tolist(), dist[order]


def _common_label(items) -> str:
    return items["label"].value_counts().index[0]


def test_filtered_photo_search_is_the_brute_force_top_k_of_the_matching_items(sample_run, sample_service):
    items = read_run_items(sample_run)
    label = _common_label(items)
    other = items.index[items["label"] != label][0]  # a photo of another label: its own copy is filtered out
    found = sample_service.search_image(items["path"].iloc[other], k=5, filters=[f"label={label.lower()}"])
    assert found.filters == [f"label={label.lower()}"] and found.ignored == []
    assert len(found.results) == 5 and {m.label for m in found.results} == {label}
    matching = np.flatnonzero(items["label"].to_numpy() == label)
    # the photo's vector is the item's own (same file, same embedder): brute force from the stored vector
    expected, dist = _brute(sample_service, sample_service.run.embeddings[other], matching, 5)
    assert [m.id for m in found.results] == expected
    np.testing.assert_allclose([m.distance for m in found.results], dist, atol=1e-4)


def test_filtered_neighbors_leave_the_item_out_and_return_min_k_matching(sample_run, sample_service):
    items = read_run_items(sample_run)
    label = _common_label(items)
    matching = np.flatnonzero(items["label"].to_numpy() == label)
    i = int(matching[0])
    found = sample_service.neighbors_of(i, k=100, filters=[f"label={label}", "split!=nonesuch"])
    assert [m.id for m in found.results] == _brute(sample_service, sample_service.run.embeddings[i], matching,
                                                   100, exclude=i)[0]
    assert len(found.results) == len(matching) - 1 and found.k == len(matching) - 1
    assert sample_service.neighbors_of(i, k=5, filters=["label=nonesuch"]).results == []


def test_items_filter_and_facets(sample_run, sample_service):
    items = read_run_items(sample_run)
    label = _common_label(items)
    page = sample_service.items(filters=[f"label in {label},nonesuch"], facets=True, limit=200)
    assert page.total == int((items["label"] == label).sum()) and {i.label for i in page.items} == {label}
    facet = {f["column"]: f for f in page.facets}
    assert facet["label"]["values"] == [{"value": label, "count": page.total}]
    assert "path" not in facet and "relpath" not in facet


@pytest.mark.parametrize("bad, words", [("fabric=red", "no column 'fabric'"), ("label<3", "needs a number"),
                                        ("path=/etc/passwd", "no column 'path'"), ("label", "expected COLUMN OP")])
def test_bad_filters_are_one_line_errors(sample_service, bad, words):
    for call in (lambda: sample_service.items(filters=[bad]), lambda: sample_service.neighbors_of(0, filters=[bad]),
                 lambda: sample_service.search_image(b"not even an image", filters=[bad])):
        with pytest.raises(FilterError, match=words) as info:
            call()
        assert "\n" not in str(info.value)


def test_words_become_filters_and_unknown_words_come_back(sample_run, sample_service):
    items = read_run_items(sample_run)
    page = sample_service.items(text="summer dresses please", limit=200)
    assert page.ignored == ["summer", "please"] and page.filters == ["label in Dress"]
    assert page.total == int((items["label"] == "Dress").sum()) and {i.label for i in page.items} <= {"Dress"}
    # every run has the colour columns (fashion.colour.stage): a colour word becomes a filter of them
    red = sample_service.items(text="red", limit=200)
    assert red.ignored == [] and red.filters == ["colour in red"]
    assert red.total == int((items["colour"] == "red").sum()) > 0


def test_http_filters_text_and_422(sample_run, client):
    items = read_run_items(sample_run)
    label = _common_label(items)
    r = client.get("/api/items", params=[("filter", f"label={label}"), ("filter", "split!=x"), ("facets", "true")])
    assert r.status_code == 200 and r.json()["total"] == int((items["label"] == label).sum())
    assert r.json()["facets"][0]["column"] == "label"
    r = client.get("/api/items/0/neighbors", params={"k": 3, "filter": f"label={label}"})
    assert r.status_code == 200 and {m["label"] for m in r.json()["results"]} == {label}
    r = client.get("/api/search", params={"text": "dress for the beach"})
    body = r.json()
    assert r.status_code == 200 and body["ignored"] == ["for", "the", "beach"]
    assert body["total"] == int((items["label"] == "Dress").sum())
    path = items["path"].iloc[0]
    with open(path, "rb") as f:
        r = client.post("/api/search", params={"filter": f"label={label}", "k": 4}, files={"image": ("a.jpg", f)})
    assert r.status_code == 200 and len(r.json()["results"]) == 4
    assert {m["label"] for m in r.json()["results"]} == {label} and r.json()["filters"] == [f"label={label}"]
    for url in ("/api/items?filter=brand%3DAcme", "/api/items/0/neighbors?filter=label%3C3", "/api/facets?filter=x"):
        r = client.get(url)
        assert r.status_code == 422 and "\n" not in r.json()["detail"], url
    r = client.get("/api/facets", params={"text": "shoes"})
    assert r.status_code == 200 and r.json()["filters"] == ["label in Shoes"]


def _metadata_run(sample_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sample_run, run, ignore=shutil.ignore_patterns("cache"))
    items = read_run_items(run)
    rows = pd.DataFrame({"relpath": items["relpath"], "price": np.arange(len(items)) * 5.0,
                         "in_stock": ["yes" if i % 2 else "no" for i in range(len(items))],
                         "brand": ["Acme" if i % 3 else "Zeta" for i in range(len(items))],
                         "added": [f"2026-01-{1 + i % 28:02d}" for i in range(len(items))]}).iloc[:-2]
    rows.to_csv(tmp_path / "shop.csv", index=False)
    return run, items


def test_update_adds_typed_columns_that_filter_and_facet(sample_run, tmp_path):
    from fashion.catalog.metadata import update_run
    from fashion.run.reader import open_run

    run, items = _metadata_run(sample_run, tmp_path)
    done = update_run(run, tmp_path / "shop.csv")
    assert done == {"columns": ["price", "in_stock", "brand", "added"], "matched": len(items) - 2, "items": len(items),
                    "version": 2}  # the run's first version was its measure_sim run
    open_run(run)  # sealed: the manifest checks out, the index finds its items
    service = SimilarityService.open(run, warm=False)
    table = service.filter.table
    assert pd.api.types.is_float_dtype(table["price"]) and pd.api.types.is_bool_dtype(table["in_stock"])
    assert pd.api.types.is_datetime64_any_dtype(table["added"]) and table["brand"].iat[1] == "Acme"
    assert table["price"].isna().sum() == 2  # the two items the file leaves out: empty, matching no filter
    page = service.items(filters=["price<50", "in_stock=true", "brand in acme"], limit=200, facets=True)
    assert [i.id for i in page.items] == [i for i in range(10) if i % 2 and i % 3]
    facets = {f["column"]: f for f in page.facets}
    assert facets["price"]["kind"] == "number" and facets["price"]["min"] == 5.0 and facets["price"]["max"] == 35.0
    assert facets["in_stock"]["values"] == [{"value": "true", "count": len(page.items)}]
    assert service.items(filters=["added>=2026-01-27"]).total == sum(1 + i % 28 >= 27 for i in range(len(items) - 2))
    assert service.items(text="zeta under 20").filters == ["brand=Zeta", "price<=20"]
    # a second update changes a column and keeps the others
    pd.DataFrame({"id": [0, 1], "price": [999, 1]}).to_csv(tmp_path / "price.csv", index=False)
    update_run(run, tmp_path / "price.csv")
    table = open_run(run).items
    assert table["price"].iloc[:3].tolist() == [999, 1, 10]  # the items the file names change, the rest stay
    assert table["brand"].iat[1] == "Acme"


@pytest.mark.parametrize("text, words", [("relpath,price\nnope/a.jpg,3\n", "line 2: relpath 'nope/a.jpg' is no item"),
                                         ("price\n3\n", "no 'relpath' or 'id' column"),
                                         ("id,price\n0,1\n0,2\n", "line 3: id '0' given twice"),
                                         ("id,label\n0,x\n", "one of the run's own"),
                                         ("id,file_size\n0,12\n", "column 'file_size' is one of the run's own"),
                                         ("id,price\n0,1\n1,2,3\n", "not a readable CSV")])
def test_bad_metadata_is_one_line_naming_the_file(sample_run, tmp_path, text, words):
    from fashion.catalog.metadata import MetadataError, update_run
    from fashion.rundir import read_manifest

    run, _ = _metadata_run(sample_run, tmp_path)
    before = read_manifest(run)
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(MetadataError, match=words) as info:
        update_run(run, tmp_path / "bad.csv")
    assert str(info.value).startswith(str(tmp_path / "bad.csv")) and "\n" not in str(info.value)
    assert read_manifest(run) == before  # the run is untouched


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fashion", *args], capture_output=True, text=True, timeout=600)


def test_cli_search_filter_gives_the_nearest_k_of_the_label(sample_run, sample_service, tmp_path):
    items = read_run_items(sample_run)
    photo = items["path"].iloc[0]
    done = _cli("search", photo, "--run", str(sample_run), "--filter", "label=dress", "-k", "5", "--json",
                "--no-grids")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)[0]["results"]
    matching = np.flatnonzero(items["label"].str.lower().to_numpy() == "dress")
    assert [r["label"] for r in results] == ["Dress"] * 5
    assert [r["id"] for r in results] == _brute(sample_service, sample_service.run.embeddings[0], matching, 5)[0]
    done = _cli("search", "--text", "shoes in cotton", "--run", str(sample_run), "-k", "3")
    assert done.returncode == 0, done.stderr
    assert "ignored words: in, cotton" in done.stdout and done.stdout.count("[Shoes]") == 3
    done = _cli("search", photo, "--run", str(sample_run), "--filter", "fabric=red")
    last = done.stderr.strip().splitlines()[-1]  # (after the service's INFO line) the error, one line
    assert done.returncode != 0 and last.startswith("fashion") and "no column 'fabric'" in last


def test_measure_sim_metadata_lands_in_the_item_table_typed(sample_run, tmp_path):
    from fashion.catalog.metadata import MetadataError
    from fashion.retrieval import MeasureConfig, run
    from fashion.run.reader import open_run

    items = read_run_items(sample_run)
    pd.DataFrame({"relpath": items["relpath"].iloc[:10], "price": np.arange(10) + 0.5,
                  "sale": ["true", "false"] * 5}).to_csv(tmp_path / "shop.csv", index=False)
    config = dict(arch="efficientnet_lite0", limit=60, k=5, grids=0, runtime="torch", num_workers=0, insight=False,
                  cache_dir=str(sample_run / "cache"))  # the sample run's embeddings: nothing re-embedded
    run(MeasureConfig(output_dir=str(tmp_path / "out"), metadata=str(tmp_path / "shop.csv"), **config))
    table = open_run(tmp_path / "out").items
    assert table["price"].iloc[:10].tolist() == list(np.arange(10) + 0.5) and table["price"].iloc[10:].isna().all()
    assert table["sale"].iloc[:4].tolist() == [True, False, True, False]
    (tmp_path / "bad.csv").write_text("relpath,price\nnot/an/item.jpg,3\n")
    with pytest.raises(MetadataError, match="bad.csv, line 2"):
        run(MeasureConfig(output_dir=str(tmp_path / "out2"), metadata=str(tmp_path / "bad.csv"), **config))
    assert not (tmp_path / "out2").exists()


def test_fashion_update_cli(sample_run, tmp_path, capsys):
    from fashion.cli import main

    run, items = _metadata_run(sample_run, tmp_path)
    assert main(["update", str(run), "--metadata", str(tmp_path / "shop.csv")]) == 0
    assert f"4 columns (price, in_stock, brand, added) from {tmp_path / 'shop.csv'}, {len(items) - 2} of" in \
        capsys.readouterr().out
    (tmp_path / "empty.csv").write_text("")
    assert main(["update", str(run), "--metadata", str(tmp_path / "empty.csv")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "empty.csv") in err


def test_words_rank_by_the_classifiers_score_for_the_category(model_run):
    import torch

    out, classes = model_run
    service = SimilarityService.open(out, warm=False)
    assert service.run.info["embedder"]["layer"] == "head" and service.browse.scores is not None
    classifier = service.classifier
    if classifier is None:  # the embedder's one pass predicts: the model read for the scores' last layer
        from fashion.modelio import load_model

        classifier = load_model(service.run.info["embedder"]["model_dir"])
    label = service.run.items["label"].value_counts().index[0]
    page = service.items(text=f"{label} please", limit=200)
    ids = [i.id for i in page.items]
    assert page.ignored == ["please"] and sorted(ids) == sorted(np.flatnonzero(service.run.items["label"] == label))
    with torch.no_grad():
        probs = torch.softmax(classifier.head[-1](torch.from_numpy(np.array(service.run.embeddings))), 1)
    score = probs[ids, classes.index(label)].numpy()
    assert (np.diff(score) <= 1e-7).all() and len(set(ids)) == len(ids)


def test_sharded_run_gets_the_metadata_columns_too(tmp_path):
    from fashion import retrieval
    from fashion.run.reader import open_run
    from fashion.service import SimilarityService

    from tests.test_scale_embed import make_dataset

    data = make_dataset(tmp_path / "data", n=12)
    out = tmp_path / "out"
    config = dict(input=str(data), k=3, grids=0, runtime="torch", num_workers=0, index="ivfpq-disk", insight=False)
    retrieval.run(retrieval.MeasureConfig(output_dir=str(out), **config))
    items = open_run(out).items
    pd.DataFrame({"id": items["id"], "price": np.arange(len(items)) * 10}).to_csv(tmp_path / "p.csv", index=False)
    result = retrieval.run(retrieval.MeasureConfig(output_dir=str(out), metadata=str(tmp_path / "p.csv"), **config))
    assert result.metrics["index"] == "faiss-ivfpq"
    run = open_run(out)  # resealed: the manifest covers the rewritten item table
    assert run.items["price"].tolist() == list(np.arange(len(items)) * 10) and run.index_ref.kind == "ivfpq"
    service = SimilarityService.open(out, warm=False)
    usable = [i for i in range(len(items)) if items["ok"].iat[i]]
    found = service.neighbors_of(usable[0], k=3, filters=["price>=50"])
    assert found.results and all(m.id * 10 >= 50 and m.id != usable[0] for m in found.results)


def test_fashion_add_with_metadata_types_the_new_items_columns(tmp_path):
    from fashion.catalog.add import add, read_sources
    from fashion.retrieval import MeasureConfig, run
    from fashion.service import SimilarityService

    from factories import make_photo_folder

    every = make_photo_folder(tmp_path / "all", n=10, corrupt=False)
    files = sorted(p.relative_to(every) for p in every.rglob("*.jpg"))
    for i, rel in enumerate(files):
        dest = tmp_path / ("rest" if i % 4 == 1 else "most") / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((every / rel).read_bytes())
    out = tmp_path / "run"
    run(MeasureConfig(input=str(tmp_path / "most"), output_dir=str(out), k=2, index="exact", grids=0, insight=False,
                      runtime="torch", num_workers=0))
    new = read_sources([tmp_path / "rest"])["relpath"].tolist()
    pd.DataFrame({"relpath": new, "price": [10.5 + i for i in range(len(new))]}).to_csv(tmp_path / "new.csv",
                                                                                        index=False)
    added = add(out, [tmp_path / "rest"], metadata=tmp_path / "new.csv")
    service = SimilarityService.open(out, warm=False)
    table = service.filter.table
    assert pd.api.types.is_float_dtype(table["price"]) and table["price"].iloc[added.ids].tolist() == [
        10.5 + i for i in range(len(new))] and table["price"].iloc[:added.ids[0]].isna().all()
    assert [i.id for i in service.items(filters=["price>=11"]).items] == added.ids[1:]
