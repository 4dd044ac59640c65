"""fashion.pipeline: one pipeline for every size (read → embed → index → search → metrics → item-table
stages → report, insight, seal), composed by one orchestrator, run by an executor."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from factories import make_photo_folder, read_run_items  # noqa: E402

# float32 on every CPU: the precision whose torch kernels round by thread count, so the executor
# comparison below is the hard case (bf16 on a CPU with AVX512-BF16 absorbs that rounding)
COMMON = dict(k=3, grids=1, runtime="torch", precision="fp32", num_workers=0, insight=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_folder(tmp_path_factory.mktemp("photos") / "data", n=12)


def test_item_table_stages_add_columns_before_the_run_is_sealed(photos, tmp_path, monkeypatch):
    from fashion.pipeline import items as hook
    from fashion.retrieval import MeasureConfig, run

    def name_length(items, ok):
        return {"name_length": items["relpath"].str.len().to_numpy(), "embedded": ok}

    monkeypatch.setattr(hook, "ITEM_TABLE_STAGES", (name_length,))
    run(MeasureConfig(input=str(photos), output_dir=str(tmp_path / "out"), **COMMON))
    items = read_run_items(tmp_path / "out")
    assert items["name_length"].tolist() == items["relpath"].str.len().tolist()
    assert items["embedded"].tolist() == items["ok"].tolist() and not items["ok"].all()  # the corrupt one


def test_an_item_table_stage_may_not_overwrite_a_column():
    import pandas as pd

    from fashion.errors import FashionError
    from fashion.pipeline.items import add_item_columns

    frame = pd.DataFrame({"label": ["a", "b"]})
    with pytest.raises(FashionError, match="column 'label' exists already"):
        add_item_columns(frame, np.ones(2, bool), [lambda items, ok: {"label": ["x", "y"]}])
    with pytest.raises(FashionError, match="has 1 values for 2 items"):
        add_item_columns(frame, np.ones(2, bool), [lambda items, ok: {"colour": ["x"]}])
    assert add_item_columns(frame, np.ones(2, bool), ()) is frame  # no stage: unchanged, not copied


def test_each_item_table_stage_has_its_own_timing_line():
    """The colour stage's time is its own line of the run's timings, not inside "report" (issue 32)."""
    import pandas as pd

    from fashion.colour.stage import colour_stage
    from fashion.pipeline.items import ITEM_TABLE_STAGES, add_item_columns, stage_name
    from fashion.runresult import Stopwatch

    def shade(items, ok):
        return {"shade": ["x"] * len(items)}

    def unnamed(items, ok):
        return {}

    shade.stage = "shade"
    watch = Stopwatch()
    frame = add_item_columns(pd.DataFrame({"label": ["a", "b"]}), np.ones(2, bool), [shade, unnamed], watch=watch)
    assert list(frame["shade"]) == ["x", "x"]
    assert stage_name(unnamed).endswith("unnamed")  # no stage attribute: the function's name
    assert set(watch.timing) == {"shade", stage_name(unnamed)} and all(t >= 0 for t in watch.timing.values())
    assert colour_stage in ITEM_TABLE_STAGES and stage_name(colour_stage) == "colour"


def test_stages_that_read_no_ok_run_beside_the_embedding_and_finish_as_add_item_columns():
    """fashion add starts the stages that need no ``ok`` (the colour) before its embedding, on a thread;
    finish(ok) waits for them, runs the others with ok, and gives add_item_columns' frame."""
    import threading

    import pandas as pd

    from fashion.colour.stage import colour_stage
    from fashion.pipeline.items import add_item_columns, reads_ok, start_item_columns

    began, release = threading.Event(), threading.Event()

    def early(items, ok, cache_dir=None):
        assert ok is None and cache_dir == "C"  # no ok yet: it runs before the embedding
        began.set()
        release.wait(10)
        return {"upper": items["label"].str.upper().to_numpy()}

    def late(items, ok):
        return {"embedded": ok, "seen": [("upper" in items.columns)] * len(items)}

    early.reads_ok = False
    frame = pd.DataFrame({"label": ["a", "b", "c"]})
    ok = np.array([True, False, True])
    started = start_item_columns(frame, [early, late], cache_dir="C")
    assert began.wait(10) and started._thread.is_alive()  # running while the caller works
    release.set()
    got = started.finish(ok)
    pd.testing.assert_frame_equal(got, add_item_columns(frame, ok, [lambda i, o, cache_dir=None: {
        "upper": i["label"].str.upper().to_numpy()}, late], cache_dir="C"))
    assert list(frame.columns) == ["label"] and started.busy_s > 0
    assert not reads_ok(colour_stage) and reads_ok(late)

    told = []

    def sized(items, ok, beside=False):  # a stage that sizes its work for the cores the network leaves
        told.append(beside)
        return {}

    sized.reads_ok = False
    start_item_columns(frame, [sized]).finish(ok)
    add_item_columns(frame, ok, [sized])
    assert told == [True, False]

    def broken(items, ok):
        raise ValueError("no colour today")

    broken.reads_ok = False
    with pytest.raises(ValueError, match="no colour today"):
        start_item_columns(frame, [broken, late]).finish(ok)  # raised in the caller's thread


