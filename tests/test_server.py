"""fashion.server: the HTTP contract (FastAPI's TestClient) and every hostile input of issue #10 point 4."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashion.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(sample_service):
    with TestClient(create_app(sample_service, max_upload=1024 * 1024), base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="module")
def items(sample_run):
    from fashion.run.reader import read_items

    return read_items(sample_run)


def _png(size=(40, 30), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _detail(response) -> str:
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]
    return body["detail"]


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["items"] == 60 and body["model"] and body["index"]


def test_search_by_photo_finds_its_gallery_copy_first(client, items):
    photo = Path(items["path"].iloc[9]).read_bytes()
    response = client.post("/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["k"] == 3 and body["prediction"] is None and len(body["results"]) == 3
    first = body["results"][0]
    assert set(first) >= {"rank", "id", "relpath", "label", "distance"}
    assert first["id"] == 9 and first["rank"] == 1 and first["distance"] < 1e-3
    assert first["relpath"] == items["relpath"].iloc[9] and first["label"] == items["label"].iloc[9]
    # k as a query parameter too; default 10
    assert len(client.post("/api/search?k=2", files={"image": ("q.jpg", photo)}).json()["results"]) == 2
    assert len(client.post("/api/search", files={"image": ("q.jpg", photo)}).json()["results"]) == 10


def test_neighbors_items_labels_run(client, items, sample_run):
    body = client.get("/api/items/4/neighbors?k=3").json()
    assert len(body["results"]) == 3 and all(r["id"] != 4 for r in body["results"])
    page = client.get("/api/items", params={"offset": 10, "limit": 5}).json()
    assert page["total"] == 60 and [i["id"] for i in page["items"]] == list(range(10, 15))
    assert set(page["items"][0]) == {"id", "relpath", "label", "split", "colour", "colour_hex"}
    label = items["label"].iloc[0]
    only = client.get("/api/items", params={"label": label, "limit": 200}).json()
    assert only["total"] == int((items["label"] == label).sum())
    assert client.get("/api/items", params={"q": items["relpath"].iloc[5]}).json()["total"] == 1
    labels = client.get("/api/labels").json()["labels"]
    metrics = json.loads((sample_run / "metrics.json").read_text())
    assert {x["label"]: x["precision"] for x in labels} == metrics["per_label_precision"]
    run = client.get("/api/run").json()
    assert run["headline"][0].startswith("precision@5: ") and run["skipped"] == [] and run["n_suspects"] == 0
    assert client.get("/api/suspects").json() == {"suspects": [], "trust": None}
    assert client.get("/api/items/4").json()["relpath"] == items["relpath"].iloc[4]


def test_search_answers_are_the_dataclasses_json(client, sample_service):
    """The search routes render their answer directly (no asdict, no jsonable_encoder): the same body as
    the service's answer through asdict, key for key and value for value."""
    from dataclasses import asdict

    body = client.get("/api/items/4/neighbors?k=5").json()
    found = sample_service.neighbors_of(4, 5)
    assert body == {"k": found.k, "query_id": 4, "prediction": None, "results": [asdict(m) for m in found.results],
                    "filters": [], "ignored": [], "colour": None, "query_colour": None}
    assert list(body["results"][0]) == ["rank", "id", "relpath", "label", "distance", "colour", "colour_hex"]


def test_images_and_thumbs_by_id(client, items):
    full = client.get("/images/2")
    assert full.status_code == 200 and full.content == Path(items["path"].iloc[2]).read_bytes()
    assert full.headers["content-type"] == "image/jpeg"
    thumb = client.get("/thumbs/2")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256


