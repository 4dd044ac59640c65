"""Issue 29: every hostile case a probe of `fashion serve` and the run directory found, as a test.

Memory per request (a live server under 32 concurrent hostile uploads, benchmarks/hostile.py), one run
version per server, a manifest that covers the run, the dataset root never guessed, /images checking
the file's kind, embeddings checked against the index, every error a 4xx with one-line JSON, the Host
allow-list, and the CLI cases (search names and FIFOs, index --factory, knn -k, serve on a busy port,
no empty folder after a failed run).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import runpy
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fashion import cli, rundir  # noqa: E402
from fashion.errors import ImageError  # noqa: E402
from fashion.retrieval import MeasureConfig, run  # noqa: E402
from fashion.rundir import RunDirError  # noqa: E402
from fashion.server import create_app  # noqa: E402
from fashion.server.launch import running_server  # noqa: E402
from fashion.service import SimilarityService  # noqa: E402

from factories import noisy_jpeg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HOSTILE = runpy.run_path(str(REPO / "benchmarks" / "hostile.py"))


def _detail(response) -> str:
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]
    return body["detail"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny finished run (two colours, three photos each, 32 px) to damage copy by copy."""
    base = tmp_path_factory.mktemp("hostile")
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        for i in range(3):
            noisy_jpeg(base / "root" / label / f"{i}.jpg", colour, seed=i)
    # the bare ImageNet backbone: the clothing model maps these colour blobs to nearly one vector
    run(MeasureConfig(input=str(base / "root"), output_dir=str(base / "run"), size=32, grids=0, num_workers=0, k=2,
                      arch="efficientnet_lite0"))
    return base


def _copy(small, tmp_path) -> Path:
    shutil.copytree(small / "run", tmp_path / "run")
    return tmp_path / "run"