def _config(data, out, **kw):
    from fashion.retrieval import MeasureConfig

    return MeasureConfig(input=str(data), output_dir=str(out), **{**COMMON, **kw})


def _work(out):
    """The one work directory of the stages under OUTPUT_DIR/cache/scale/."""
    dirs = list((out / "cache" / "scale").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="module")
def runs(photos, tmp_path_factory):
    """{kind: run dir} of the same photos: measure_sim (exact, in memory), measure_sim on the on-disk
    IVF-PQ, and the verbs (manifest → embed → index → knn)."""
    from factories import make_verbs_run
    from fashion.retrieval import run

    base = tmp_path_factory.mktemp("pipeline")
    run(_config(photos, base / "exact"))
    run(_config(photos, base / "disk", index="ivfpq-disk", insight=True))
    return {"exact": base / "exact", "disk": base / "disk", "verbs": make_verbs_run(photos, base / "verbs", embed_args=("--precision", "fp32"))}


def test_measure_sim_and_the_verbs_write_equal_runs(runs):
    from fashion import rundir
    from fashion.run import layout
    from fashion.run.reader import open_run

    exact, disk, verbs = (open_run(runs[kind]) for kind in ("exact", "disk", "verbs"))
    # one embed stage at every size: the same vectors, bit for bit
    assert np.array_equal(exact.embeddings, disk.embeddings) and np.array_equal(disk.embeddings, verbs.embeddings)
    assert disk.neighbors().equals(verbs.neighbors())
    columns = ["id", "relpath", "label", "ok", "role"]
    assert exact.items[columns].equals(disk.items[columns]) and disk.items[columns].equals(verbs.items[columns])
    assert exact.info["index"]["kind"] == "npz" and disk.info["index"]["kind"] == verbs.info["index"]["kind"] == "ivfpq"
    # IVF-PQ with its exact re-rank over a dozen vectors: the exact neighbours
    a, b = exact.neighbors(), disk.neighbors()
    assert a[["query_id", "rank", "neighbor_id"]].equals(b[["query_id", "rank", "neighbor_id"]])
    assert np.allclose(a["distance"], b["distance"], atol=1e-3)
    metrics = {kind: open_run(runs[kind]).metrics for kind in runs}
    assert metrics["exact"]["precision_at_k"] == metrics["disk"]["precision_at_k"] == metrics["verbs"]["precision_at_k"]
    assert metrics["disk"]["insight"]["map"]["n"] == 12  # insight on the on-disk run too (it fits)
    for kind in runs:
        rundir.verify(runs[kind], kind=layout.RUN_KIND)
    # measure_sim's work stays in the cache, outside the run: the run holds finished outputs only
    for name in ("embeddings", "index", "manifest", "knn"):
        assert not (runs["disk"] / name).exists(), name
    assert (_work(runs["disk"]) / "index" / "index.json").is_file()


def test_auto_index_is_picked_by_size_and_memory(monkeypatch):
    from fashion.pipeline import index

    monkeypatch.setattr(index, "available_memory", lambda: 64 * 2**30)  # 64 GiB free
    assert index.choose_index("auto", 1_000, 512) == "exact"
    assert index.choose_index("auto", 100_000, 512) == "exact"
    assert index.choose_index("auto", 100_001, 512) == "faiss-ivfpq"
    assert index.choose_index("auto", 20_000_000, 512) == index.ON_DISK  # 41 GB of float32: does not fit
    monkeypatch.setattr(index, "available_memory", lambda: 8 * 2**20)  # 8 MiB free
    assert index.choose_index("auto", 5_000, 512) == index.ON_DISK  # 10 MB of vectors
    assert index.choose_index("auto", 5_000, 512, metric="euclidean") == "exact"  # on disk is cosine only
    assert index.choose_index("faiss-hnsw", 5_000, 512) == "faiss-hnsw"  # asked for: kept


def test_auto_index_goes_on_disk_when_memory_is_short(photos, tmp_path, monkeypatch):
    from fashion.pipeline import index
    from fashion.retrieval import run
    from fashion.run.reader import open_run

    monkeypatch.setattr(index, "available_memory", lambda: 16 * 2**10)  # 16 KiB: 12 x 512 float32 (24 KiB) do not fit
    result = run(_config(photos, tmp_path / "out"))
    opened = open_run(tmp_path / "out")
    assert opened.info["index"]["kind"] == "ivfpq" and result.metrics["index"] == "faiss-ivfpq"
    assert opened.index.count == 12


