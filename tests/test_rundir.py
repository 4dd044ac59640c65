"""fashion.rundir: a run directory is written as one transaction and verified by its manifest."""

from __future__ import annotations

import json
import os

import pytest

from fashion import rundir, staging
from fashion.rundir import RunDirError, transaction, verify


def _write_run(target, text="one", run_id=None):
    with transaction(target, kind="test", run_id=run_id) as txn:
        (txn.path / "a.txt").write_text(text)
        (txn.path / "sub").mkdir()
        (txn.path / "sub" / "b.bin").write_bytes(os.urandom(3000))
        (txn.path / "run.json").write_text(json.dumps({"run_id": txn.run_id}))
    return txn


def test_committed_run_verifies_and_lists_every_file(tmp_path):
    txn = _write_run(tmp_path / "r")
    manifest = verify(tmp_path / "r", kind="test")
    assert sorted(manifest["files"]) == ["a.txt", "run.json", "sub/b.bin"]
    assert manifest["run_id"] == txn.run_id and manifest["files"]["a.txt"]["size"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no staging or old directory left


@pytest.mark.parametrize("damage, named", [
    (lambda d: (d / "a.txt").write_text("two"), "a.txt does not match its SHA-256"),   # same size
    (lambda d: (d / "a.txt").write_text("longer"), "a.txt has 6 bytes"),
    (lambda d: (d / "sub" / "b.bin").unlink(), "sub/b.bin is listed in manifest.json but missing"),
    (lambda d: (d / "run.json").write_text(json.dumps({"run_id": "f" * 32}).ljust(44)), "run.json"),
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{"), "manifest.json: not readable JSON"),
])
def test_verify_refuses_a_changed_directory_naming_the_file(tmp_path, damage, named):
    _write_run(tmp_path / "r")
    damage(tmp_path / "r")
    with pytest.raises(RunDirError) as caught:
        verify(tmp_path / "r")
    message = str(caught.value)
    assert named in message and str(tmp_path / "r") in message and "\n" not in message


def test_files_hashed_at_once_still_name_the_first_changed_file_in_manifest_order(tmp_path):
    with transaction(tmp_path / "r", kind="test") as txn:
        for i in range(12):
            (txn.path / f"f{i:02d}.bin").write_bytes(os.urandom(5000 + i))
    files = list(rundir.read_manifest(tmp_path / "r")["files"])
    for name in (files[9], files[4], files[7]):  # same sizes, other bytes
        (tmp_path / "r" / name).write_bytes(os.urandom((tmp_path / "r" / name).stat().st_size))
    for _ in range(3):
        with pytest.raises(RunDirError, match=f"{files[4]} does not match its SHA-256"):
            verify(tmp_path / "r")


def test_verify_stops_hashing_at_the_first_changed_file(tmp_path, monkeypatch):
    import threading

    with transaction(tmp_path / "r", kind="test") as txn:
        for i in range(16):
            (txn.path / f"f{i:02d}.bin").write_bytes(os.urandom(5000))
    files = list(rundir.read_manifest(tmp_path / "r")["files"])
    (tmp_path / "r" / files[0]).write_bytes(os.urandom(5000))  # the first in manifest order differs
    hashed, held = [], threading.Event()  # never set: the files after the first wait 1 s, as if read slowly
    real = rundir.file_sha256

    def slow_sha256(path):
        hashed.append(os.path.basename(path))
        if os.path.basename(path) != files[0]:
            held.wait(1.0)  # meanwhile verify sees the first file's mismatch and cancels those not started
        return real(path)

    monkeypatch.setattr(rundir, "file_sha256", slow_sha256)
    with pytest.raises(RunDirError, match=f"{files[0]} does not match its SHA-256"):
        verify(tmp_path / "r")
    # the changed file and at most one per hashing thread begun before the mismatch was seen, not all 16
    assert files[0] in hashed and len(hashed) <= 1 + rundir.HASH_THREADS < len(files)


def test_verify_refuses_a_run_of_another_kind(tmp_path):
    _write_run(tmp_path / "r")
    with pytest.raises(RunDirError, match="'test' run, not a 'neighbors' run"):
        verify(tmp_path / "r", kind="neighbors")


def test_a_failed_run_leaves_the_previous_one_untouched(tmp_path):
    first = _write_run(tmp_path / "r", "old")
    with pytest.raises(RuntimeError):
        with transaction(tmp_path / "r") as txn:
            (txn.path / "a.txt").write_text("new")
            raise RuntimeError("killed")
    assert (tmp_path / "r" / "a.txt").read_text() == "old"
    assert verify(tmp_path / "r")["run_id"] == first.run_id
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_kept_folders_are_carried_over_and_not_in_the_manifest(tmp_path):
    target = tmp_path / "r"
    _write_run(target)
    (target / "cache").mkdir()
    (target / "cache" / "chunk.npz").write_bytes(b"x")
    _write_run(target, "again")
    assert (target / "cache" / "chunk.npz").read_bytes() == b"x"
    assert not any(n.startswith("cache") for n in verify(target)["files"])


def test_swap_without_renameat2_and_recovery_of_a_swap_killed_half_way(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "exchange", lambda a, b: False)
    target = tmp_path / "r"
    _write_run(target, "old")
    _write_run(target, "new")
    assert (target / "a.txt").read_text() == "new" and verify(target)
    # killed between the two renames: only the old run exists, under its hidden name
    os.rename(target, tmp_path / ".r.old-123")
    _write_run(target, "newer")
    assert (target / "a.txt").read_text() == "newer"
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_stale_staging_of_a_dead_process_is_removed(tmp_path):
    stale = tmp_path / ".r.staging-999999999-abc"
    stale.mkdir()
    (stale / "x").write_text("half")
    _write_run(tmp_path / "r")
    assert not stale.exists()


# ------------------------------------------------------------------ hostile run directories (issue 11, 7)


def test_a_fifo_in_place_of_a_listed_file_is_refused_without_reading(tmp_path):
    """Hashing would block forever on a FIFO: verify refuses it from its stat, at once."""
    import threading

    _write_run(tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    (tmp_path / "r" / "a.txt").unlink()
    os.mkfifo(tmp_path / "r" / "a.txt")
    manifest["files"]["a.txt"]["size"] = 0
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    box = {}
    thread = threading.Thread(target=lambda: box.update(e=pytest.raises(RunDirError, verify, tmp_path / "r")),
                              daemon=True)
    thread.start()
    thread.join(2)
    if thread.is_alive():
        open(tmp_path / "r" / "a.txt", "wb").close()
        pytest.fail("verify blocked on a FIFO")
    assert "a.txt is a FIFO" in str(box["e"].value)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd"])
def test_a_manifest_pointing_outside_the_directory_is_refused(tmp_path, name):
    _write_run(tmp_path / "r")
    path = tmp_path / "r" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][name] = {"size": 1, "sha256": "0" * 64}
    path.write_text(json.dumps(manifest))
    with pytest.raises(RunDirError, match="points outside the run directory"):
        verify(tmp_path / "r")


def test_an_output_dir_that_is_a_symlink_stays_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    _write_run(link, "one")
    _write_run(link, "two")
    assert link.is_symlink() and (link / "a.txt").read_text() == "two" and verify(link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
