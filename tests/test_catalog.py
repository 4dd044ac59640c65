"""``fashion add`` / ``fashion remove`` on real photos: equal to a rebuild, and kill-safe (issue 28)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from factories import make_photo_folder

from fashion.run.reader import open_run

REPO = Path(__file__).resolve().parents[1]
COMPARED = ("precision_at_k", "map_at_k", "per_label_precision", "per_label_queries", "n_queries", "n_gallery", "k")


def _fashion(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "fashion", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _ok(*args) -> str:
    proc = _fashion(*args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def lists_by_relpath(run_dir) -> dict:
    """{query relpath: [(neighbour relpath, distance)…]} of a run's live items."""
    run = open_run(run_dir, load_index=False)
    rel = run.items["relpath"].astype(str).to_numpy()
    out = {}
    for q, group in run.neighbors().groupby("query_id"):
        out[rel[q]] = [(rel[n], float(d)) for n, d in zip(group["neighbor_id"], group["distance"])]
    return out


def assert_same_lists(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for query in a:
        ids_a, dist_a = zip(*a[query])
        ids_b, dist_b = zip(*b[query])
        np.testing.assert_allclose(dist_a, dist_b, rtol=1e-5, atol=1e-6, err_msg=query)
        if len(set(np.round(dist_a, 5))) == len(dist_a):  # no ties in this list
            assert ids_a == ids_b, query


def metrics(run_dir) -> dict:
    return {key: open_run(run_dir, load_index=False).metrics[key] for key in COMPARED}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The bundled sample's photos split into ``most`` (21) and ``rest`` (5), ``all`` of them, and a run of
    each of ``most`` and ``all`` (exact index, the default embedder)."""
    from fashion.retrieval import MeasureConfig, run

    base = tmp_path_factory.mktemp("catalog")
    every = make_photo_folder(base / "all", n=26, corrupt=False)
    files = sorted(p.relative_to(every) for p in every.rglob("*.jpg"))
    for i, rel in enumerate(files):
        dest = base / ("rest" if i % 5 == 2 else "most") / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(every / rel, dest)
    common = dict(k=3, index="exact", grids=1, insight=False, runtime="torch", num_workers=0)
    for name in ("most", "all"):
        run(MeasureConfig(input=str(base / name), output_dir=str(base / f"run-{name}"), **common))
    return base


def test_add_then_remove_equals_a_rebuild(photos, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(photos / "run-most", run_dir)
    before = lists_by_relpath(run_dir)
    out = _ok("add", run_dir, photos / "rest")
    n_rest = len(list((photos / "rest").rglob("*.jpg")))
    assert n_rest == 5 and f"added {n_rest} photos" in out
    assert_same_lists(lists_by_relpath(run_dir), lists_by_relpath(photos / "run-all"))
    got, want = metrics(run_dir), metrics(photos / "run-all")
    for key in COMPARED:
        assert got[key] == pytest.approx(want[key]), key
    run = open_run(run_dir)  # the refitted index loads and every item finds itself
    assert run.index.count == len(run.gallery_ids) == 26
    assert (run_dir / "index.html").is_file() and list((run_dir / "grids").glob("*.png"))  # the report, redrawn
    photo = sorted((photos / "rest").rglob("*.jpg"))[0]
    found = _ok("search", photo, "--run", run_dir, "-k", 1, "--json")
    assert photo.relative_to(photos / "rest").as_posix() in found  # an added photo finds itself

    again = _ok("add", run_dir, photos / "rest")  # same content: reported and skipped
    assert "added 0 photos" in again and f"{n_rest} already in the run skipped" in again

    rest = sorted(str(p) for p in (photos / "rest").rglob("*.jpg"))
    _ok("remove", run_dir, *rest)
    assert_same_lists(lists_by_relpath(run_dir), before)
    got, want = metrics(run_dir), metrics(photos / "run-most")
    for key in COMPARED:
        assert got[key] == pytest.approx(want[key]), key
    run = open_run(run_dir)
    assert (run.items["role"] == "removed").sum() == n_rest and len(run.items) == 26  # ids stay: tombstones
    removed = np.flatnonzero(run.items["role"] == "removed")
    assert not np.isin(run.neighbors()["neighbor_id"], removed).any()
    assert not np.isin(run.index.ids, removed).any()


def test_remove_by_id_and_filter_and_refusals(photos, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(photos / "run-all", run_dir)
    label = str(open_run(run_dir, load_index=False).items["label"].iat[0])
    _ok("remove", run_dir, "--id", 1, "--filter", f"label={label}")
    run = open_run(run_dir)
    gone = np.flatnonzero(run.items["role"] == "removed")
    assert 1 in gone and (run.items["label"][gone] == label).sum() >= 1
    assert not (run.items["label"][run.items["role"] != "removed"] == label).any()
    proc = _fashion("remove", run_dir, "--id", 1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "no item with id 1 (already removed)" in out and "Traceback" not in out


@pytest.mark.parametrize("command,point", [("add", "early"), ("add", "staging"), ("remove", "staging")])
def test_a_killed_change_leaves_the_previous_run_answering(photos, tmp_path, command, point):
    run_dir = tmp_path / "run"
    shutil.copytree(photos / "run-most", run_dir)
    before = open_run(run_dir, load_index=False).neighbors()
    proc = _fashion(*(("add", run_dir, photos / "rest") if command == "add" else ("remove", run_dir, "--id", 0, 1)))
    deadline = time.monotonic() + 300
    if point == "early":
        time.sleep(1.5)
    else:  # the new run is being written beside the old one
        while not any(".staging-" in p.name for p in tmp_path.iterdir()) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    assert proc.poll() is None, "the add finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    run = open_run(run_dir)  # whole, verified, and the old lists
    assert run.neighbors().equals(before)
    assert len(run.items) == 21
    _ok("add", run_dir, photos / "rest")  # the next change cleans up and succeeds
    assert len(open_run(run_dir).items) == 26


def test_fashion_add_then_search_on_an_ivfpq_disk_run(photos, tmp_path):
    """``fashion add`` on a measure_sim --index ivfpq-disk run (refused before): the new photos' codes go
    to the run's delta beside the linked base, and ``fashion search`` of an added photo finds its own copy first."""
    import json

    from fashion.retrieval import MeasureConfig, run

    run_dir = tmp_path / "run"
    run(MeasureConfig(input=str(photos / "most"), output_dir=str(run_dir), k=3, index="ivfpq-disk", grids=0,
                      insight=False, runtime="torch", num_workers=0))
    assert open_run(run_dir, load_index=False).index_ref.kind == "ivfpq"
    out = _ok("add", run_dir, photos / "rest")
    assert "added 5 photos" in out
    opened = open_run(run_dir)
    assert opened.index_ref.delta and opened.index.count == 26 and len(opened.index.live.delta) == 5
    photo = sorted((photos / "rest").rglob("*.jpg"))[1]
    found = subprocess.run([sys.executable, "-m", "fashion", "search", str(photo), "--run", str(run_dir), "-k", "3",
                            "--json"], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                           timeout=600)
    assert found.returncode == 0, found.stderr
    first = json.loads(found.stdout)[0]["results"][0]  # stdout is the JSON alone (faiss' own line goes to stderr)
    assert first["relpath"] == photo.relative_to(photos / "rest").as_posix() and first["distance"] < 1e-2
    _ok("remove", run_dir, *sorted(str(p) for p in (photos / "rest").rglob("*.jpg")))
    opened = open_run(run_dir)
    assert opened.index.count == 21 and len(opened.index.live.delta) == 0


def _slow_stage(items, ok, stop=None):
    """An item-table stage shaped as the colour stage: its jobs in a spawn process pool one chunk at a time,
    30 chunks of two 0.5 s jobs (30 s with one worker), checking ``stop`` after each result as it does."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from fashion.errors import Cancelled

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in range(30):
            for _ in pool.map(time.sleep, [0.5, 0.5]):
                if stop is not None and stop.is_set():
                    raise Cancelled("slow stage")
    return {"slow": np.zeros(len(items))}


_slow_stage.reads_ok = False  # started beside the network, as the colour stage is


def test_a_failed_embedding_cancels_the_stages_started_beside_it(tmp_path, monkeypatch):
    """``fashion add``: when the network fails, the item-table stage working beside it is cancelled, not
    waited for (its pool's queued work dropped): the error comes back long before the stage's 30 s, no
    worker process outlives it and the run is unchanged."""
    import multiprocessing

    from factories import make_vector_run

    from fashion import rundir
    from fashion.catalog.add import add
    from fashion.pipeline import items as item_stages
    from fashion.service import loading

    run_dir = make_vector_run(tmp_path / "run", n=12)
    sealed = rundir.read_manifest(run_dir)
    new = make_photo_folder(tmp_path / "new", n=3, corrupt=False)

    class Failing:
        def embed(self, *args, **kwargs):
            raise RuntimeError("the network failed")

    monkeypatch.setattr(item_stages, "ITEM_TABLE_STAGES", (_slow_stage,))
    monkeypatch.setattr(loading, "embedder_for", lambda info: Failing())
    before = set(multiprocessing.active_children())  # whatever other tests left running
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="the network failed"):
        add(run_dir, [new])
    assert time.perf_counter() - started < 15  # the old code waited out the stage's 30 s
    assert not set(multiprocessing.active_children()) - before
    assert rundir.verify(run_dir) == sealed
