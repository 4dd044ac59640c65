"""The colour stage (fashion.colour.stage): colour columns for every item of a run, cached by file content,
in every run's item table, and usable as a filter and a facet through the API."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from fashion.catalog.metadata import MetadataError, read_metadata
from fashion.colour import stage
from fashion.colour.table import COLUMNS

from factories import CORRUPT_JPEG, make_garment_folder, read_run_items

FAMILIES = ("red", "blue", "yellow")


def _items(root) -> pd.DataFrame:
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    return pd.DataFrame({"path": paths, "label": [p.split("/")[-2] for p in paths]})


def _family(path: str) -> str:
    return path.rsplit("/", 1)[-1].split("_")[0]


def test_stage_adds_the_columns_and_caches_them_by_content(tmp_path, monkeypatch):
    root = make_garment_folder(tmp_path / "data", FAMILIES, shapes=("tee",))
    (root / "tee" / "zz_corrupt.jpg").write_bytes(CORRUPT_JPEG)
    items = _items(root)
    cache = tmp_path / "cache"
    table = stage.add_colour_columns(items, cache_dir=cache)
    assert list(table.columns) == ["path", "label", *COLUMNS] and list(items.columns) == ["path", "label"]
    good = table[~table["path"].str.endswith("zz_corrupt.jpg")]
    assert good["colour"].tolist() == [_family(p) for p in good["path"]]
    assert good["colour_hex"].str.match(r"^#[0-9a-f]{6}$").all() and (good["colour_share"] > 0.5).all()
    corrupt = table[table["path"].str.endswith("zz_corrupt.jpg")]
    assert corrupt[list(COLUMNS)].isna().all(axis=None)  # a counted skip, not a crash
    assert len(list((cache / f"colour-{stage.method_tag()}").glob("chunk_*.parquet"))) == 1

    # the same contents under other names hit the cache: nothing is recomputed
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    def fail(job):
        raise AssertionError(f"recomputed {job}")
    monkeypatch.setattr(stage, "_colour_job", fail)
    again = stage.add_colour_columns(_items(copy), cache_dir=cache)
    pd.testing.assert_frame_equal(again.drop(columns="path"), table.drop(columns="path"))


def test_stage_colours_every_row_and_leaves_removed_items_empty(tmp_path):
    root = make_garment_folder(tmp_path / "data", FAMILIES, shapes=("tee",), per_family=1)
    items = _items(root)
    items["role"] = ["both", "removed", "both"]
    items["colour"] = ["stale", "stale", None]  # colour columns it has are replaced
    table = stage.add_colour_columns(items, cache_dir=None)
    assert list(table.columns) == ["path", "label", "role", *COLUMNS]
    assert table["colour"].tolist() == [_family(table["path"].iloc[0]), None, _family(table["path"].iloc[2])]


def test_the_item_tables_hashes_are_reused_and_cached_photos_are_not_opened(tmp_path, monkeypatch):
    from fashion import rundir

    root = make_garment_folder(tmp_path / "data", FAMILIES, shapes=("tee",), per_family=1)
    items = _items(root)
    items[stage.HASH_COLUMN] = [rundir.file_sha256(p) for p in items["path"]]
    cache = tmp_path / "cache"
    first = stage.add_colour_columns(items, cache_dir=cache)
    def fail(*args):
        raise AssertionError(f"unexpected work: {args}")
    monkeypatch.setattr(rundir, "file_sha256", fail)  # the table's hashes: nothing is hashed again
    monkeypatch.setattr(stage, "_colour_job", fail)  # every key is cached: no photo is coloured
    pd.testing.assert_frame_equal(stage.add_colour_columns(items, cache_dir=cache), first)
    assert first["colour"].tolist() == [_family(p) for p in first["path"]]


def test_a_changed_method_or_photo_misses_the_cache(tmp_path, monkeypatch):
    root = make_garment_folder(tmp_path / "data", ("red",), shapes=("tee",), per_family=1)
    items = _items(root)
    cache = tmp_path / "cache"
    stage.add_colour_columns(items, cache_dir=cache)
    tag = stage.method_tag()
    monkeypatch.setattr(stage, "METHOD_VERSION", stage.METHOD_VERSION + 1)
    assert stage.method_tag() != tag
    from fashion.colour import constancy

    monkeypatch.setattr(stage, "METHOD_VERSION", stage.METHOD_VERSION - 1)
    import types

    monkeypatch.setattr(constancy, "NONE_ABOVE", constancy.NONE_ABOVE + 1)  # the light correction's constants count
    assert stage.method_tag() != tag
    monkeypatch.setattr(constancy, "NONE_ABOVE", constancy.NONE_ABOVE - 1)
    monkeypatch.setattr(stage.model, "shipped", lambda: types.SimpleNamespace(digest="refitted"))
    assert stage.method_tag() != tag  # a refitted family model misses the cache too
    from factories import PHOTO_COLOURS, garment_photo

    garment_photo(PHOTO_COLOURS["blue"], "wood", shape="tee", size=(120, 160)).save(items["path"].iloc[0])
    monkeypatch.undo()
    assert stage.add_colour_columns(items, cache_dir=cache)["colour"].tolist() == ["blue"]


def test_the_process_pool_gives_the_serial_answer(tmp_path):
    root = make_garment_folder(tmp_path / "data", FAMILIES, shapes=("tee",), per_family=2)
    items = _items(root)
    serial = stage.add_colour_columns(items, cache_dir=None, workers=1)
    pooled = stage.add_colour_columns(items, cache_dir=tmp_path / "cache", workers=2, pool_above=0)
    pd.testing.assert_frame_equal(serial, pooled)


def test_a_failed_cache_write_shuts_the_process_pool_down_at_once(tmp_path, monkeypatch):
    """The error propagates with its traceback (which holds the suspended chunk generator) still alive here,
    and the pool's worker processes are already gone."""
    import multiprocessing

    root = make_garment_folder(tmp_path / "data", FAMILIES[:2], shapes=("tee",), per_family=2)

    def full(self, keys, values):
        raise OSError("no space left on device")

    monkeypatch.setattr(stage.ColourCache, "write", full)
    before = set(multiprocessing.active_children())  # whatever other tests left running
    with pytest.raises(OSError, match="no space") as raised:
        stage.add_colour_columns(_items(root), cache_dir=tmp_path / "cache", workers=2, pool_above=0)
    assert raised.value.__traceback__ is not None and not set(multiprocessing.active_children()) - before


