"""Id queries answered from a run's stored lists (fashion.run.listcache): the same answer as a search of
the run's index, read by id from a cache of the lists beside the run, and a search wherever the lists
may not answer as the index (a filter, a colour mode, k beyond the lists, lists the live catalogue merged
on an approximate index, a run without the marker)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from factories import add_vectors, make_ivfpq_run, make_vector_run

from fashion.run import layout, listcache
from fashion.run.reader import open_run


def same_as_search(service, ids, ks) -> int:
    """Assert every id query of ``ids`` × ``ks`` answers as a search of the index does (ids, distances,
    ranks); returns how many of them came from the stored lists."""
    from_lists = 0
    for i in ids:
        for k in ks:
            lists = service.run.lists
            stored = service.neighbors_of(int(i), k)
            service.run.lists = None  # the search path, as before this change
            try:
                searched = service.neighbors_of(int(i), k)
            finally:
                service.run.lists = lists
            assert [(m.rank, m.id, m.distance) for m in stored.results] == \
                   [(m.rank, m.id, m.distance) for m in searched.results], (i, k)
            from_lists += lists is not None and lists.get(int(i), k) is not None
    return from_lists


def _service(run_dir):
    from fashion.service import SimilarityService

    return SimilarityService(open_run(run_dir, stored_lists=True), None, None)  # id queries need no network


def test_the_pipelines_lists_answer_as_the_exact_index(sample_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(sample_run, run_dir)
    service = _service(run_dir)
    assert service.run.lists is not None and service.run.lists.k == 5
    queries = service.run.neighbors()["query_id"].unique()
    assert same_as_search(service, queries, (1, 3, 5)) == 3 * len(queries)
    assert same_as_search(service, queries[:5], (6, 10)) == 0  # more than the lists hold: searched


def test_a_filter_or_colour_mode_searches(sample_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(sample_run, run_dir)
    service = _service(run_dir)
    called = []
    monkeypatch.setattr(service, "_stored", lambda i, k: called.append(i))
    label = str(service.run.items["label"].iat[0])
    found = service.neighbors_of(0, 3, filters=[f"label={label}"])
    assert not called and all(m.label == label for m in found.results)


def test_the_lists_are_cached_by_id_and_rewritten_when_damaged(sample_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(sample_run, run_dir)
    first = open_run(run_dir, stored_lists=True).lists
    folder = run_dir.joinpath(*listcache.CACHE_DIR)
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 3 and all(name.endswith((".ids.npy", ".dist.npy", ".json")) for name in files)
    table = open_run(run_dir).neighbors()
    q = int(table["query_id"].iat[0])
    expected = table[table["query_id"] == q].sort_values("rank")
    ids, dist = first.get(q, 5)
    assert ids.tolist() == expected["neighbor_id"].tolist()
    assert dist.tolist() == expected["distance"].astype(np.float32).tolist()
    # a later open reads the cache, nothing from the parquet parts
    monkeypatch.setattr(listcache, "dense", lambda *a: pytest.fail("the lists were read from parquet again"))
    again = open_run(run_dir, stored_lists=True).lists
    assert again is not None and again.get(q, 5)[0].tolist() == ids.tolist()
    monkeypatch.undo()
    # a damaged cache file fails its fingerprint and is written again
    ids_file = next(folder.glob("*.ids.npy"))
    data = bytearray(ids_file.read_bytes())
    data[-8:] = np.int64(12345).tobytes()
    ids_file.write_bytes(bytes(data))
    healed = open_run(run_dir, stored_lists=True).lists
    assert healed is not None and healed.get(q, 5)[0].tolist() == ids.tolist()
    # an item with no list (not a query) and a k beyond the lists: None
    items = open_run(run_dir).items
    no_list = sorted(set(range(len(items))) - set(table["query_id"].tolist()))
    if no_list:
        assert healed.get(no_list[0], 1) is None
    assert healed.get(q, 6) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_run_is_searched(sample_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(sample_run, run_dir)
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    mode = run_dir.stat().st_mode
    run_dir.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert open_run(run_dir, stored_lists=True).lists is None
    finally:
        run_dir.chmod(mode)


def test_a_cache_that_cannot_be_written_leaves_id_queries_to_the_search(sample_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(sample_run, run_dir)
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    (run_dir / "cache").write_text("not a directory")  # RUN/cache/lists cannot be made
    service = _service(run_dir)
    assert service.run.lists is None
    q = int(service.run.neighbors()["query_id"].iat[0])
    assert len(service.neighbors_of(q, 3).results) == 3


def test_a_run_without_the_marker_is_searched(tmp_path):
    run_dir = make_vector_run(tmp_path / "run", n=40, k=3)  # lists written with no word on how
    assert listcache.LISTS_KEY not in json.loads((run_dir / layout.RUN_JSON).read_text())
    assert open_run(run_dir, stored_lists=True).lists is None


def test_exact_lists_after_add_and_remove_answer_as_the_index(tmp_path):
    from fashion.catalog.remove import remove

    run_dir = make_vector_run(tmp_path / "run", n=120, d=16, k=4, seed=1)
    rng = np.random.default_rng(5)
    added = add_vectors(run_dir, rng.normal(size=(30, 16)).astype(np.float32))
    remove(run_dir, ids=[3, 17, int(added[2]), 50])
    info = json.loads((run_dir / layout.RUN_JSON).read_text())
    assert info[listcache.LISTS_KEY] == {"k": 4, "from": "index"} and info["index"]["kind"] == "rows"
    service = _service(run_dir)
    assert service.run.lists is not None
    queries = service.run.neighbors()["query_id"].unique()
    assert same_as_search(service, queries, (1, 2, 4)) == 3 * len(queries)


def test_an_on_disk_ivfpq_run_answers_as_its_index_and_searches_after_a_change(tmp_path):
    from fashion.run import writer

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    run_dir = make_ivfpq_run(tmp_path / "run", vectors, k=4, factory="IVF16,PQ4x4", nprobe=4)
    # the factory searched its lists through the run's own index (fashion.catalog.lists.search): mark them so
    info = json.loads((run_dir / layout.RUN_JSON).read_text())
    from fashion import rundir

    body = {key: value for key, value in info.items() if key not in ("format_version", "run_id", "index", "n_items")}
    writer.write_run_json(run_dir, info["run_id"], layout.IndexRef(**info["index"]), info["n_items"],
                          {**body, listcache.LISTS_KEY: listcache.marker(4)})
    rundir.write_manifest(run_dir, info["run_id"], layout.RUN_KIND)
    service = _service(run_dir)
    assert service.run.lists is not None
    assert same_as_search(service, range(0, 400, 7), (1, 4)) == 2 * len(range(0, 400, 7))
    # the live catalogue merges new items into an approximate index's lists exactly: no longer its search
    add_vectors(run_dir, rng.normal(size=(20, 16)).astype(np.float32))
    assert listcache.LISTS_KEY not in json.loads((run_dir / layout.RUN_JSON).read_text())
    service = _service(run_dir)
    assert service.run.lists is None
    assert len(service.neighbors_of(5, 4).results) == 4


def test_dense_lists_by_item_id(tmp_path):
    from fashion.run import writer

    writer.write_neighbors(tmp_path, np.array([1, 3]), np.array([[0.1, 0.2], [0.3, np.inf]], np.float32),
                           np.array([[3, 0], [1, -1]]))
    parts = sorted((tmp_path / layout.NEIGHBORS_DIR).glob(layout.PART_GLOB))
    ids, dist = listcache.dense(parts, 5, 2)
    assert ids.tolist() == [[-2, -2], [3, 0], [-2, -2], [1, -1], [-2, -2]]
    assert dist[1].tolist() == pytest.approx([0.1, 0.2]) and dist[3, 0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="outside"):
        listcache.dense(parts, 3, 2)


def test_a_live_server_answers_the_new_versions_ids_from_its_lists(tmp_path):
    from fashion.service.live import reopen

    run_dir = make_vector_run(tmp_path / "run", n=80, d=16, k=3, seed=2)
    old = _service(run_dir)
    added = add_vectors(run_dir, np.random.default_rng(3).normal(size=(10, 16)).astype(np.float32))
    new = reopen(old, run_dir)
    assert new.run.lists is not None and len(new.run.lists) == 90
    assert same_as_search(new, [0, 5, int(added[0]), int(added[-1])], (1, 3)) == 8
