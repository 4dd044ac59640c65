"""The write API (issue 28 item 7): off by default, 401/403 without the right token, content-addressed
uploads, 409 while another writer holds the run, and the served run switching to each new version."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashion.catalog import versions  # noqa: E402
from fashion.errors import ConfigError  # noqa: E402
from fashion.run import layout  # noqa: E402
from fashion.run.reader import open_run  # noqa: E402
from fashion.server import create_app  # noqa: E402
from fashion.server.write import TOKEN_ENV, add_write_routes, read_token  # noqa: E402

TOKEN = "test-write-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(sample_run, tmp_path_factory):
    """(run dir, live service, client with writes on, client with writes off) over a copy of the sample run."""
    from fashion.service import SimilarityService
    from fashion.service.live import LiveService

    run_dir = tmp_path_factory.mktemp("write") / "run"
    shutil.copytree(sample_run, run_dir)
    live = LiveService(SimilarityService.open(run_dir), run_dir)
    app = create_app(live, max_upload=2 * 1024 * 1024)
    add_write_routes(app, live, TOKEN, 2 * 1024 * 1024)
    with TestClient(app, base_url="http://localhost") as on, \
            TestClient(create_app(live), base_url="http://localhost") as off:
        yield run_dir, live, on, off


def _new_photo(run_dir) -> Path:
    """A sample photo that is not in the run."""
    from fashion import sample

    known = set(open_run(run_dir, load_index=False).items["path"].astype(str))
    return next(p for p in sorted(sample.sample_root().glob("img/*/*.jpg"))[::-1] if str(p) not in known)


def _version(client) -> int:
    return client.get("/healthz").json()["version"]


def test_writes_are_off_without_a_token(served):
    run_dir, _, _, off = served
    before = _version(off)
    assert off.post("/api/items", files={"image": ("a.jpg", b"x")}, headers=AUTH).status_code == 405
    assert off.delete("/api/items/1", headers=AUTH).status_code == 405
    assert off.patch("/api/items/1", json={"price": 1}, headers=AUTH).status_code == 405
    assert off.get("/api/items/1").status_code == 200  # the read API stays open
    assert _version(off) == before and not versions.old_versions(run_dir)


def test_401_without_the_token_and_403_with_a_wrong_one(served):
    run_dir, _, on, _ = served
    photo = _new_photo(run_dir).read_bytes()
    before = _version(on)
    for call in (lambda h: on.post("/api/items", files={"image": ("a.jpg", photo)}, headers=h),
                 lambda h: on.delete("/api/items/1", headers=h),
                 lambda h: on.patch("/api/items/1", json={"price": 1}, headers=h)):
        none = call({})
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        assert call({"Authorization": "Bearer " + TOKEN[:-1] + "x"}).status_code == 403
        assert call({"Authorization": "Basic " + TOKEN}).status_code == 403
        assert call({"Authorization": "Bearer"}).status_code == 403
    assert _version(on) == before and not layout.uploads_dir(run_dir).exists()


def test_add_patch_delete_with_the_token(served):
    run_dir, live, on, _ = served
    source = _new_photo(run_dir)
    data = source.read_bytes()
    before = _version(on)
    got = on.post("/api/items", headers=AUTH, files={"image": ("../../../evil.jpg", data, "image/jpeg")},
                  data={"label": "Shirt", "price": "19.5", "brand": "Acme"})
    assert got.status_code == 201, got.text
    body = got.json()
    [new_id] = body["ids"]
    assert body["version"] == before + 1 == _version(on) and live.swaps >= 1
    stored = layout.uploads_dir(run_dir) / f"{hashlib.sha256(data).hexdigest()}.jpg"
    assert stored.read_bytes() == data  # content-addressed, inside the run's directory
    assert not (run_dir.parent.parent / "evil.jpg").exists() and not list(run_dir.parent.rglob("evil.jpg"))
    item = on.get(f"/api/items/{new_id}").json()
    assert item["label"] == "Shirt" and item["relpath"] == f"uploads/{stored.name}"
    assert on.get(f"/thumbs/{new_id}").status_code == 200  # an upload is served like the dataset's photos
    found = on.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, params={"k": 1}).json()
    assert found["results"][0]["id"] == new_id
    assert [i["id"] for i in on.get("/api/items", params={"filter": "brand=Acme"}).json()["items"]] == [new_id]

    again = on.post("/api/items", headers=AUTH, files={"image": ("other-name.jpg", data)})
    assert again.status_code == 201 and again.json()["ids"] == [] and len(again.json()["duplicates"]) == 1

    bad = on.post("/api/items", headers=AUTH, files={"image": ("x.jpg", b"not an image at all")})
    assert bad.status_code == 422 and "not a usable image" in bad.json()["detail"]
    assert len(list(layout.uploads_dir(run_dir).iterdir())) == 1  # nothing stored for it

    patched = on.patch(f"/api/items/{new_id}", headers=AUTH, json={"price": 9.0})
    assert patched.status_code == 200, patched.text
    assert patched.json()["columns"] == ["price"]
    ids = [i["id"] for i in on.get("/api/items", params={"filter": "price<10", "limit": 200}).json()["items"]]
    assert ids == [new_id]
    assert on.patch(f"/api/items/{new_id}", headers=AUTH, json={"path": "/etc/passwd"}).status_code == 422
    assert on.patch(f"/api/items/{new_id}", headers=AUTH, json=[1, 2]).status_code == 422

    gone = on.delete(f"/api/items/{new_id}", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["removed"] == [new_id]
    assert new_id not in [m["id"] for m in on.post("/api/search", files={"image": ("q.jpg", data)}).json()["results"]]
    assert on.delete(f"/api/items/{new_id}", headers=AUTH).status_code == 404
    assert on.patch(f"/api/items/{new_id}", headers=AUTH, json={"price": 1}).status_code == 404
    assert on.delete("/api/items/999999", headers=AUTH).status_code == 404
    assert [v.number for v in versions.history(run_dir)][-1] == _version(on)


def test_409_while_another_writer_holds_the_run(served):
    run_dir, _, on, _ = served
    before = _version(on)
    with versions.writer(run_dir):
        busy = on.delete("/api/items/2", headers=AUTH)
    assert busy.status_code == 409 and "another writer holds" in busy.json()["detail"]
    assert _version(on) == before
    assert on.delete("/api/items/2", headers=AUTH).status_code == 200


def test_the_token_comes_from_a_file_or_the_environment_and_must_be_long(tmp_path):
    assert read_token(None, environ={}) is None
    assert read_token(None, environ={TOKEN_ENV: TOKEN}) == TOKEN
    (tmp_path / "t").write_text(TOKEN + "\n")
    assert read_token(tmp_path / "t", environ={TOKEN_ENV: "ignored-because-file-wins"}) == TOKEN
    (tmp_path / "short").write_text("tooshort\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        read_token(tmp_path / "short")
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(tmp_path / "missing")