class _SetAfter:
    """A ``stop`` event that reads as set from its (n + 1)-th check on."""

    def __init__(self, n):
        self.checks, self.n = 0, n

    def is_set(self):
        self.checks += 1
        return self.checks > self.n


@pytest.mark.parametrize("workers", [1, 2])
def test_a_set_stop_event_cancels_the_stage_and_shuts_its_pool_down(tmp_path, workers):
    """``stop`` is checked after each photo (serial, or handed back by the pool): once set, Cancelled is
    raised there, nothing more is cached, and no worker process outlives the call."""
    import multiprocessing

    from fashion.errors import Cancelled

    root = make_garment_folder(tmp_path / "data", FAMILIES, shapes=("tee",), per_family=4)
    before = set(multiprocessing.active_children())
    stop = _SetAfter(3)
    with pytest.raises(Cancelled):
        stage.colour_stage(_items(root), None, cache_dir=tmp_path / "cache", stop=stop) if workers == 1 else \
            stage.add_colour_columns(_items(root), cache_dir=tmp_path / "cache", workers=2, pool_above=0, stop=stop)
    assert stop.checks == 4  # three photos taken, the fourth check raised
    assert not set(multiprocessing.active_children()) - before
    assert not list((tmp_path / "cache").rglob("*.npz")) and not list((tmp_path / "cache").rglob("*.parquet"))
    never = _SetAfter(10**9)  # never set: the same columns as without an event
    pd.testing.assert_frame_equal(stage.add_colour_columns(_items(root), workers=1, stop=never),
                                  stage.add_colour_columns(_items(root), workers=1))


