"""Smoke test of benchmarks/serve.py: a tiny grown gallery, a few requests of each kind, no errors."""

import json
import runpy
from pathlib import Path

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
