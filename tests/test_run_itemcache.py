"""The item table's memory-mapped copy (fashion.run.itemcache): the same DataFrame as from parquet, written
by the first open that asks for it, keyed by the parts' content, refused when damaged, skipped read-only."""

import pandas as pd

from fashion.run import itemcache
from fashion.run.reader import open_run
from factories import make_vector_run, write_run_items


def _cached(run_dir):
    return sorted(p.name for p in run_dir.joinpath(*itemcache.CACHE_DIR).glob("*.arrow"))


def test_the_copy_reads_as_the_parquet_table_and_is_written_only_when_asked(tmp_path):
    run_dir = make_vector_run(tmp_path / "run", n=40)
    plain = open_run(run_dir, load_index=False).items
    assert _cached(run_dir) == []  # a one-off reader leaves nothing
    first = open_run(run_dir, load_index=False, cache_items=True).items  # from parquet, then cached
    assert len(_cached(run_dir)) == 1
    second = open_run(run_dir, load_index=False, cache_items=True).items  # from the mapped copy
    for frame in (first, second):
        pd.testing.assert_frame_equal(frame, plain)
    assert str(second["relpath"].dtype) == str(plain["relpath"].dtype)


def test_a_changed_item_table_gets_a_new_copy_and_the_old_one_goes(tmp_path):
    from fashion import rundir

    run_dir = make_vector_run(tmp_path / "run", n=30)
    open_run(run_dir, load_index=False, cache_items=True)
    before = _cached(run_dir)
    items = open_run(run_dir, load_index=False).items.copy()
    items["label"] = "renamed"
    write_run_items(run_dir, items)
    rundir.write_manifest(run_dir, rundir.read_manifest(run_dir)["run_id"], "neighbors")
    reopened = open_run(run_dir, load_index=False, cache_items=True).items
    assert set(reopened["label"]) == {"renamed"}
    after = _cached(run_dir)
    assert len(after) == 1 and after != before


def test_a_damaged_copy_is_not_read(tmp_path, caplog):
    run_dir = make_vector_run(tmp_path / "run", n=30)
    plain = open_run(run_dir, load_index=False, cache_items=True).items
    (name,) = _cached(run_dir)
    data = run_dir.joinpath(*itemcache.CACHE_DIR, name)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with caplog.at_level("WARNING", logger="fashion.run.itemcache"):
        again = open_run(run_dir, load_index=False, cache_items=True).items
    pd.testing.assert_frame_equal(again, plain)
    assert any("fingerprint" in r.getMessage() for r in caplog.records)
    key = name.removesuffix(".arrow")
    assert itemcache.load(run_dir, key) is not None  # rewritten by that open


def test_a_run_that_cannot_take_the_copy_is_read_from_parquet(tmp_path):
    run_dir = make_vector_run(tmp_path / "run", n=30)
    plain = open_run(run_dir, load_index=False).items
    blocker = run_dir.joinpath(*itemcache.CACHE_DIR)  # a file where the folder would go (as a read-only run)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    items = open_run(run_dir, load_index=False, cache_items=True).items
    pd.testing.assert_frame_equal(items, plain)
    assert blocker.read_text() == "not a folder"


def test_the_key_needs_every_part_in_the_manifest():
    manifest = {"files": {"items/part-000000.parquet": {"size": 1, "sha256": "a" * 64}}}
    key = itemcache.cache_key(manifest, ["items/part-000000.parquet"])
    assert key and key != itemcache.cache_key({"files": {"items/part-000000.parquet": {"sha256": "b" * 64}}},
                                              ["items/part-000000.parquet"])
    assert itemcache.cache_key(manifest, ["items/part-000000.parquet", "items/part-000001.parquet"]) is None
