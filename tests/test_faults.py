"""Faults: a killed run loses nothing, a half-written file is never visible, a full or read-only disk is
one clear line (issue 5, item 2).

The promises:

- ``measure_sim.py`` killed with SIGKILL during embedding, or while it writes its report, and then run
  again, ends with exactly the outputs of an uninterrupted run (embeddings.npy bitwise, the neighbour
  and item tables equal); the rerun reuses the embedding cache written before the kill;
- at every moment of those runs, each file under a final name is complete (it parses: JSON, CSV, NPY,
  NPZ, parquet, PNG, HTML) — partial data only ever lives under a hidden temporary name;
- ``fashion train`` killed after stage 1 resumes with ``--resume`` from stage 1's saved best model and
  does not train stage 1 again;
- a full disk (ENOSPC) or a read-only output directory (EROFS) ends ``measure_sim.py`` / ``fashion
  train`` with exit code 2 and one line on stderr naming the file and the cause, no traceback.

Faults are real where the machine allows it: SIGKILL, and a tmpfs mounted full-size or read-only in
a private mount namespace (``unshare --user --map-root-user --mount``, no root needed; skipped where
unavailable). The in-process variants simulate ENOSPC/EROFS in fashion.atomic's calls and always run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from factories import read_run_items, read_run_neighbors
from fashion import cli

REPO = Path(__file__).resolve().parents[1]
MEASURE = [sys.executable, str(REPO / "measure_sim.py")]
TRAIN = [sys.executable, "-m", "fashion"]


def make_root(root: Path, per_class: int, side: int = 16, classes: int = 4, splits=("",)) -> Path:
    """``per_class`` small noisy JPEGs in each of ``classes`` folders (per split folder, if any)."""
    rng = np.random.default_rng(0)
    colors = rng.integers(0, 256, size=(classes, 3))
    for split in splits:
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                noise = rng.integers(-40, 41, size=(side, side, 3))
                Image.fromarray(np.clip(colors[c] + noise, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg")
    return root


# --------------------------------------------------------------------------- "no half-written file"


def check_complete(path: Path) -> None:
    """Raise if ``path`` is not a complete file of its kind (a truncated one fails to parse)."""
    suffix = path.suffix
    if suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif suffix == ".csv":
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), "no final newline"
        pd.read_csv(path)
    elif suffix == ".npy":
        np.load(path, allow_pickle=False)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.read_table(path)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for name in z.files:
                z[name]
    elif suffix == ".png":
        with Image.open(path) as image:
            image.load()
    elif suffix == ".html":
        assert path.read_text(encoding="utf-8").rstrip().endswith("</html>"), "no closing </html>"
    elif suffix in (".safetensors",):
        from safetensors.numpy import load_file

        load_file(path)


def final_files(directory: Path) -> list[Path]:
    """Files under their final names: temporary files are hidden (``.name.XXXX.tmp``)."""
    return [p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".") and ".tmp" not in p.name]


class Watcher:
    """A thread that keeps checking every new or changed final-named file under ``directory``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.seen: dict[Path, tuple[int, int]] = {}
        self.bad: list[str] = []
        self.checked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Watcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.scan()  # and once more at the end

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            time.sleep(0.005)

    def scan(self) -> None:
        if not self.directory.exists():
            return
        for path in final_files(self.directory):
            try:
                st = path.stat()
                if self.seen.get(path) == (st.st_mtime_ns, st.st_size):
                    continue
                check_complete(path)
                self.seen[path] = (st.st_mtime_ns, st.st_size)
                self.checked += 1
            except FileNotFoundError:
                continue  # replaced or removed between listing and reading
            except Exception as exc:  # noqa: BLE001 - any parse failure is a half-written file
                self.bad.append(f"{path.relative_to(self.directory)}: {type(exc).__name__}: {exc}")


