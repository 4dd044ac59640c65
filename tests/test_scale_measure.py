"""measure_sim.py above the scale threshold runs the sharded stages and keeps its contract's files."""

import json

import pytest

pytest.importorskip("pyarrow")


def test_measure_sim_switches_to_the_sharded_stages_above_the_threshold(tmp_path, monkeypatch, caplog):
    from fashion import retrieval
    from fashion.scale import measure

    from tests.test_scale_embed import make_dataset

    data = make_dataset(tmp_path / "data", n=24)
    monkeypatch.setattr(measure, "SCALE_THRESHOLD", 10)
    caplog.set_level("INFO")
    result = retrieval.run(retrieval.MeasureConfig(input=str(data), output_dir=str(tmp_path / "out"), k=3,
                                                   grids=2, runtime="torch", num_workers=0))
    assert "above the scale threshold" in caplog.text
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 25 and metrics["n_skipped"] == 1 and metrics["n_queries"] == 24
    assert 0 <= metrics["precision_at_k"] <= 1 and result.metrics["engine"] == "scale-local"
    assert list((out / "neighbors").glob("part-*.parquet")) and (out / "index.html").is_file()
    assert len(list((out / "grids").glob("*.png"))) == 2 and (out / "run.json").is_file()
    assert not (out / "neighbors.csv").exists()
