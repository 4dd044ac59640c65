import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from fashion import atomic
from fashion.errors import OutputError


def _names(path):
    return sorted(p.name for p in path.iterdir())


def test_writers_produce_complete_files_and_no_leftovers(tmp_path):
    atomic.write_text(tmp_path / "a.txt", "héllo\n")
    atomic.write_json(tmp_path / "m.json", {"x": np.float32(0.5), "nan": float("nan"), "arr": np.arange(3)})
    atomic.save_npy(tmp_path / "e.npy", np.eye(3, dtype=np.float32))
    atomic.save_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": 0.5, "nan": None, "arr": [0, 1, 2]}
    assert np.array_equal(np.load(tmp_path / "e.npy"), np.eye(3, dtype=np.float32))
    assert pd.read_csv(tmp_path / "t.csv")["a"].tolist() == [1, 2]
    assert _names(tmp_path) == ["a.txt", "e.npy", "m.json", "t.csv"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["keep.txt"]


def test_atomic_path_for_name_based_writers(tmp_path):
    with atomic.atomic_path(tmp_path / "x.npy") as tmp:
        assert tmp != tmp_path / "x.npy"
        np.save(tmp, np.ones(2))
    assert np.load(tmp_path / "x.npy").tolist() == [1.0, 1.0]
    assert _names(tmp_path) == ["x.npy"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_gives_one_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OutputError, match=r"cannot write .*ro.*permission denied"):
            atomic.write_text(ro / "a.txt", "x")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_unwritable_parent_gives_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputError, match="cannot write"):
        atomic.write_text(blocker / "sub" / "a.txt", "x")


def test_outputs_follow_the_umask_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        with atomic.atomic_path(tmp_path / "b.npy") as tmp:
            np.save(tmp, np.ones(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.npy").stat().st_mode) == 0o644


# ------------------------------------------------------- a full disk says so (issue 11, class 7)
# (the real full disk: tests/test_faults.py::test_full_disk_says_the_disk_is_full_and_names_the_file)


def test_errno_decides_not_the_message_text(tmp_path, monkeypatch):
    """An OSError without errno (a short write) on a disk with no free blocks is "the disk is full";
    the same error with free space left is reported as it is, not guessed."""
    class Full:
        f_bavail, f_frsize = 0, 4096

    def short_write(f):
        raise OSError("100 requested and 16 written")

    monkeypatch.setattr(atomic.os, "statvfs", lambda path: Full())
    with pytest.raises(OutputError, match=r": the disk is full: no space left on device$"):
        with atomic.atomic_write(tmp_path / "x.bin") as f:
            short_write(f)
    Full.f_bavail = 1 << 20
    with pytest.raises(OutputError, match=r": 100 requested and 16 written$"):
        with atomic.atomic_write(tmp_path / "x.bin") as f:
            short_write(f)
    assert _names(tmp_path) == []
