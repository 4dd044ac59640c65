"""The live catalogue on IVF-PQ runs (issue 28): the on-disk base is linked into every version unchanged beside
a delta, folded into a new base past its share; earlier versions stay byte-identical, a kill -9 leaves the
previous version answering; the in-memory index keeps its codes and encodes only the new vectors."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from factories import add_vectors as _add, make_ivfpq_run

from fashion.catalog import versions
from fashion.run import layout
from fashion.run.reader import open_run
from fashion.scale import delta as live_delta

REPO = Path(__file__).resolve().parents[1]
FACTORY, NPROBE = "IVF16,PQ4x4", 4


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 16)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_ivfpq_run(tmp_path / "run", _vectors(400, 0), k=3, factory=FACTORY, nprobe=NPROBE)


def _hashes(directory: Path) -> dict:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _remove(run_dir: Path, ids) -> None:
    from fashion.catalog.remove import remove

    remove(run_dir, ids=list(ids))


def _finds_itself(run_dir: Path, ids: np.ndarray) -> None:
    run = open_run(run_dir)  # verified, and a sample of the gallery finds itself at distance ~0
    dist, found = run.index.search(run.vectors(ids), 1)
    assert found[:, 0].tolist() == list(ids) and np.abs(dist).max() < 1e-2


def test_a_change_links_the_base_writes_a_delta_and_leaves_old_versions_byte_identical(run_dir, monkeypatch):
    v1 = _hashes(run_dir)
    added = _add(run_dir, _vectors(20, 1))
    (_, old), = versions.old_versions(run_dir)
    assert _hashes(old) == v1  # the previous version, byte for byte
    run = open_run(run_dir)
    assert run.index_ref.delta and run.index.count == 420 and run.info["index"]["delta"] is True
    for name in layout.IVFPQ_FILES:  # the base is shared, never copied or rewritten
        assert _inode(run_dir / "ivfpq" / name) == _inode(old / "ivfpq" / name)
    assert len(run.index.live.delta) == 20 and run.metrics["n_gallery"] == 420
    _finds_itself(run_dir, added[[0, 7, 19]])

    v2 = _hashes(run_dir)
    gone = np.array([3, 150, int(added[4])])  # two base items (tombstones) and an added one (dropped)
    _remove(run_dir, gone)
    assert _hashes(versions.old_versions(run_dir)[-1][1]) == v2
    run = open_run(run_dir)
    assert run.index.live.delta.removed.tolist() == [3, 150] and len(run.index.live.delta) == 19
    assert run.index.count == 417 == len(run.gallery_ids)
    dist, found = run.index.search(run.vectors(gone), 10)  # a removed item never comes back
    assert not np.isin(found, gone).any() and (found >= 0).all()
    assert not np.isin(run.neighbors()["neighbor_id"], gone).any()
    allowed = run.gallery_ids[run.gallery_ids % 2 == 1]
    _, found = run.index.search(run.vectors([5, int(added[5])]), 5, allowed=allowed)
    assert np.isin(found, allowed).all()

    v3 = _hashes(run_dir)
    monkeypatch.setattr(live_delta, "FOLD_SHARE", 0.01)  # the next change folds delta and tombstones
    more = _add(run_dir, _vectors(3, 2))
    assert _hashes(versions.old_versions(run_dir)[-1][1]) == v3
    run = open_run(run_dir)
    assert not run.index_ref.delta and not (run_dir / "ivfpq" / layout.IVFPQ_DELTA).exists()
    assert _inode(run_dir / "ivfpq" / "index.ivfdata") != _inode(versions.old_versions(run_dir)[-1][1] / "ivfpq" / "index.ivfdata")
    assert run.index.count == 420 == run.index.live.params.count and len(run.index.live.delta) == 0
    _finds_itself(run_dir, np.r_[added[[0, 19]], more, [0, 399]])
    _, found = run.index.search(run.vectors(gone), 10)
    assert not np.isin(found, gone).any()
    for _, path in versions.old_versions(run_dir):  # every kept version still opens and answers
        open_run(path)


def test_a_block_of_searches_reads_each_candidate_row_once(run_dir):
    """The exact re-rank of a block of searches (fashion add's new lists: their candidates repeat, the delta's
    few items above all) reads each row once, and gives each id its own row."""
    added = _add(run_dir, _vectors(20, 1))
    live = open_run(run_dir).index.live
    calls = []
    rows = live.rows
    live.rows = lambda ids: calls.append(np.asarray(ids).copy()) or rows(ids)
    ids = np.r_[added[[3, 3, 0, 3]], [7, 7, 2], added[[0]], [399, 7]]
    got = live.vectors_of(ids)
    one_by_one = np.concatenate([live.vectors_of(ids[i:i + 1]) for i in range(len(ids))])
    np.testing.assert_array_equal(got, one_by_one)
    assert np.sort(calls[0]).tolist() == sorted({int(added[3]), int(added[0])})  # each delta row once


def test_the_in_memory_ivfpq_keeps_the_codes_of_the_items_that_stay():
    """faiss-ivfpq ``changed``: a kept row's code is the index's own (here: its row in X is moved far away,
    and the item is still found where it was), a removed row leaves by id, only new rows are encoded."""
    from fashion.neighbors import build_index

    X = _vectors(600, 3)
    index = build_index("faiss-ivfpq", metric="cosine", factory="IVF8,PQ4x4", nprobe=8).fit(X)
    new = _vectors(5, 4)
    kept = np.r_[np.arange(10, 600), -np.ones(5, np.int64)]  # rows 0-9 removed, 5 new rows last
    moved = np.r_[X[10:], new]
    moved[0] = -moved[0]  # the kept item that was row 10: X says elsewhere, its code says where it was
    changed = index.changed(moved, kept)
    assert changed.n_samples_fit_ == 595 and changed._index.ntotal == 595
    _, rows = changed.kneighbors(np.r_[new, X[10:11]], n_neighbors=1)
    assert rows[:5, 0].tolist() == list(range(590, 595))  # the new rows find themselves
    ids = np.sort(np.concatenate([np.asarray(l, np.int64) for l in _lists_ids(changed._index)]))
    assert np.array_equal(ids, np.arange(595))  # renumbered 0..594: the removed rows are gone
    code_before = _code_of(index._index, 10)
    assert code_before == _code_of(changed._index, 0)  # row 10's code, now row 0, not re-encoded from -X[10]


def _lists_ids(index):
    import faiss
    from faiss.contrib.inspect_tools import get_invlist

    ivf = faiss.extract_index_ivf(index)
    return [get_invlist(ivf.invlists, l)[0] for l in range(ivf.nlist)]


def _code_of(index, row: int) -> tuple:
    import faiss
    from faiss.contrib.inspect_tools import get_invlist

    ivf = faiss.extract_index_ivf(index)
    for l in range(ivf.nlist):
        ids, codes = get_invlist(ivf.invlists, l)
        if row in ids:
            return l, codes[list(ids).index(row)].tobytes()
    raise AssertionError(f"row {row} is in no list")


KILLED = """
import sys, time
from fashion.scale import delta
from fashion.run import writer
from fashion.catalog import remove
point = sys.argv[2]
real = delta.fold if point == "fold" else delta.write_delta
if point == "fold":
    delta.FOLD_SHARE = 0.0
