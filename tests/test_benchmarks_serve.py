"""Smoke tests of benchmarks/serve.py (a tiny grown gallery, a few requests of each kind, no errors) and
benchmarks/serve_http.py (a server of another checkout as the baseline)."""

import json
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_serve_benchmark_smoke(sample_run, tmp_path):
    main = runpy.run_path(str(REPO / "benchmarks" / "serve.py"))["main"]
    out = tmp_path / "serve.json"
    code = main(["--base-run", str(sample_run), "--n", "500", "--index", "exact", "--photo-requests", "4",
                 "--id-requests", "6", "--concurrency", "1,2", "--no-cli", "--workdir", str(tmp_path / "w"),
                 "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["gallery"]["n"] == 500 and len(result["cells"]) == 4
    assert all(c["errors"] == 0 and c["requests"] > 0 for c in result["cells"])
    assert result["startup_s"] > 0 and set(result["checks"]) >= {"zero errors", "start-up <= 5 s"}
    assert all(c["server_cpu_ms"] >= 0 for c in result["cells"]) and any(c["server_cpu_ms"] > 0 for c in result["cells"])


def test_serve_benchmark_grows_an_on_disk_ivfpq_run_with_every_items_list(sample_run, tmp_path):
    """The 1M run's shape at 600 items: the on-disk IVF-PQ, every item's list searched through it by the knn
    stage and marked so, which the server's id queries answer from (its lists cached at the first start)."""
    from fashion.run import listcache
    from fashion.run.reader import open_run

    main = runpy.run_path(str(REPO / "benchmarks" / "serve.py"))["main"]
    out = tmp_path / "serve.json"
    code = main(["--base-run", str(sample_run), "--n", "600", "--index", "faiss-ivfpq", "--factory", "IVF4,PQ8x8",
                 "--photo-requests", "2", "--id-requests", "20", "--concurrency", "1", "--no-cli",
                 "--workdir", str(tmp_path / "w"), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert all(c["errors"] == 0 and c["requests"] > 0 for c in result["cells"])
    run_dir = tmp_path / "w" / "run600"
    info = json.loads((run_dir / "run.json").read_text())
    assert info[listcache.LISTS_KEY] == listcache.marker(5) and info["index"]["kind"] == "ivfpq"
    assert any(run_dir.joinpath(*listcache.CACHE_DIR).glob("*.ids.npy"))  # the server's first start wrote them
    run = open_run(run_dir, stored_lists=True)
    assert run.neighbors()["query_id"].nunique() == 600 and run.lists is not None


@pytest.mark.slow
def test_serve_http_benchmark_serves_the_baseline_checkout(sample_run, tmp_path, capsys):
    """--baseline: the server starts in that folder, so its ``fashion`` is the one served."""
    baseline = tmp_path / "before"  # a checkout of its own (here its package is this one, linked)
    baseline.mkdir()
    (baseline / "fashion").symlink_to(REPO / "fashion")
    main = runpy.run_path(str(REPO / "benchmarks" / "serve_http.py"))["main"]
    import fashion.server.launch as launch

    seen = []
    real = launch.running_server

    def spy(*args, **kwargs):
        seen.append(kwargs.get("cwd"))
        return real(*args, **kwargs)

    launch.running_server = spy
    try:
        assert main([str(sample_run), "--baseline", str(baseline), "--rounds", "1", "-n", "20"]) == 0
    finally:
        launch.running_server = real
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if "ms/req" in line]
    assert len(lines) == 4 and all("errors 0" in line for line in lines)
    assert sum("start-up to /healthz" in line for line in out) == 2
    assert seen == [str(baseline.resolve()), str(REPO)]
