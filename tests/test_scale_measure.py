"""measure_sim.py above ``MeasureConfig.shard_above`` runs the sharded stages, writes the run format every
run has (format 2: search and serve open it), and resumes a killed run from the cache (the staged run
directory only receives finished outputs)."""

import json

import numpy as np
import pytest

pytest.importorskip("pyarrow")


def _config(data, out, **kw):
    from fashion import retrieval

    return retrieval.MeasureConfig(input=str(data), output_dir=str(out), k=3, grids=2, runtime="torch",
                                   num_workers=0, shard_above=10, **kw)


def _work(out):
    """The one work directory of the sharded stages under OUTPUT_DIR/cache/scale/."""
    dirs = list((out / "cache" / "scale").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture
def small_shards(monkeypatch):
    from fashion.scale import measure

    monkeypatch.setattr(measure, "SHARD_ROWS", 8)  # 25 items: 4 embedding shards, so a kill can fall between them


def test_measure_sim_switches_to_the_sharded_stages_above_the_threshold(tmp_path, small_shards, caplog):
    from fashion import retrieval, rundir
    from fashion.run import layout
    from fashion.run.reader import open_run

    from tests.test_scale_embed import make_dataset

    data = make_dataset(tmp_path / "data", n=24)
    caplog.set_level("INFO")
    result = retrieval.run(_config(data, tmp_path / "out"))
    assert "above the scale threshold" in caplog.text
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 25 and metrics["n_skipped"] == 1 and metrics["n_queries"] == 24
    assert 0 <= metrics["precision_at_k"] <= 1 and result.metrics["engine"] == "scale"
    assert metrics["n_embedded"] == 25 and metrics["n_from_cache"] == 0 and metrics["index"] == "faiss-ivfpq"
    assert len(list((out / "grids").glob("*.png"))) == 2 and (out / "index.html").is_file()
    assert (out / "duplicates.csv").is_file() and metrics["insight"]["map"]["n"] == 24  # insight: it fits
    # the stages' work is in the cache, not in the run: the run holds finished outputs only
    for name in ("embeddings", "index", "manifest", "knn"):
        assert not (out / name).exists(), name
    work = _work(out)
    assert (work / "index" / "index.json").is_file() and list((work / "embeddings").glob("*/part-*.parquet"))
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["scale"]["work_dir"] == str(work.absolute()) and run_info["format_version"] == 2
    rundir.verify(out, kind=layout.RUN_KIND)  # the transaction's manifest covers the linked shards
    run = open_run(out)  # the format every run has: items by id, embeddings by id, the IVF-PQ index
    assert run.info["index"]["kind"] == "ivfpq" and len(run.items) == 25 and run.embeddings.shape[0] == 25
    assert run.items["role"].tolist().count("skipped") == 1 and run.index.count == 24
    assert len(run.neighbors()) == 24 * 3


def test_killed_scaled_measure_sim_resumes_from_the_cache(tmp_path, small_shards, monkeypatch):
    import pyarrow.parquet as pq

    from fashion import retrieval
    from fashion.scale import knn, shards

    from tests.test_scale_embed import make_dataset

    data = make_dataset(tmp_path / "data", n=24)
    out = tmp_path / "out"
    write_shard, written = shards.write_shard, []

    def dies_after_the_first_shard(directory, table):
        if written:
            raise RuntimeError("killed")
        written.append(write_shard(directory, table))
        return written[-1]

    # 1. killed while embedding, after one finished shard of 8 ids
    monkeypatch.setattr(shards, "write_shard", dies_after_the_first_shard)
    with pytest.raises(RuntimeError, match="killed"):
        retrieval.run(_config(data, out))
    monkeypatch.setattr(shards, "write_shard", write_shard)
    assert not (out / "metrics.json").exists()  # no run was committed
    emb_dir = written[0].parent
    assert sorted(shards.read_ids(emb_dir).tolist()) == list(range(8))

    # 2. resumed, then killed again while querying: the embeddings are finished, the index is built
    query_part = knn.query_part
    monkeypatch.setattr(knn, "query_part", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        retrieval.run(_config(data, out))
    monkeypatch.setattr(knn, "query_part", query_part)
    assert sorted(shards.read_ids(emb_dir).tolist()) == list(range(25))  # every id exactly once
    index_json = _work(out) / "index" / "index.json"
    built = index_json.stat().st_mtime_ns

    # 3. resumed to the end: nothing embedded twice, the index not rebuilt
    result = retrieval.run(_config(data, out))
    assert result.metrics["n_embedded"] == 0 and result.metrics["n_from_cache"] == 25
    assert index_json.stat().st_mtime_ns == built
    assert sorted(shards.read_ids(emb_dir).tolist()) == list(range(25))
    ok_ids = shards.ShardSet(emb_dir, only_ok=True).ids
    table = pq.ParquetDataset(sorted((out / "neighbors").glob("part-*.parquet"))).read()
    queries, counts = np.unique(table.column("query_id").to_numpy(), return_counts=True)
    assert queries.tolist() == sorted(ok_ids.tolist()) and len(queries) == 24 and (counts == 3).all()
