"""Versions of a live run (issue 28 item 6): every change a sealed version, one writer, prune, kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories import make_photo_folder

from fashion.catalog import versions
from fashion.run.reader import open_run

REPO = Path(__file__).resolve().parents[1]


def _fashion(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "fashion", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _run(*args) -> tuple[int, str]:
    proc = _fashion(*args)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _ok(*args) -> str:
    code, out = _run(*args)
    assert code == 0, out
    return out


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A run over 12 of the bundled sample's photos (exact index, the default embedder)."""
    from fashion.retrieval import MeasureConfig, run

    base = tmp_path_factory.mktemp("versions")
    photos = make_photo_folder(base / "photos", n=12, corrupt=False)
    run(MeasureConfig(input=str(photos), output_dir=str(base / "run"), k=3, index="exact", grids=0,
                      insight=False, runtime="torch", num_workers=0))
    return base / "run"


@pytest.fixture
def run_dir(base_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(base_run, target)
    return target


def _metadata(path: Path, rows: dict) -> Path:
    path.write_text("id,price\n" + "".join(f"{i},{p}\n" for i, p in rows.items()), encoding="utf-8")
    return path


def test_each_change_commits_a_version_and_keeps_the_previous_one_whole(run_dir, tmp_path):
    first = open_run(run_dir, load_index=False)
    first_lists = first.neighbors()  # read now: Run.neighbors() reads the directory when called
    assert versions.version_of(first.info) == 1
    out = _ok("update", run_dir, "--metadata", _metadata(tmp_path / "m.csv", {0: 10, 1: 20}))
    assert "version 2" in out
    _ok("remove", run_dir, "--id", 3)
    now = open_run(run_dir)
    assert now.info["version"] == 3
    assert [c["op"] for c in now.info["changes"]] == ["update", "remove"]
    assert now.info["changes"][-1]["count"] == 1 and now.info["changes"][-1]["at"]
    old = versions.old_versions(run_dir)
    assert [n for n, _ in old] == [1, 2]
    assert old[0][1].name == f"1-{first.info['run_id']}"
    v1 = open_run(old[0][1])  # an earlier version is an ordinary, sealed run
    assert v1.neighbors().equals(first_lists) and "price" not in v1.items.columns
    v2 = open_run(old[1][1])
    assert v2.items["price"].iat[1] == 20 and (v2.items["role"] != "removed").all()
    assert (now.items["role"] == "removed").sum() == 1 and now.items["price"].iat[0] == 10

    listing = _ok("versions", run_dir).splitlines()
    assert listing[0].split()[:3] == ["version", "made", "change"]
    rows = [line.split() for line in listing[1:]]
    assert [r[0] for r in rows] == ["1", "2", "3*"]
    assert rows[1][2:4] == ["update", "price"] and rows[2][2:4] == ["remove", "1"]
    assert rows[0][-3] == "12" and rows[2][-3] == "11"  # live items


def test_keep_and_prune(run_dir):
    from fashion.catalog.remove import remove

    for i in range(3):
        remove(run_dir, ids=[i], keep=2)
    assert [n for n, _ in versions.old_versions(run_dir)] == [2, 3]
    out = _ok("versions", run_dir, "--prune", 0)
    assert "pruned 2 old versions" in out and versions.old_versions(run_dir) == []
    assert not [p for p in versions.layout.versions_dir(run_dir).iterdir() if p.name.startswith(".pruned")]
    assert open_run(run_dir).info["version"] == 4


def test_a_second_writer_waits_then_is_refused_with_one_line_and_readers_are_not_blocked(run_dir):
    with versions.writer(run_dir):
        assert open_run(run_dir).info.get("version", 1) == 1  # readers take no lock
        start = time.monotonic()
        code, out = _run("remove", run_dir, "--id", 0, "--wait", "0.5")
        assert code != 0 and "Traceback" not in out
        line = out.strip().splitlines()[-1]
        assert "another writer holds" in line and f"pid {os.getpid()}" in line and "waited 0.5 s" in line
        waiter = _fashion("remove", run_dir, "--id", 0, "--wait", "60")
        time.sleep(min(3.0, time.monotonic() - start + 1.0))
        assert waiter.poll() is None  # waiting for the lock
    out, _ = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, out
    assert open_run(run_dir).info["version"] == 2


def test_a_writer_killed_while_holding_the_lock_frees_it(run_dir):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom fashion.catalog import versions\n"
                               "with versions.writer(sys.argv[1]):\n    print('held', flush=True)\n"
                               "    time.sleep(600)\n", str(run_dir)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(versions.WriterBusy, match=f"pid {holder.pid}"):
            with versions.writer(run_dir, wait=0):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    with versions.writer(run_dir, wait=0):  # the kernel dropped the dead writer's lock
        pass


@pytest.mark.parametrize("command", ["remove", "update"])
def test_kill_9_at_several_points_leaves_a_whole_version_answering(run_dir, tmp_path, command):
    """A real SIGKILL at growing delays into a change: every time the run opens verified, as the previous
    version or the new one (never a mix), its index answers, and the next writer gets the lock at once."""
    meta = _metadata(tmp_path / "m.csv", {i: i for i in range(12)})
    seen_old = seen_new = 0
    for attempt, delay in enumerate((0.3, 1.2, 2.0, 2.6, 3.2, 4.0, 5.5)):
        before = open_run(run_dir, load_index=False)
        args = (("remove", run_dir, "--id", attempt, "--wait", 0) if command == "remove"
                else ("update", run_dir, "--metadata", meta, "--wait", 0))
        proc = _fashion(*args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        run = open_run(run_dir)  # whole and verified
        vector = run.embeddings[run.gallery_ids[:1]]
        _, ids = run.index.search(vector, 1)
        assert ids[0, 0] == run.gallery_ids[0]  # the index answers
        if run.info["run_id"] == before.info["run_id"]:
            seen_old += 1
            assert run.neighbors().equals(before.neighbors())
        else:
            seen_new += 1
            assert run.info["version"] == versions.version_of(before.info) + 1
        for _, path in versions.old_versions(run_dir):
            open_run(path, load_index=False)  # every kept version is whole too
        with versions.writer(run_dir, wait=0):
            pass
    assert seen_old >= 1, "no kill landed before the commit"
    _ok(*(("remove", run_dir, "--id", 11) if command == "remove" else ("update", run_dir, "--metadata", meta)))
    assert not [p for p in run_dir.parent.iterdir() if ".staging-" in p.name]  # leftovers cleaned


def test_healthz_style_identity_changes_with_each_version(run_dir, tmp_path):
    """history() reads only run.json and metrics.json of each version; its run ids are the versions'."""
    _ok("update", run_dir, "--metadata", _metadata(tmp_path / "m.csv", {0: 1}))
    found = versions.history(run_dir)
    assert [v.number for v in found] == [1, 2] and found[-1].current
    assert found[-1].run_id == json.loads((run_dir / "run.json").read_text())["run_id"]
    assert found[0].path.parent == versions.layout.versions_dir(run_dir)
