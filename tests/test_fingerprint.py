"""The bundled-sample retrieval run, pinned: vectors, neighbours and metrics must not move.

``tests/data/sample_fingerprint.json`` holds what ``measure_sim.py --output_dir out`` (torch runtime,
the default exact index, cosine) produced on the untouched code; a refactor must reproduce it bit for
bit. Regenerate it only for a change that means to move the numbers:
``python tests/test_fingerprint.py --write`` (and say why in the commit).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

FINGERPRINT = Path(__file__).parent / "data" / "sample_fingerprint.json"
# What metrics.json holds besides timings and the skipped list: every number of the run.
METRIC_KEYS = ("k", "k_requested", "metric", "index", "mode", "layer", "precision_at_k", "map_at_k", "n_images",
               "n_ok", "n_skipped", "n_queries", "n_gallery", "n_embedded", "n_from_cache",
               "per_label_precision", "per_label_queries")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(output_dir: Path) -> dict:
    """SHA-256 of embeddings.npy's bytes and of the (query, neighbor, distance) columns, plus the metrics."""
    import numpy as np
    import pandas as pd

    from fashion.retrieval import MeasureConfig, run

    result = run(MeasureConfig(output_dir=str(output_dir), runtime="torch"))
    vectors = np.load(result.output_dir / "embeddings.npy")
    table = pd.read_csv(result.output_dir / "neighbors.csv")
    columns = (table["query"].to_numpy(np.int64), table["neighbor"].to_numpy(np.int64),
               table["distance"].to_numpy(np.float64))
    return {
        "embeddings_npy_sha256": _sha256((result.output_dir / "embeddings.npy").read_bytes()),
        "embeddings_shape": list(vectors.shape),
        "neighbors_sha256": _sha256(b"".join(np.ascontiguousarray(c).tobytes() for c in columns)),
        "n_neighbor_rows": int(len(table)),
        "metrics": {key: result.metrics[key] for key in METRIC_KEYS},
    }


def test_sample_run_matches_the_stored_fingerprint(tmp_path):
    expected = json.loads(FINGERPRINT.read_text())
    got = fingerprint(tmp_path / "out")
    assert got["metrics"] == expected["metrics"]
    assert got["embeddings_shape"] == expected["embeddings_shape"]
    assert got["n_neighbor_rows"] == expected["n_neighbor_rows"]
    assert got["embeddings_npy_sha256"] == expected["embeddings_npy_sha256"], "embedding vectors changed"
    assert got["neighbors_sha256"] == expected["neighbors_sha256"], "neighbours or distances changed"


if __name__ == "__main__":  # python tests/test_fingerprint.py --write
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = fingerprint(Path(tmp) / "out")
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        FINGERPRINT.write_text(text)
    print(text)