def slow(*args, **kwargs):
    out = real(*args, **kwargs)
    print("staged", flush=True)
    time.sleep(120)
    return out
setattr(delta, "fold" if point == "fold" else "write_delta", slow)
remove.remove(sys.argv[1], ids=[1, 2])
"""


@pytest.mark.parametrize("point", ["delta", "fold"])
def test_kill_9_while_writing_the_delta_or_folding_leaves_the_previous_version_answering(run_dir, tmp_path, point):
    added = _add(run_dir, _vectors(6, 5))  # a run with a delta
    before = _hashes(run_dir)
    lists = open_run(run_dir).neighbors()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(run_dir), point], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        lines = iter(proc.stdout.readline, "")  # faiss prints its on-disk file's new place on stdout first
        assert any(line.strip() == "staged" for line in lines)  # the new delta (or base) written, unsealed
        assert any(".staging-" in p.name for p in tmp_path.iterdir())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _hashes(run_dir) == before  # the previous version, whole and unchanged
    assert open_run(run_dir).neighbors().equals(lists)
    _finds_itself(run_dir, np.r_[added, [1, 2]])
    _remove(run_dir, [1, 2])  # the next change cleans up and succeeds
    assert not any(".staging-" in p.name for p in tmp_path.iterdir())
    run = open_run(run_dir)
    assert run.index.count == 404 and not np.isin(run.neighbors()["neighbor_id"], [1, 2]).any()


def test_the_served_service_follows_a_changed_ivfpq_run(run_dir):
    """What ``fashion serve`` holds (:class:`LiveService` over a :class:`SimilarityService`) swaps to the
    version with a delta and answers from it: an added item is found by id, a removed one is gone."""
    from fashion.service import SimilarityService
    from fashion.service.live import LiveService

    live = LiveService(SimilarityService(open_run(run_dir), None, None), run_dir)  # id queries need no network
    gone = live.neighbors_of(0, k=3).results[0].id
    added = _add(run_dir, _vectors(2, 6))
    _remove(run_dir, [gone])
    assert live.refresh() and live.current.run.info["version"] == 3 and live.current.run.index_ref.delta
    assert gone not in [m.id for m in live.neighbors_of(0, k=3).results]
    found = live.neighbors_of(int(added[0]), k=3).results
    assert len(found) == 3 and int(added[0]) not in [m.id for m in found]
    assert live.current.n_gallery == 401


def test_a_filtered_search_tunes_the_hnsw_quantiser_for_the_lists_it_probes(tmp_path):
    """A filter widens nprobe (here 8 -> 64 lists for 4 of 400 items): the quantiser's efSearch follows the
    lists probed (the one rule, ``neighbors.ivfpq.tune_quantizer``), not the run's own nprobe."""
    import faiss

    run_dir = make_ivfpq_run(tmp_path / "run", _vectors(400, 0), k=3, factory="IVF64_HNSW32,PQ4x4", nprobe=8)
    index = live_delta.LiveIndex(run_dir / layout.IVFPQ_DIR)

    def ef():
        return faiss.downcast_index(faiss.extract_index_ivf(index.base.index).quantizer).hnsw.efSearch

    allowed = np.array([3, 50, 120, 399])
    dist, ids = index.search(_vectors(400, 0)[allowed], 2, allowed=allowed)
    assert ef() == 128 and ids[:, 0].tolist() == allowed.tolist()
    index.search(_vectors(400, 0)[:2], 2)
    assert ef() == 64