def test_an_interrupted_embed_resumes_by_id(photos, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from fashion.pipeline import seal
    from fashion.retrieval import run
    from fashion.scale import ivfpq, knn, shards

    out = tmp_path / "out"
    config = _config(photos, out, index="ivfpq-disk", embed_shard_rows=4)  # 13 items: 4 shards
    write_shard, written = shards.write_shard, []

    def dies_after_the_first_shard(directory, table):
        if written:
            raise RuntimeError("killed")
        written.append(write_shard(directory, table))
        return written[-1]

    # 1. killed while embedding, after one finished shard of 4 ids
    monkeypatch.setattr(shards, "write_shard", dies_after_the_first_shard)
    with pytest.raises(RuntimeError, match="killed"):
        run(config)
    monkeypatch.setattr(shards, "write_shard", write_shard)
    assert not (out / "metrics.json").exists()  # no run was committed
    emb_dir = written[0].parent
    assert sorted(shards.read_ids(emb_dir).tolist()) == list(range(4))

    # 2. resumed, then killed again while searching: the embeddings are finished, the index is built
    query_part = knn.query_part
    monkeypatch.setattr(knn, "query_part", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        run(config)
    monkeypatch.setattr(knn, "query_part", query_part)
    assert sorted(shards.read_ids(emb_dir).tolist()) == list(range(13))  # every id exactly once
    index_json = _work(out) / "index" / "index.json"
    built = index_json.stat().st_mtime_ns

    # 3. resumed, then killed once the search is done (the seal fails): the index was not rebuilt
    seal_run = seal.seal_run
    monkeypatch.setattr(seal, "seal_run", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        run(config)
    monkeypatch.setattr(seal, "seal_run", seal_run)
    assert index_json.stat().st_mtime_ns == built and not (out / "metrics.json").exists()

    # 4. resumed to the end: nothing embedded, indexed or searched twice
    calls = Counter()
    merge = ivfpq.merge
    monkeypatch.setattr(ivfpq, "merge", lambda *a: calls.update(["merge"]) or merge(*a))
    monkeypatch.setattr(knn, "query_part", lambda *a: calls.update(["query"]) or query_part(*a))
    result = run(config)
    assert result.metrics["n_embedded"] == 0 and result.metrics["n_from_cache"] == 13 and not calls
    assert index_json.stat().st_mtime_ns == built
    table = pq.ParquetDataset(sorted((out / "neighbors").glob("part-*.parquet"))).read()
    queries, counts = np.unique(table.column("query_id").to_numpy(), return_counts=True)
    assert len(queries) == 12 and (counts == 3).all()
    # 5. a small run into the same cache reuses the vectors too (exact index, in memory)
    again = run(_config(photos, out))
    assert again.metrics["n_embedded"] == 0 and again.metrics["index"] == "exact"


def _killed(*args, **kwargs):
    raise RuntimeError("killed")


def test_a_rerun_redoes_no_finished_stage_of_an_in_memory_run(runs, photos, tmp_path, monkeypatch):
    """Killed at the stage boundary after the index, then after the search: each rerun keeps the finished
    stages' work (the in-memory index and its neighbours, checkpointed in the work by content) and the
    last one ends in the same sealed run as an uninterrupted one."""
    from fashion import rundir
    from fashion.pipeline import index, search, seal
    from fashion.retrieval import run
    from fashion.run import layout
    from fashion.run.reader import open_run

    out, calls = tmp_path / "out", Counter()
    config = _config(photos, out)  # auto: exact, in memory
    build, kneighbors, seal_run = index.build_in_memory, search.kneighbors, seal.seal_run
    monkeypatch.setattr(index, "build_in_memory", lambda *a: calls.update(["index"]) or build(*a))
    # 1. killed after the index stage, as the search begins
    monkeypatch.setattr(search, "kneighbors", _killed)
    with pytest.raises(RuntimeError, match="killed"):
        run(config)
    assert calls == {"index": 1} and not (out / "metrics.json").exists()
    # 2. rerun, killed after the search stage, as the seal begins: the index is not built again
    monkeypatch.setattr(search, "kneighbors", lambda *a: calls.update(["search"]) or kneighbors(*a))
    monkeypatch.setattr(seal, "seal_run", _killed)
    with pytest.raises(RuntimeError, match="killed"):
        run(config)
    assert calls == {"index": 1, "search": 1} and not (out / "metrics.json").exists()
    # 3. rerun to the end: neither the index nor the search again, nothing embedded again
    monkeypatch.setattr(seal, "seal_run", seal_run)
    result = run(config)
    assert calls == {"index": 1, "search": 1} and result.metrics["n_embedded"] == 0
    done, whole = open_run(out), open_run(runs["exact"])
    assert np.array_equal(done.embeddings, whole.embeddings) and done.neighbors().equals(whole.neighbors())
    assert done.info["index"] == whole.info["index"] and result.metrics["precision_at_k"] == whole.metrics["precision_at_k"]
    rundir.verify(out, kind=layout.RUN_KIND)
    # 4. another k searches again (the same index), not the kept parts of k=3
    assert run(_config(photos, out, k=2)).metrics["k"] == 2 and calls == {"index": 1, "search": 2}


def test_measure_runs_a_range_of_stages(runs, photos, tmp_path):
    """measure_sim's stages one range at a time on the same work, as the verbs run them, write the run the
    whole pipeline writes; a range that starts after a stage not yet run says which is missing."""
    from fashion.errors import ConfigError
    from fashion.pipeline.measure import STAGES, measure, stage_range
    from fashion.run.reader import open_run

    config = _config(photos, tmp_path / "out")
    assert measure(config, stages=("manifest", "embed")).stages["embed"].computed == 13
    with pytest.raises(ConfigError, match="no finished auto index"):
        measure(config, stages=("search", "seal"))
    assert measure(config, stages=("index",)).stages["index"].name == "exact"
    assert not (tmp_path / "out" / "metrics.json").exists()  # no run until the seal
    result = measure(config, stages=("search", "seal"))
    assert result.metrics["precision_at_k"] == open_run(runs["exact"]).metrics["precision_at_k"]
    staged, whole = open_run(tmp_path / "out"), open_run(runs["exact"])
    assert np.array_equal(staged.embeddings, whole.embeddings) and staged.neighbors().equals(whole.neighbors())
    assert stage_range(STAGES) == STAGES
    for bad in (("embed", "search"), ("seal",), ("index", "manifest"), ("read",), ()):
        with pytest.raises(ConfigError):
            stage_range(bad)


def test_the_verbs_run_answers_search_and_serve_and_a_rerun_redoes_nothing(runs, tmp_path, capsys, monkeypatch):
    """The verbs' run answers ``fashion search`` and ``fashion serve``'s /api/search (a gallery photo's own
    copy first, distance ~0); ``fashion index`` and ``fashion knn`` again keep the finished index and
    neighbour shards and reseal the same run."""
    import shutil

    from fastapi.testclient import TestClient

    from fashion import cli, rundir
    from fashion.run import layout
    from fashion.run.reader import open_run
    from fashion.scale import ivfpq, knn
    from fashion.server import create_app
    from fashion.service import SimilarityService

    verbs = shutil.copytree(runs["verbs"], tmp_path / "verbs")
    items = read_run_items(verbs)
    photo = items[items["ok"]].iloc[4]
    assert cli.main(["search", photo["path"], "--run", str(verbs), "-k", "3", "--no-grids"]) == 0
    first = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("1."))
    assert photo["relpath"] in first and "distance 0.0000" in first
    with TestClient(create_app(SimilarityService.open(verbs, warm=False)), base_url="http://localhost") as client:
        with open(photo["path"], "rb") as f:
            answer = client.post("/api/search?k=2", files={"image": ("p.jpg", f, "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["results"][0]["id"] == int(photo["id"])
    assert answer.json()["results"][0]["distance"] == pytest.approx(0, abs=1e-3)

    calls, merge, query_part = Counter(), ivfpq.merge, knn.query_part
    monkeypatch.setattr(ivfpq, "merge", lambda *a: calls.update(["merge"]) or merge(*a))
    monkeypatch.setattr(knn, "query_part", lambda *a: calls.update(["query"]) or query_part(*a))
    before = open_run(verbs)
    assert cli.main(["index", str(verbs)]) == 0 and cli.main(["knn", str(verbs), "-k", "3"]) == 0
    assert not calls
    after = open_run(verbs)
    assert after.info["run_id"] != before.info["run_id"] and after.neighbors().equals(before.neighbors())
    rundir.verify(verbs, kind=layout.RUN_KIND)


@pytest.mark.ray
def test_local_and_ray_executors_write_equal_runs(ray_cluster, runs, photos, tmp_path):
    from fashion.retrieval import run
    from fashion.run.reader import open_run
    from fashion.scale.executors import RayExecutor

    executor = RayExecutor(actors=2, cpus_per_actor=0.5)
    for kind, index in (("exact", "auto"), ("disk", "ivfpq-disk")):
        result = run(_config(photos, tmp_path / kind, index=index), executor=executor)
        assert result.metrics["executor"] == "ray"
        local, far = open_run(runs[kind]), open_run(tmp_path / kind)
        assert np.array_equal(local.embeddings, far.embeddings)  # bitwise
        assert local.neighbors().equals(far.neighbors())