def _reseal(run_dir: Path) -> None:
    """Rewrite the manifest over edited files: a crafted run that passes the size and hash checks."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rundir.write_manifest(run_dir, manifest["run_id"], manifest["kind"])


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------- memory per request


def test_live_server_under_32_hostile_uploads(sample_run):
    """The issue's target: 32 concurrent hostile uploads keep the server under its start-up RSS + 1 GB,
    corrupt photos are 422 (never 200), excess requests 503 with Retry-After, and /healthz and id
    queries answer within 100 ms meanwhile. The same server then answers a malformed request, a foreign
    Host header and /openapi.json as the issue asks."""
    with running_server(sample_run) as server:
        result = HOSTILE["storm"](server, 32)
        checks = HOSTILE["checks"](result)
        assert all(checks.values()), (checks, result["statuses"], result["rss_growth_mb"], result["healthz_ms"],
                                      result["id_ms"])
        assert result["healthz_ms"]["n"] >= 5 and result["id_ms"]["n"] >= 5
        statuses = {r["status"] for r in result["results"]}
        assert 503 in statuses and 422 in statuses, result["statuses"]
        for r in result["results"]:
            if r["status"] in (422, 503):
                assert set(json.loads(r["body"])) == {"detail"}
        host, port = server.url.rsplit("//", 1)[1].split(":")
        # a malformed request: uvicorn's 400, as one-line JSON instead of plain text
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header Line\r\n\r\n")
            answer = sock.recv(65536).decode("latin-1")
        head, _, body = answer.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 400") and "application/json" in head.lower(), answer
        assert "detail" in json.loads(body)
        # DNS rebinding: a foreign name in the Host header is refused; the bound address is fine
        import http.client

        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/healthz", headers={"Host": f"attacker.example:{port}"})
        response = conn.getresponse()
        assert response.status == 400 and "Host" in json.loads(response.read())["detail"]
        conn.request("GET", "/openapi.json")
        response = conn.getresponse()
        spec = response.read().decode()
        assert response.status == 200 and os.fspath(Path(sample_run).resolve()) not in spec
        assert os.fspath(sample_run) not in spec
        conn.close()


def _corrupt_jpeg(width: int, height: int) -> bytes:
    return HOSTILE["corrupt_jpeg"](width, height)


def test_a_corrupt_jpeg_is_422_never_200(client):
    for width, height in ((9000, 9000), (3000, 2000)):  # over the pixel limit, and under it: the data check
        data = _corrupt_jpeg(width, height)
        assert len(data) < 60_000
        response = client.post("/api/search", files={"image": ("x.jpg", data)})
        assert response.status_code == 422, response.text
        assert re.search("too large|corrupt", _detail(response))


def test_the_pixel_limit_is_checked_from_the_header_before_decoding(monkeypatch):
    from fashion import images

    from PIL import ImageFile

    data, decoded = _corrupt_jpeg(9000, 9000), []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(ImageError, match="over this limit of 1,000,000 pixels"):
        images.open_image_bytes(data, max_pixels=1_000_000)
    assert not decoded
    info = images.image_info("x", HOSTILE["big_png"](2000, 1000))
    assert (info.format, info.width, info.height) == ("PNG", 2000, 1000)


def test_the_pixel_limit_is_checked_again_on_the_decoded_image(monkeypatch):
    """A header that under-states the size (a format whose real size shows only once decoded) is caught."""
    from fashion import images

    from PIL import ImageFile

    data = HOSTILE["big_png"](2000, 1000)
    real = ImageFile.ImageFile.load

    def load_bigger(self):  # as if the decoder produced more pixels than the header said
        out = real(self)
        self._size = (4000, 1000)
        return out

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_bigger)
    with pytest.raises(ImageError, match="4000x1000 pixels is over this limit"):
        images.open_image_bytes(data, max_pixels=3_000_000)


def test_the_budget_admits_a_bounded_queue_then_503_with_retry_after(sample_service, client):
    from fashion.service.budget import Busy, Limits, MemoryBudget

    budget = MemoryBudget(Limits(max_pixels=1000, memory_mb=1, queue=2, wait_s=0.05))
    with budget.admit(), budget.admit():
        with pytest.raises(Busy):
            with budget.admit():
                pass
    with budget.hold(800_000):
        start = time.perf_counter()
        with pytest.raises(Busy):  # no room for a second photo within the wait
            with budget.hold(800_000):
                pass
        assert time.perf_counter() - start < 1
    with budget.hold(800_000):  # released: room again
        pass
    # through the app: the service's queue is full, so the next photo is 503 before its body is read
    photo = Path(sample_service.run.items["path"].iat[0]).read_bytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sample_service.budget, "limits", Limits(queue=1))
        with sample_service.budget.admit():
            response = client.post("/api/search", files={"image": ("a.jpg", photo)})
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert "busy" in _detail(response)
    assert client.post("/api/search", files={"image": ("a.jpg", photo)}).status_code == 200


def test_limits_refuse_a_photo_that_cannot_fit_the_budget():
    from fashion.service.budget import Limits

    with pytest.raises(ValueError, match="memory_mb"):
        Limits(max_pixels=100_000_000, memory_mb=100)


# ------------------------------------------------------------------------- one run version


def test_a_rerun_into_the_served_directory_does_not_mix_runs(tmp_path):
    out = tmp_path / "out"
    run(MeasureConfig(output_dir=str(out), limit=12, k=3, grids=0, runtime="torch", num_workers=0, size=32))
    with TestClient(create_app(SimilarityService.open(out, warm=False)), base_url="http://localhost") as c:
        run(MeasureConfig(output_dir=str(out), limit=20, k=3, grids=0, runtime="torch", num_workers=0, size=32))
        assert c.get("/healthz").json()["items"] == 12
        points = c.get("/api/map").json()
        assert points["n"] == 12 and max(p["id"] for p in points["points"]) < 12
        for s in c.get("/api/knn-suspects").json()["suspects"]:
            assert c.get(f"/api/items/{s['id']}").json()["label"] == s["label"]


# ------------------------------------------------------------------------- the manifest covers the run


@pytest.mark.parametrize("case", ["empty", "without_items", "insight_unlisted"])
def test_a_manifest_that_does_not_cover_the_run_is_refused(small, tmp_path, case):
    run_dir = _copy(small, tmp_path)
    manifest = run_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    if case == "empty":
        data["files"] = {}
    elif case == "without_items":
        del data["files"]["items/part-000000.parquet"]
    else:
        del data["files"]["map.csv"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(RunDirError, match="does not cover the run") as info:
        SimilarityService.open(run_dir, warm=False)
    assert len(str(info.value).splitlines()) == 1


def test_a_run_without_its_dataset_root_is_refused_with_how_to_fix_it(small, tmp_path, capsys):
    run_dir = _copy(small, tmp_path)
    _edit_json(run_dir / "run.json", lambda d: d.pop("dataset"))
    _reseal(run_dir)
    with pytest.raises(RunDirError, match=r"run\.json: no dataset root .*rerun `fashion neighbors`"):
        SimilarityService.open(run_dir, warm=False)
    assert cli.main(["serve", str(run_dir), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dataset root" in err


def test_images_sends_only_an_image_of_the_kind_its_name_says(small, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(small / "root", root)
    run(MeasureConfig(input=str(root), output_dir=str(tmp_path / "run"), size=32, grids=0, num_workers=0, k=2))
    service = SimilarityService.open(tmp_path / "run", warm=False)
    items = service.run.items
    with TestClient(create_app(service), base_url="http://localhost") as c:
        assert c.get("/images/0").headers["content-type"] == "image/jpeg"
        secret = tmp_path / "secret.txt"
        secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
        target = Path(items["path"].iat[1])
        target.unlink()
        os.link(secret, target)  # a hard link inside the dataset root, named .jpg
        response = c.get("/images/1")
        assert response.status_code == 404 and b"root:" not in response.content
        assert "not an image" in _detail(response)
        png = Path(items["path"].iat[2])
        Image.new("RGB", (8, 8)).save(png, format="PNG")  # an image, but not the JPEG its name says
        response = c.get("/images/2")
        assert response.status_code == 404 and "PNG" in _detail(response)


def test_embeddings_are_checked_against_the_index_beyond_their_shape(small, tmp_path):
    run_dir = _copy(small, tmp_path)
    vectors = np.load(run_dir / "embeddings.npy")
    np.save(run_dir / "embeddings.npy", np.ascontiguousarray(vectors[::-1]))  # same shape, wrong rows
    _reseal(run_dir)
    with pytest.raises(RunDirError, match=r"embeddings\.npy: item \d+ .*does not find itself at distance 0"):
        SimilarityService.open(run_dir, warm=False)


# ------------------------------------------------------------------------- every error a 4xx, one line


@pytest.mark.parametrize("k", ["²", "①", "9" * 5000, "٣"])
def test_form_k_that_int_would_take_or_choke_on_is_422(client, k):
    photo = HOSTILE["big_png"](20, 20)
    response = client.post("/api/search", files={"image": ("a.png", photo)}, data={"k": k})
    assert response.status_code == 422, response.text
    assert "k must be" in _detail(response)


def test_a_multipart_boundary_over_256_characters_is_422(client):
    boundary = "b" * 300
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
            f"x\r\n--{boundary}--\r\n")
    response = client.post("/api/search", content=body.encode(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 422, response.text
    _detail(response)


BAD_VALUES = {
    "per_label_precision_list": ("metrics.json", lambda d: d.update(per_label_precision=[1, 2]), "per_label_precision"),
    "skipped_number": ("metrics.json", lambda d: d.update(skipped=5), "skipped"),
    "timing_text": ("metrics.json", lambda d: d.update(timing={"total": "slow"}), "timing"),
    "recall_text": ("metrics.json", lambda d: d.update(recall_at_k={"1": "high"}), "recall_at_k"),
    "root_number": ("run.json", lambda d: d.update(dataset={"root": 5}), "dataset root"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES) + ["map_x_text", "duplicates_a_text"])
def test_run_files_with_values_of_the_wrong_type_are_refused_at_open(small, tmp_path, case):
    """Re-sealed run files whose values have the wrong type: one line naming the file, at open, instead
    of a 500 on the request that reads them."""
    run_dir = _copy(small, tmp_path)
    if case in BAD_VALUES:
        name, edit, words = BAD_VALUES[case]
        _edit_json(run_dir / name, edit)
    else:
        name, column = ("map.csv", "x") if case == "map_x_text" else ("duplicates.csv", "a")
        table = pd.read_csv(run_dir / name)
        if not len(table):
            table = pd.DataFrame({c: ["1"] for c in table.columns})
        table[column] = "not a number"
        table.to_csv(run_dir / name, index=False)
        words = repr(column)
    _reseal(run_dir)
    with pytest.raises(RunDirError) as info:
        SimilarityService.open(run_dir, warm=False)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and name in message and words in message, message


def test_a_client_that_disconnects_mid_upload_is_one_log_line(sample_service, caplog):
    app = create_app(sample_service)
    messages = iter([{"type": "http.request", "body": b"--x\r\nContent-Disposition: form-data; name=\"image\"",
                      "more_body": True}, {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/search", "raw_path": b"/api/search", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"localhost"), (b"content-type", b"multipart/form-data; boundary=x")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    import threading

    with caplog.at_level(logging.INFO):  # in a thread of its own: another test may leave a loop running here
        worker = threading.Thread(target=lambda: asyncio.run(app(scope, receive, send)))
        worker.start()
        worker.join(30)
    records = [r for r in caplog.records if r.name.startswith("fashion")]
    assert len(records) == 1 and "disconnected" in records[0].getMessage(), [r.getMessage() for r in records]
    assert records[0].levelno < logging.ERROR and records[0].exc_info is None
    assert sent[0]["status"] == 400


def test_host_allow_list(sample_service):
    with TestClient(create_app(sample_service), base_url="http://attacker.example") as c:
        response = c.get("/healthz")
        assert response.status_code == 400 and "Host" in _detail(response)
        assert "default-src 'none'" in response.headers["content-security-policy"]
    app = create_app(sample_service, allowed_hosts=("shop.example",))
    with TestClient(app, base_url="http://shop.example:8000") as c:
        assert c.get("/healthz").status_code == 200
    from fashion.server.listen import default_allowed_hosts, host_allowed

    assert host_allowed("[::1]:8000", default_allowed_hosts("127.0.0.1"))
    assert host_allowed("10.1.2.3:80", default_allowed_hosts("0.0.0.0"))  # an IP literal: no rebinding
    assert not host_allowed("rebind.attacker.example", default_allowed_hosts("0.0.0.0"))
    assert host_allowed("192.168.1.5", default_allowed_hosts("192.168.1.5"))


def test_the_refusal_of_a_changed_file_gives_advice_that_works(small, tmp_path):
    run_dir = _copy(small, tmp_path)
    with open(run_dir / "metrics.json", "a") as f:
        f.write(" ")
    with pytest.raises(RunDirError) as info:
        SimilarityService.open(run_dir, warm=False)
    assert "delete manifest.json" not in str(info.value) and "rerun" in str(info.value)
    (run_dir / "manifest.json").unlink()  # what the old advice said to do: still refused, saying why
    with pytest.raises(RunDirError, match="no manifest.json"):
        SimilarityService.open(run_dir, warm=False)


# ------------------------------------------------------------------------- the command line


def test_search_escapes_names_and_reports_a_fifo(small, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(small / "root" / "red" / "0.jpg", folder / "new\nline\x1b[31m.jpg")
    shutil.copy(small / "root" / "blue" / "0.jpg", os.fsencode(folder) + b"/bad\xff.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(folder / "pipe")
    assert cli.main(["search", str(folder), "--run", str(small / "run"), "-k", "1", "--no-grids"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "new\\nline\\x1b[31m.jpg:" in out
    assert re.search(r"pipe\.jpg: skipped \(is a FIFO", out) and re.search(r"pipe: skipped \(is a FIFO", out)
    assert cli.main(["search", str(folder), "--run", str(small / "run"), "-k", "1", "--no-grids", "--json"]) == 0
    text = capsys.readouterr().out
    text.encode("utf-8")  # no lone surrogate
    answer = json.loads(text)
    ok = {Path(r["photo"]).name: r["ok"] for r in answer}
    assert ok == {"bad\\xff.jpg": False, "new\nline\x1b[31m.jpg": True, "pipe": False, "pipe.jpg": False}
    assert "bad\\xff.jpg: skipped (the name is not valid UTF-8)" in out


@pytest.fixture
def scale_run(tmp_path):
    """A scale run of 13 vectors (manifest, one embeddings shard, an index)."""
    pa = pytest.importorskip("pyarrow")
    from fashion.datasets import ItemTable
    from fashion.scale import ivfpq, manifest, shards

    rng = np.random.default_rng(0)
    n = 13
    vecs = rng.standard_normal((n, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items = pd.DataFrame({"path": [f"/x/{i}.jpg" for i in range(n)], "relpath": [f"{i}.jpg" for i in range(n)],
                          "label": ["a", "b"] * 6 + ["a"], "split": [""] * n})
    manifest.write_manifest(ItemTable(items, "folder", "/x"), tmp_path)
    shards.write_shard(tmp_path / "embeddings" / "tag", pa.table({
        "id": pa.array(np.arange(n)), "vector": shards.vector_array(vecs), "ok": pa.array([True] * n),
        "reason": pa.array([""] * n)}))
    ivfpq.build(tmp_path / "embeddings" / "tag", tmp_path / "index", id_space=n)
    return tmp_path


def test_index_with_a_garbage_factory_is_one_line(scale_run, capsys):
    shutil.rmtree(scale_run / "index")
    assert cli.main(["index", str(scale_run), "--factory", "garbage!!"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--factory 'garbage!!'" in err and "Traceback" not in err
    assert not (scale_run / "index").exists()  # a refused build leaves no empty folder


def test_knn_caps_k_at_the_gallery_size(scale_run, caplog):
    with caplog.at_level(logging.WARNING):
        assert cli.main(["knn", str(scale_run), "-k", "100000"]) == 0
    assert "k=100000 is more than the 12 possible neighbours; using k=12" in caplog.text
    metrics = json.loads((scale_run / "metrics.json").read_text())  # the run knn sealed
    assert metrics["k"] == 12


def test_serve_on_a_busy_port_fails_at_once_before_loading(small, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr(SimilarityService, "open", never)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        start = time.perf_counter()
        assert cli.main(["serve", str(small / "run"), "--port", str(port)]) == 2
        assert time.perf_counter() - start < 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err and "in use" in err


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(Exception):
        run(MeasureConfig(input=str(tmp_path / "no_such_dataset"), output_dir=str(out), grids=0, num_workers=0))
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(Exception):
        run(MeasureConfig(input=str(tmp_path / "no_such_dataset"), output_dir=str(kept), grids=0, num_workers=0))
    assert kept.is_dir()  # a folder the user made stays


_CHURN = r"""
import resource, sys
import numpy as np
from fashion.service.budget import return_freed_memory

assert return_freed_memory()
def faults(size, rounds=40):
    np.ones(size, np.uint8)  # the arena has grown to it once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        a = np.ones(size, np.uint8)  # written whole: every page touched
        b = np.ones(64, np.uint8)  # something above it on the heap, freed first
        del b, a
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds
import psutil
small = faults(3 << 20)
rss0 = psutil.Process().memory_info().rss
big = np.ones(256 << 20, np.uint8)
del big
print(small, (psutil.Process().memory_info().rss - rss0) / 2**20)
"""


def test_return_freed_memory_returns_large_buffers_but_does_not_refault_small_ones():
    """A photo's buffers over 4 MB are mapped and given back at their free (the hostile-upload budget);
    the smaller ones stay in the heap between photos: with glibc's 128 KB trim threshold (what a fixed mmap
    threshold left) each was returned and faulted in again for every photo, 3-4 ms of system CPU a photo."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CHURN], check=True, capture_output=True, text=True).stdout.split()
    small, kept_mb = (float(x) for x in out)
    assert small < 50  # a 3 MB buffer is 768 pages: reused, not faulted in again (736 a round before)
    assert kept_mb < 32  # a 256 MB buffer freed is given back
