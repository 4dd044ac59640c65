"""fashion.server.insight: the duplicates, map and neighbour-suspects endpoints (FastAPI's TestClient),
on the sample run plus a run with planted copies across splits."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from factories import read_run_items  # noqa: E402
from fashion.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def leaky_client(tmp_path_factory):
    """A run over train/test folders of sample photos where test holds copies of two train photos."""
    from fashion.insight.calibrate import plant_copy
    from fashion.retrieval import MeasureConfig, run
    from fashion.sample import sample_root
    from fashion.service import SimilarityService

    root = tmp_path_factory.mktemp("leaky") / "root"
    for label in ("Hat", "Pants"):
        photos = sorted((sample_root() / "img" / label).glob("*.jpg"))[:4]
        for p in photos:
            (root / "train" / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, root / "train" / label / p.name)
        (root / "test" / label).mkdir(parents=True, exist_ok=True)
        plant_copy(photos[0], root / "test" / label / "copy.jpg", "mirror")
    out = tmp_path_factory.mktemp("leaky_run") / "out"
    run(MeasureConfig(input=str(root), output_dir=str(out), k=4, grids=0, runtime="torch", num_workers=0))
    with TestClient(create_app(SimilarityService.open(out, warm=False)), base_url="http://localhost") as c:
        yield c, out


def test_duplicates_endpoint_lists_leaks_first(leaky_client):
    client, out = leaky_client
    body = client.get("/api/duplicates").json()
    assert body["total"] == 2 and body["summary"]["leaks"]["test_in_train"] == 2
    items = read_run_items(out)
    for c in body["clusters"]:
        assert c["leak"] and c["splits"] == ["test", "train"]
        ids = {i["id"] for i in c["items"]}
        assert len(ids) == 2 and {p["a"] for p in c["pairs"]} | {p["b"] for p in c["pairs"]} == ids
        for i in c["items"]:
            assert i["relpath"] == items.loc[i["id"], "relpath"]
    # paging
    page = client.get("/api/duplicates?offset=1&limit=1").json()
    assert len(page["clusters"]) == 1 and page["clusters"][0]["cluster"] == body["clusters"][1]["cluster"]
    assert client.get("/api/duplicates?limit=0").status_code == 422


def test_map_endpoint_has_one_point_per_usable_item(client, sample_run):
    body = client.get("/api/map").json()
    items = read_run_items(sample_run)
    assert body["method"] == "pca" and body["n"] == int(items["ok"].sum())
    assert [p["id"] for p in body["points"]] == list(items.loc[items["ok"], "id"])
    p = body["points"][0]
    assert set(p) == {"id", "x", "y", "label", "duplicate", "suspect"} and p["label"] == items.loc[p["id"], "label"]
    # a point's id opens that item and its neighbours through the existing endpoint
    assert client.get(f"/api/items/{p['id']}/neighbors?k=3").status_code == 200


def test_knn_suspects_endpoint_matches_the_run_file(client, sample_run):
    body = client.get("/api/knn-suspects").json()
    table = pd.read_csv(sample_run / "suspects.csv")
    assert [s["id"] for s in body["suspects"]] == list(table["id"])
    for s in body["suspects"]:
        assert s["neighbor_label"] != s["label"] and s["neighbor_share"] > 0.5


def test_a_run_without_insight_files_answers_empty(sample_run, tmp_path):
    from fashion.service import SimilarityService

    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    for name in ("duplicates.csv", "map.csv", "suspects.csv"):
        (run / name).unlink()
    from fashion import rundir  # as a --no-insight run would be sealed: without those files

    manifest = json.loads((run / "manifest.json").read_text())
    rundir.write_manifest(run, manifest["run_id"], manifest["kind"])
    with TestClient(create_app(SimilarityService.open(run, warm=False)), base_url="http://localhost") as c:
        assert c.get("/api/duplicates").json()["clusters"] == []
        assert c.get("/api/map").json()["points"] == []
        assert c.get("/api/knn-suspects").json() == {"suspects": []}


def test_page_lists_the_insight_views(client):
    index = client.get("/static/views/index.js").text
    for name in ("duplicates.js", "map.js", "knn_suspects.js"):
        assert name in index
        assert client.get(f"/static/views/{name}").status_code == 200


def test_a_live_version_swap_refreshes_the_insight_pages(leaky_client, tmp_path):
    """After a change is swapped in (fashion serve's LiveService), the pages answer from the new version's
    tables: a removed photo leaves its duplicate cluster and the map."""
    from fashion.catalog.remove import remove
    from fashion.service import SimilarityService
    from fashion.service.live import LiveService

    _, out = leaky_client
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    live = LiveService(SimilarityService.open(run_dir, warm=False), run_dir)
    with TestClient(create_app(live), base_url="http://localhost") as client:
        before = client.get("/api/duplicates").json()
        assert before["total"] == 2
        gone = before["clusters"][0]["items"][0]["id"]
        assert gone in {p["id"] for p in client.get("/api/map").json()["points"]}
        remove(run_dir, ids=[gone])
        assert live.refresh()
        after = client.get("/api/duplicates").json()
        assert after["total"] == 1 and gone not in {i["id"] for c in after["clusters"] for i in c["items"]}
        assert after["summary"] == before["summary"]  # the insight stage's own counts, from the version it ran on
        assert gone not in {p["id"] for p in client.get("/api/map").json()["points"]}
        assert client.get("/api/knn-suspects").status_code == 200
