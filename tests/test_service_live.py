"""A served run follows its versions (issue 28 item 6): `fashion serve` keeps answering through a version
switch made by another process, with zero failed requests under a running (bounded) client loop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fashion.server.launch import running_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return -1, {"error": str(exc)}


def test_a_served_run_switches_version_with_zero_failed_requests(sample_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(sample_run, run_dir)
    with running_server(run_dir) as server:
        assert server.health["version"] == 1
        _, first = _get(server.url + "/api/items/0/neighbors?k=3")
        removed = first["results"][0]["id"]  # item 0's nearest neighbour leaves in version 2
        answers, stop = [], threading.Event()

        def client_loop():  # bounded: at most 60 s or 3,000 requests
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline and len(answers) < 3000:
                code, health = _get(server.url + "/healthz")
                code2, found = _get(server.url + "/api/items/0/neighbors?k=3")
                answers.append((code, health.get("version"), code2, [m["id"] for m in found.get("results", [])]))

        thread = threading.Thread(target=client_loop)
        thread.start()
        try:
            time.sleep(0.5)
            proc = subprocess.run([sys.executable, "-m", "fashion", "-q", "remove", str(run_dir), "--id", str(removed)],
                                  env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            deadline = time.monotonic() + 30
            while not any(v == 2 for _, v, _, _ in answers[-5:]) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join(timeout=90)
        assert not thread.is_alive()
        failed = [a for a in answers if a[0] != 200 or a[2] != 200]
        assert not failed, failed[:3]
        seen = [v for _, v, _, _ in answers]
        assert seen[0] == 1 and seen[-1] == 2 and sorted(set(seen)) == [1, 2]
        assert seen == sorted(seen)  # never back to the old version
        for _, version, _, ids in answers:  # the neighbours call follows /healthz: at version 2 it is on 2
            assert len(ids) == 3 and (version == 1 or removed not in ids)
        assert removed in answers[0][3]
        assert removed not in answers[-1][3]
        code, health = _get(server.url + "/healthz")
        assert code == 200 and health["version"] == 2 and health["items"] == server.health["items"]