def test_page_and_static_files_with_csp(client):
    page = client.get("/")
    assert page.status_code == 200 and 'type="module" src="/static/app.js"' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert "<script>" not in page.text  # no inline script in the page itself
    for name in ("app.js", "app.css", "views/index.js", "views/search.js", "views/browse.js", "views/suspects.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert "http://" not in response.text and "https://" not in response.text  # nothing remote
        assert "innerHTML" not in response.text and "insertAdjacentHTML" not in response.text
    for path in ("/healthz", "/api/labels", "/thumbs/1", "/nope"):
        assert "unsafe-inline" not in client.get(path).headers["content-security-policy"]
    assert client.get("/openapi.json").json()["paths"]["/api/search"]


@pytest.mark.parametrize("path", [
    "/images/-1", "/images/60", "/images/99999999999999999999", "/images/abc", "/images/1.5", "/images/0x1",
    "/images/..%2f..%2fetc%2fpasswd", "/images/%2e%2e/%2e%2e/etc/passwd", "/images/../../etc/passwd",
    "/images//etc/passwd", "/images/%2Fetc%2Fpasswd", "/thumbs/-3", "/thumbs/60", "/thumbs/x",
    "/thumbs/%2e%2e", "/api/items/-1/neighbors", "/api/items/60/neighbors", "/api/items/abc/neighbors",
    "/api/items/1e3/neighbors", "/static/../service.py", "/static/%2e%2e/service.py",
    "/static/..%2f..%2fservice.py", "/static//etc/passwd", "/etc/passwd", "/images", "/images/",
])
def test_traversal_and_bad_ids_are_404_or_422(client, path):
    response = client.get(path)
    assert response.status_code in (404, 422), (path, response.status_code, response.text[:200])
    assert b"root:" not in response.content and b"SimilarityService" not in response.content
    if response.headers.get("content-type", "").startswith("application/json"):
        _detail(response)


@pytest.mark.parametrize("query", ["k=0", "k=101", "k=-2", "k=x", "k=2.5"])
def test_bad_k_is_422(client, query):
    assert client.get(f"/api/items/1/neighbors?{query}").status_code == 422
    response = client.post(f"/api/search?{query}", files={"image": ("a.png", _png())})
    assert response.status_code == 422, response.text
    _detail(response)


@pytest.mark.parametrize("params", [{"offset": -1}, {"limit": 0}, {"limit": 201}, {"offset": "x"}])
def test_bad_paging_is_422(client, params):
    response = client.get("/api/items", params=params)
    assert response.status_code == 422
    _detail(response)


def test_bad_uploads_are_4xx_with_one_line(client, items):
    good = Path(items["path"].iloc[0]).read_bytes()
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")  # 100 Mpx: over Pillow's bomb limit, ~10 kB
    cases = [
        ({"files": {"image": ("e.jpg", b"")}}, 422, "empty"),
        ({"files": {"image": ("t.txt", b"hello, not an image")}}, 422, "cannot identify"),
        ({"files": {"image": ("t.jpg", good[: len(good) // 2])}}, 422, "truncated"),
        ({"files": {"image": ("b.png", bomb.getvalue())}}, 422, "decompression bomb"),
        ({"files": {"image": ("big.png", b"\0" * (1024 * 1024 + 1))}}, 413, "limit"),
        ({"files": {"other": ("a.png", _png())}}, 422, "image"),
        ({"data": {"image": "just text"}}, 422, ""),
        ({"content": b"raw bytes", "headers": {"content-type": "image/png"}}, 422, "multipart"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 422, ""),
        ({"files": {"image": ("a.png", _png())}, "data": {"k": "many"}}, 422, "k must be"),
    ]
    for kwargs, status, words in cases:
        response = client.post("/api/search", **kwargs)
        assert response.status_code == status, (kwargs.get("files"), response.status_code, response.text[:300])
        assert words in _detail(response)
    huge = client.post("/api/search", content=b"x" * (3 * 1024 * 1024),
                       headers={"content-type": "multipart/form-data; boundary=x"})
    assert huge.status_code == 413


def test_no_endpoint_writes(client, sample_run, items, tmp_path):
    before = sorted((p.relative_to(sample_run), p.stat().st_mtime_ns) for p in sample_run.rglob("*"))
    photo = Path(items["path"].iloc[1]).read_bytes()
    client.post("/api/search", files={"image": ("q.jpg", photo)})
    for path in ("/thumbs/7", "/images/7", "/api/items/7/neighbors", "/api/items", "/api/labels", "/api/run"):
        client.get(path)
    after = sorted((p.relative_to(sample_run), p.stat().st_mtime_ns) for p in sample_run.rglob("*"))
    assert before == after
    for method in (client.put, client.delete, client.patch):
        assert method("/api/items/1").status_code == 405
