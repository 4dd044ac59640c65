"""A live run's embeddings as segments and its exact index as rows: a change writes what changed (issue 28 item 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from factories import add_vectors as _add, make_vector_run

from fashion.catalog import state, versions
from fashion.run import layout, segments
from fashion.run.reader import open_run

REPO = Path(__file__).resolve().parents[1]


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _brute_lists(vectors: np.ndarray, live: np.ndarray, k: int) -> dict:
    """{query id: neighbour ids} of an all-pairs exact search over the ``live`` rows (cosine)."""
    from fashion.neighbors import build_index

    index = build_index("exact").fit(vectors[live])
    _, rows = index.kneighbors(None, n_neighbors=k)
    return {int(q): live[r].tolist() for q, r in zip(live, rows)}


def _lists(run_dir) -> dict:
    table = open_run(run_dir, load_index=False).neighbors()
    return {int(q): g["neighbor_id"].tolist() for q, g in table.groupby("query_id")}


def test_segments_read_as_one_array():
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 4)).astype(np.float32) for n in (5, 0, 3, 7)]
    rows, whole = segments.Segments(parts), np.concatenate(parts)
    assert rows.shape == whole.shape == (15, 4) and len(rows.arrays) == 3  # the empty one dropped
    np.testing.assert_array_equal(np.asarray(rows), whole)
    for key in (slice(0, 5), slice(4, 9), slice(2, 15, 3), np.array([14, 0, 5, 5, 8]), whole[:, 0] > 0):
        np.testing.assert_array_equal(rows[key], whole[key])
    np.testing.assert_array_equal(rows[6], whole[6])
    np.testing.assert_array_equal(np.asarray(rows.appended(whole[:2])), np.concatenate([whole, whole[:2]]))
    with pytest.raises(IndexError):
        rows.take([15])


def test_a_change_links_the_unchanged_files_and_equals_a_rebuild(tmp_path):
    run_dir = make_vector_run(tmp_path / "run", n=60, d=16, k=3)
    rng = np.random.default_rng(1)
    new = rng.normal(size=(6, 16)).astype(np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    base = open_run(run_dir, load_index=False).embeddings
    vectors = np.concatenate([np.asarray(base), new])

    ids = _add(run_dir, new)
    assert ids.tolist() == list(range(60, 66))
    run = open_run(run_dir)  # the exact index kept as its rows, fitted at open; every item finds itself
    assert run.index_ref.kind == "rows" and not (run_dir / layout.INDEX_NPZ).exists()
    assert run.info[segments.KEY] == [layout.EMBEDDINGS, segments.segment_name(60)]
    (_, v1), = versions.old_versions(run_dir)
    assert _inode(run_dir / layout.EMBEDDINGS) == _inode(v1 / layout.EMBEDDINGS)  # shared, not copied
    np.testing.assert_array_equal(run.vectors([3, 61, 59, 65]), vectors[[3, 61, 59, 65]])
    assert _lists(run_dir) == _brute_lists(vectors, np.arange(66), 3)

    with versions.writer(run_dir):
        cat = state.load(run_dir)
        doomed = np.array([2, 30, 62])
        state.tombstone(cat, doomed)
        state.commit(cat, {"op": "remove", "count": 3}, removed=doomed)
    v2 = versions.old_versions(run_dir)[-1][1]
    for name in segments.names(open_run(run_dir, load_index=False).info):  # a removal writes no vector
        assert _inode(run_dir / name) == _inode(v2 / name)
    live = np.setdiff1d(np.arange(66), doomed)
    assert _lists(run_dir) == _brute_lists(vectors, live, 3)
    run = open_run(run_dir)
    assert np.array_equal(np.sort(run.index.ids), live)
    np.testing.assert_array_equal(open_run(v1).vectors(np.arange(60)), vectors[:60])  # old versions whole

    from fashion.catalog.metadata import update_run  # a metadata update carries the segments over
    import pandas as pd

    update_run(run_dir, pd.DataFrame({"id": [0, 61], "price": [1.0, 2.0]}))
    assert open_run(run_dir).index.count == len(live)


def test_many_segments_are_compacted_into_one_file(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "MAX_SEGMENTS", 2)
    run_dir = make_vector_run(tmp_path / "run", n=30, d=8, k=2)
    rng = np.random.default_rng(2)
    added = [rng.normal(size=(3, 8)).astype(np.float32) for _ in range(2)]
    _add(run_dir, added[0])
    assert len(open_run(run_dir).info[segments.KEY]) == 2
    _add(run_dir, added[1])  # a third segment: all written as one embeddings.npy again
    run = open_run(run_dir)
    assert segments.KEY not in run.info and isinstance(run.embeddings, np.memmap)
    assert run.embeddings.shape == (36, 8)
    np.testing.assert_allclose(np.asarray(run.embeddings[30:]), np.concatenate(added), rtol=0, atol=0)


KILLED = """
import sys, time
from fashion.run import writer
from fashion.catalog import remove
real = writer.write_neighbors
def slow(*args, **kwargs):
    paths = real(*args, **kwargs)
    print("staged", flush=True)
    time.sleep(120)
    return paths
writer.write_neighbors = slow
remove.remove(sys.argv[1], ids=[1, 2])
"""


def test_kill_9_in_the_new_write_path_leaves_the_previous_version_answering(tmp_path):
    run_dir = make_vector_run(tmp_path / "run", n=40, d=8, k=3)
    _add(run_dir, np.eye(8, dtype=np.float32)[:4])  # a run with a segment and an index kept as rows
    before = _lists(run_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(run_dir)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "staged"  # segments linked, items and lists written, unsealed
        assert any(".staging-" in p.name for p in tmp_path.iterdir())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run = open_run(run_dir)  # whole, verified, the previous lists; its segments untouched
    assert _lists(run_dir) == before and run.index.count == 44
    from fashion.catalog.remove import remove

    remove(run_dir, ids=[1, 2])  # the next change cleans up and succeeds
    assert not any(".staging-" in p.name for p in tmp_path.iterdir())
    assert 1 not in _lists(run_dir) and open_run(run_dir).index.count == 42


def test_a_boolean_column_with_gaps_stays_boolean_through_changes(tmp_path):
    """Shop metadata true/false on some items only (pandas reads it back as objects) is written back as
    booleans by the next change, so a later update of the column still joins (it was turned to text)."""
    import pandas as pd

    from fashion.catalog.metadata import update_run
    from fashion.catalog.remove import remove

    run_dir = make_vector_run(tmp_path / "run", n=20, d=8, k=2)
    update_run(run_dir, pd.DataFrame({"id": [0, 1, 2], "sale": [True, False, True]}))
    remove(run_dir, ids=[5])
    column = open_run(run_dir, load_index=False).items["sale"]
    assert column.iloc[:3].tolist() == [True, False, True] and column.iloc[3:].isna().all()
    update_run(run_dir, pd.DataFrame({"id": [3], "sale": [False]}))
    assert open_run(run_dir, load_index=False).items["sale"].iloc[:4].tolist() == [True, False, True, False]