def run_until(cmd: list[str], ready, timeout: float = 300) -> subprocess.Popen:
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` is true. Fails if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (code {proc.returncode}) before the kill point: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the kill point never came")
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return proc


def run_ok(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# ------------------------------------------------------------------------------ measure_sim kills

N_PER_CLASS = 450  # 1,800 images: the first 1,024-row cache chunk lands well before the end


@pytest.fixture(scope="module")
def kill_root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("kill") / "photos", N_PER_CLASS)


def _measure(root: Path, out: Path) -> list[str]:
    return MEASURE + ["-q", "-i", str(root), "--output_dir", str(out), "--size", "32", "--batch-size", "8",
                      "-k", "5", "--grids", "40", "--workers", "1"]


@pytest.fixture(scope="module")
def reference_run(kill_root, tmp_path_factory) -> Path:
    """An uninterrupted run: the outputs every interrupted-then-resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run_ok(_measure(kill_root, out))
    return out


def assert_same_outputs(out: Path, reference: Path) -> None:
    """The files a user reads are those of the uninterrupted run (timings and cache counts aside)."""
    a, b = np.load(out / "embeddings.npy"), np.load(reference / "embeddings.npy")
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape and a.tobytes() == b.tobytes()
    pd.testing.assert_frame_equal(read_run_neighbors(out), read_run_neighbors(reference))
    pd.testing.assert_frame_equal(read_run_items(out), read_run_items(reference))
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    for volatile in ("timing", "n_embedded", "n_from_cache"):
        ma.pop(volatile), mb.pop(volatile)
    assert ma == mb
    # a kill may leave a hidden temporary file behind (never a final name); compare the final names
    assert sorted(p.name for p in final_files(out / "grids")) == sorted(p.name for p in final_files(reference / "grids"))


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["embedding", "report"])
def test_measure_sim_killed_then_rerun_equals_uninterrupted(kill_root, reference_run, tmp_path, moment):
    """SIGKILL when the first cache chunk (embedding) or the first grid (report) appears; the rerun
    reuses the cache and reproduces the uninterrupted outputs; no file is ever half-written."""
    out = tmp_path / "run"
    if moment == "embedding":
        ready = lambda: any(out.glob("cache/*/chunk_00000*.npz"))  # noqa: E731
    else:
        # the report is written in the run's staging directory beside ``out`` (fashion.rundir)
        ready = lambda: any(tmp_path.glob(".run.staging-*/grids/*.png"))  # noqa: E731
    with Watcher(out) as watcher:
        run_until(_measure(kill_root, out), ready)
        assert not (out / "metrics.json").exists(), "the kill landed after the run had finished"
        if moment == "embedding":
            assert not (out / "embeddings.npy").exists()
        proc = run_ok(_measure(kill_root, out))
    assert watcher.bad == [] and watcher.checked > 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_from_cache"] >= (1024 if moment == "embedding" else 4 * N_PER_CLASS), metrics
    assert_same_outputs(out, reference_run)
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------- train resume


@pytest.mark.slow
def test_train_killed_after_stage1_resumes_without_redoing_it(tmp_path):
    """SIGKILL once stage 1's checkpoint is saved; `fashion train --resume` loads stage 1's best
    model, trains stages 2 and 3 only, and history.csv keeps stage 1's row from before the kill."""
    root = make_root(tmp_path / "photos", 8, side=24, classes=3, splits=("train", "valid"))
    out = tmp_path / "train"
    cmd = TRAIN + ["train", str(root), "--output_dir", str(out), "--size", "32", "--final-size", "32",
                   "--epochs", "1,2,1", "--lr", "1e-3", "--batch-size", "8", "--workers", "0"]
    state = out / "checkpoints" / "state.json"
    with Watcher(out) as watcher:
        run_until(cmd, state.is_file, timeout=600)
        saved = json.loads(state.read_text())
        assert saved["completed"] == ["stage1"], "the kill landed after stage 2 had finished"
        before = pd.read_csv(out / "history.csv")
        assert list(before["stage"]) == ["stage1"]
        proc = run_ok(cmd + ["--resume"])
    assert watcher.bad == []
    log = proc.stderr
    assert "stage1 already done (resumed)" in log and "resuming" in log
    assert "stage1 epoch" not in log and "stage2 epoch 1/2" in log, log[-3000:]
    after = pd.read_csv(out / "history.csv")
    assert list(after["stage"]) == ["stage1", "stage2", "stage2", "stage3"]
    pd.testing.assert_frame_equal(after.iloc[:1], before)
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()


# ------------------------------------------------------------------------------ full / read-only disk


def _one_clear_line(stderr: str, prog: str, cause: str) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"{prog}: error: cannot write ") and lines[0].endswith(cause), lines[0]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("tiny") / "photos", 3, classes=2, splits=("train", "valid"))


FAULTS = {"full_disk": (errno.ENOSPC, "no space left on device"), "read_only": (errno.EROFS, "read-only file system")}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_measure_sim_on_a_failing_disk_simulated(tiny_root, tmp_path, monkeypatch, capsys, fault):
    """In-process, the disk fails in fashion.atomic (fsync: ENOSPC, creating the temporary file:
    EROFS): exit code 2, one stderr line naming the file and the cause."""
    import fashion.atomic

    code, cause = FAULTS[fault]

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    if fault == "full_disk":
        monkeypatch.setattr(fashion.atomic.os, "fsync", fail)
    else:
        monkeypatch.setattr(fashion.atomic.tempfile, "mkstemp", fail)
    out = tmp_path / "out"
    status = cli.measure_sim_main(["-q", "-i", str(tiny_root), "--output_dir", str(out), "--size", "32",
                                   "--batch-size", "4", "--grids", "1", "--workers", "0"])
    assert status == 2
    _one_clear_line(capsys.readouterr().err, "measure_sim.py", cause)
    assert final_files(out) == []


def _can_mount() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=4k tmpfs \"$d\" && umount \"$d\" && rmdir \"$d\""],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="cannot mount a tmpfs in a private user+mount namespace")


def on_tmpfs(cmd: list[str], mount_point: Path, options: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` with a fresh tmpfs (``options``) on ``mount_point``, visible to it alone."""
    mount_point.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"'
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                           str(mount_point), *cmd], capture_output=True, text=True, timeout=600)


TOOLS = {
    "measure_sim": lambda root, out: MEASURE + ["-q", "-i", str(root), "--output_dir", str(out), "--size", "32",
                                                "--batch-size", "4", "--grids", "1", "--workers", "0"],
    "train": lambda root, out: TRAIN + ["-q", "train", str(root), "--output_dir", str(out), "--size", "32",
                                        "--final-size", "32", "--epochs", "1", "--lr", "1e-3", "--batch-size", "4",
                                        "--workers", "0"],
}
PROGS = {"measure_sim": "measure_sim.py", "train": "fashion"}


@needs_mount
@pytest.mark.slow
@pytest.mark.parametrize("case", [pytest.param(("train", "full_disk"), id="full_disk-train"),
                                  pytest.param(("train", "read_only"), id="read_only-train"),
                                  pytest.param(("measure_sim", "full_disk"), id="full_disk-measure_sim"),
                                  pytest.param(("measure_sim", "read_only"), id="read_only-measure_sim")])
def test_failing_disk_is_one_clear_line(tiny_root, tmp_path, case):
    """A real tmpfs: 4 KiB (full after the first few files) or mounted read-only."""
    tool, fault = case
    mount = tmp_path / "disk"
    options = "size=4k" if fault == "full_disk" else "ro"
    proc = on_tmpfs(TOOLS[tool](tiny_root, mount / "out"), mount, options)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _one_clear_line(proc.stderr, PROGS[tool], FAULTS[fault][1])


# ------------------------------------------------------------------- a run directory is all-or-nothing
# (issue 11, class 1: a failed or killed rerun must leave the previous complete run answering)


def _search_answer(run_dir: Path, photo: Path) -> list[str]:
    from fashion.search import search

    (result,) = search([photo], run_dir, k=3, grids=False)
    assert result.ok, result.reason
    paths = read_run_items(run_dir)["path"].astype(str)
    return [paths[m.id] for m in result.matches]  # the photos it answers with, as files on disk


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> tuple[Path, Path]:
    """Two datasets of the same size and layout (the row-count check cannot tell them apart)."""
    base = tmp_path_factory.mktemp("two")
    return make_root(base / "A", 3, classes=2), make_root(base / "B", 3, side=20, classes=2)


def _measure_args(root: Path, out: Path) -> list[str]:
    return ["-q", "-i", str(root), "--output_dir", str(out), "--size", "32", "--batch-size", "4", "-k", "3",
            "--grids", "1", "--workers", "0"]


@pytest.mark.parametrize("fails_at", ["embeddings.npy", "index.npz", "index.html"])
def test_failed_rerun_on_another_dataset_leaves_the_previous_run_answering(two_datasets, tmp_path, monkeypatch,
                                                                           capsys, fails_at):
    """A rerun on dataset B into A's directory fails (full disk) while writing ``fails_at``: the directory
    is still A's complete run and `fashion search` still answers with A's photos, bit for bit."""
    import fashion.atomic

    a, b = two_datasets
    out = tmp_path / "run"
    assert cli.measure_sim_main(_measure_args(a, out)) == 0
    photo = a / "class1" / "00001.jpg"
    before = _search_answer(out, photo)
    assert all(p.startswith(str(a)) for p in before)
    files = {p.relative_to(out): p.read_bytes() for p in final_files(out) if "cache" not in p.parts}

    real = os.replace

    def failing(src, dst, *args, **kwargs):  # the disk fills up as ``fails_at`` is put in place
        if Path(dst).name == fails_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(fashion.atomic.os, "replace", failing)
    assert cli.measure_sim_main(_measure_args(b, out)) == 2
    capsys.readouterr()
    monkeypatch.undo()
    assert {p.relative_to(out): p.read_bytes() for p in final_files(out) if "cache" not in p.parts} == files
    assert _search_answer(out, photo) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_rerun_reuses_the_cache_kept_outside_the_swapped_run(two_datasets, tmp_path):
    """The cache (output_dir/cache) is carried over by the swap: a rerun computes nothing."""
    a, _ = two_datasets
    out = tmp_path / "run"
    assert cli.measure_sim_main(_measure_args(a, out)) == 0
    assert cli.measure_sim_main(_measure_args(a, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_embedded"] == 0 and metrics["n_from_cache"] == metrics["n_images"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any(name.startswith("cache/") for name in manifest["files"])
    assert json.loads((out / "run.json").read_text())["run_id"] == manifest["run_id"]


def test_search_refuses_a_mixed_run_directory_naming_the_file(two_datasets, tmp_path, capsys):
    """Files of two runs in one directory (an older version's killed rerun): one line naming the file."""
    a, b = two_datasets
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert cli.measure_sim_main(_measure_args(a, run_a)) == 0
    assert cli.measure_sim_main(_measure_args(b, run_b)) == 0
    shutil.copy(run_b / "items" / "part-000000.parquet", run_a / "items" / "part-000000.parquet")
    status = cli.main(["search", str(a / "class0" / "00000.jpg"), "--run", str(run_a), "--output_dir", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "items/part-000000.parquet" in err and str(run_a) in err, err


@pytest.mark.slow
def test_killed_rerun_on_another_dataset_leaves_the_previous_run_answering(tmp_path):
    """SIGKILL a rerun on dataset B while it draws its grids (its other files are written by then):
    the directory is A's complete run and `fashion search` answers exactly as before."""
    a = make_root(tmp_path / "A", 60, classes=2)
    b = make_root(tmp_path / "B", 60, side=20, classes=2)
    out = tmp_path / "run"
    args = lambda root: MEASURE + _measure_args(root, out)[:-4] + ["--grids", "60", "--workers", "0"]  # noqa: E731
    run_ok(args(a))
    photo = a / "class1" / "00007.jpg"
    before = _search_answer(out, photo)
    first = (out / "run.json").stat().st_mtime_ns

    def drawing() -> bool:  # a new grid of the rerun, wherever the run stages it
        return any(p.stat().st_mtime_ns > first for p in tmp_path.rglob("grid_*.png"))

    run_until(args(b), drawing)
    assert _search_answer(out, photo) == before
    from fashion.rundir import verify

    verify(out)
    assert cli.main(["search", str(photo), "--run", str(out), "--output_dir", str(tmp_path / "g")]) == 0


def test_search_photo_that_is_a_fifo_is_skipped_at_once(two_datasets, tmp_path):
    """`fashion search` given a FIFO as the photo (it used to block forever): that photo comes back
    skipped with the reason within seconds, the other photo is answered."""
    from fashion.search import search

    a, _ = two_datasets
    out = tmp_path / "run"
    assert cli.measure_sim_main(_measure_args(a, out)) == 0
    fifo = tmp_path / "upload.jpg"
    os.mkfifo(fifo)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(r=search([fifo, a / "class0" / "00000.jpg"], out, k=2,
                                                                 grids=False)), daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        open(fifo, "wb").close()  # frees the blocked reader
        pytest.fail("search blocked on a FIFO photo")
    piped, good = box["r"]
    assert not piped.ok and piped.reason.startswith("is a FIFO"), piped.reason
    assert good.ok and len(good.matches) == 2


# ------------------------------------------- the cache keys on every input of a vector (issue 11, 2 + 8)


def _tiny_embedder(**changes):
    import torch

    from fashion.embedding import Embedder

    torch.manual_seed(0)
    embedder = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=32, precision="fp32",
                                      runtime="torch")
    for name, value in changes.items():
        setattr(embedder, name, value)
    return embedder


VECTOR_INPUTS = {"std": (0.25, 0.25, 0.25), "mean": (0.1, 0.2, 0.3), "size": 40, "resize": "squish",
                 "precision": "bf16", "runtime": "openvino", "checksum": "f" * 64, "name": "other_arch"}


@pytest.mark.parametrize("name", sorted(VECTOR_INPUTS))
def test_every_input_of_a_vector_names_its_own_cache(tmp_path, name):
    """A change in any one input that shapes a vector gives another cache directory (mean and std,
    edited in a model.json, used to reuse the old vectors)."""
    base = _tiny_embedder()
    changed = _tiny_embedder(**{name: VECTOR_INPUTS[name]})
    assert base.cache_path(tmp_path) != changed.cache_path(tmp_path)
    assert base.cache_path(tmp_path, crop=True) != base.cache_path(tmp_path)
    assert _tiny_embedder().cache_path(tmp_path) == base.cache_path(tmp_path)  # and nothing else does


def test_normalisation_edit_misses_the_cache(tmp_path):
    """The issue's case end to end: the same weights with another normalisation recompute every vector."""
    paths = [str(p) for p in sorted(make_root(tmp_path / "photos", 3, classes=2).rglob("*.jpg"))]
    first = _tiny_embedder().embed(paths, batch_size=4, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    again = _tiny_embedder().embed(paths, batch_size=4, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    # (mean, not std: a randomly initialised ReLU network is scale-invariant after L2 normalisation)
    edited = _tiny_embedder(mean=(0.1, 0.2, 0.3)).embed(paths, batch_size=4, cache_dir=tmp_path / "cache",
                                                        num_workers=0, progress=False)
    assert (first.n_computed, again.n_cached, edited.n_cached, edited.n_computed) == (6, 6, 0, 6)
    assert not np.allclose(first.vectors, edited.vectors)


def test_an_image_rewritten_with_its_old_size_and_mtime_misses_the_cache(tmp_path):
    """New content of the same size with the old mtime put back (cp -p, a sync tool) is a new image."""
    paths = [str(p) for p in sorted(make_root(tmp_path / "photos", 2, classes=2).rglob("*.jpg"))]
    embedder = _tiny_embedder()
    embedder.embed(paths, batch_size=4, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    victim = Path(paths[0])
    st = victim.stat()
    data = bytearray(Path(paths[1]).read_bytes())
    data = (bytes(data) + bytes(st.st_size))[:st.st_size] if len(data) < st.st_size else bytes(data[:st.st_size])
    victim.write_bytes(data)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    result = _tiny_embedder().embed(paths, batch_size=4, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    assert result.n_computed == 1 and result.n_cached == 3


def test_concurrent_writers_sharing_a_cache_never_replace_each_others_chunks(tmp_path):
    """Two runs open the same cache directory at once; each writes its first chunk: both survive."""
    from fashion.embedding.cache import ChunkCache

    one, two = ChunkCache(tmp_path), ChunkCache(tmp_path)
    one.write(["a"], np.ones((1, 4), np.float32), np.array([True]), [""])
    two.write(["b"], np.full((1, 4), 2, np.float32), np.array([True]), [""])
    assert len(list(tmp_path.glob("chunk_*.npz"))) == 2
    entries = ChunkCache(tmp_path).entries
    assert set(entries) == {"a", "b"} and entries["b"][0][0] == 2


def test_a_cache_chunk_with_a_crafted_header_is_ignored_unallocated(tmp_path, caplog):
    import io
    import zipfile

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (2**45, 1280)})
    with zipfile.ZipFile(tmp_path / "chunk_00000-x.npz", "w") as archive:
        archive.writestr("vectors.npy", buffer.getvalue())
    from fashion.embedding.cache import ChunkCache

    assert ChunkCache(tmp_path).entries == {}
    assert "claims" in caplog.text


# ----------------------------------------------------- a full disk says so (issue 11, class 7)


@needs_mount
@pytest.mark.parametrize("writer", ["save_npy", "write_text"])
def test_full_disk_says_the_disk_is_full_and_names_the_file(tmp_path, writer):
    """A real 64 KiB tmpfs: numpy's short write used to surface as "100000 requested and 16352 written"
    (an OSError without errno); the message now says the disk is full and names the file."""
    mount = tmp_path / "disk"
    data = "np.zeros(100_000, np.float32)" if writer == "save_npy" else "'x' * 400_000"
    code = (f"import numpy as np; from fashion import atomic\n"
            f"try:\n    atomic.{writer}({str(mount / 'big.bin')!r}, {data})\n"
            f"except atomic.OutputError as exc:\n    print(exc)\n")
    proc = on_tmpfs([sys.executable, "-c", code], mount, "size=64k")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"cannot write {mount / 'big.bin'}: the disk is full: no space left on device"