def test_shop_metadata_cannot_override_the_colour_columns(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("relpath,colour,brand\na.jpg,blue,Acme\n")
    with pytest.raises(MetadataError, match=r"shop\.csv: column 'colour' is computed from the photos"):
        read_metadata(path)


def test_every_run_has_the_colour_columns_and_they_filter_and_facet_through_the_api(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fashion.retrieval import MeasureConfig, run
    from fashion.server import create_app
    from fashion.service import SimilarityService

    root = make_garment_folder(tmp_path / "data", FAMILIES, per_family=2)
    out = tmp_path / "run"
    run(MeasureConfig(input=str(root), output_dir=str(out), arch="efficientnet_lite0", k=3, grids=0,
                      runtime="torch", num_workers=0, insight=False))
    items = read_run_items(out)
    assert set(COLUMNS) <= set(items.columns)
    assert items["colour"].tolist() == [_family(p) for p in items["path"]]
    assert any((out / "cache").glob("colour-*/chunk_*.parquet"))
    with TestClient(create_app(SimilarityService.open(out)), base_url="http://localhost") as client:
        found = client.get("/api/items", params={"filter": "colour=blue", "facets": "true"}).json()
        assert found["total"] == 4 and {i["id"] for i in found["items"]} == set(
            np.flatnonzero(items["colour"].to_numpy() == "blue").tolist())
        facets = {f["column"]: f for f in client.get("/api/facets").json()["facets"]}
        assert {v["value"]: v["count"] for v in facets["colour"]["values"]} == {f: 4 for f in FAMILIES}
        assert "colour_hex" not in facets
        words = client.get("/api/search", params={"text": "yellow ball"}).json()
        assert words["total"] == 2 and words["ignored"] == []


def test_fashion_add_colours_only_the_new_photos(tmp_path, monkeypatch):
    from fashion.catalog.add import add
    from fashion.retrieval import MeasureConfig, run

    root = make_garment_folder(tmp_path / "data", ("red", "blue"), shapes=("tee",), per_family=2)
    out = tmp_path / "run"
    run(MeasureConfig(input=str(root), output_dir=str(out), arch="efficientnet_lite0", k=2, grids=0,
                      runtime="torch", num_workers=0, insight=False))
    before = read_run_items(out)
    new = make_garment_folder(tmp_path / "new", ("yellow",), shapes=("tee",), per_family=2)
    computed = []
    real = stage._colour_job
    monkeypatch.setattr(stage, "_colour_job", lambda job: computed.append(job[0]) or real(job))
    result = add(out, [new])
    after = read_run_items(out)
    assert len(result.ids) == 2 and sorted(computed) == sorted(str(p) for p in new.rglob("*.jpg"))
    kept = after.loc[:len(before) - 1, list(COLUMNS)].fillna({"colour_2": ""})  # catalog: empty text is ""
    pd.testing.assert_frame_equal(kept, before[list(COLUMNS)].fillna({"colour_2": ""}))
    assert after.loc[result.ids, "colour"].tolist() == ["yellow", "yellow"]


def test_the_pool_counts_hashed_jobs_as_misses_whatever_the_cache_holds(monkeypatch):
    """A job that carries its SHA-256 was queued only because the cache lacks its key: 3 such jobs beside a
    cache of 10,000 entries are 3 misses (the pool starts above pool_above=2), not 3 - 10,000."""
    import concurrent.futures

    from fashion.colour import stage

    started = []

    class Pool:
        def __init__(self, max_workers, mp_context, initializer, initargs):
            started.append(initargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, fn, jobs, chunksize=1):  # a generator, as Executor.map's
            return ((f"k{i}", None, "") for i, _ in enumerate(jobs))

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Pool)
    known = {f"old{i}": None for i in range(10_000)}
    jobs = [(f"/x/{i}.jpg", None, f"{i:064x}") for i in range(3)]
    assert sum(len(b) for b in stage._compute(jobs, known, workers=2, pool_above=2)) == 3
    assert started == [(frozenset(),)]  # hashed jobs never look a key up: the workers get no key set
    assert list(stage._compute(jobs, known, workers=2, pool_above=3)) and len(started) == 1  # 3 misses: no pool
    assert list(stage._compute(jobs, known, workers=1, pool_above=2)) and len(started) == 1  # one core: in-process
    assert list(stage._compute(jobs, known, workers=1, pool_above=2, apart=True)) and len(started) == 2  # beside the network
