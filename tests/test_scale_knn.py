"""fashion.scale.knn: neighbour shards equal exact search, the query left out, streaming metrics."""

import json

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from fashion.datasets import ItemTable  # noqa: E402
from fashion.scale import ivfpq, knn, manifest, shards  # noqa: E402


@pytest.fixture
def run(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    n, d = 600, 24
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    centers = rng.standard_normal((3, d)).astype(np.float32)
    vecs = centers[np.searchsorted(["a", "b", "c"], labels)] + 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items = pd.DataFrame({"path": [f"/x/{i}.jpg" for i in range(n)], "relpath": [f"{i}.jpg" for i in range(n)],
                          "label": labels, "split": [""] * n})
    manifest.write_manifest(ItemTable(items, "folder", "/x"), tmp_path)
    emb = tmp_path / "embeddings" / "tag"
    for s in range(0, n, 250):
        ids = np.arange(s, min(n, s + 250))
        ok = ids != 7  # one failed image: never a query, never a neighbour
        shards.write_shard(emb, pa.table({"id": pa.array(ids), "vector": shards.vector_array(vecs[ids]),
                                          "ok": pa.array(ok), "reason": pa.array(["" if o else "bad" for o in ok])}))
    ivfpq.build(emb, tmp_path / "index", id_space=n)
    return tmp_path, vecs, labels


def test_knn_equals_exact_search_and_leaves_the_query_out(run):
    path, vecs, labels = run
    from factories import seal_work

    assert knn.knn_run(knn.KnnConfig(str(path), k=5))["k"] == 5
    table = knn.read_neighbors(path)
    keep = np.arange(len(vecs)) != 7
    sims = vecs @ vecs.T
    sims[:, ~keep] = -np.inf
    np.fill_diagonal(sims, -np.inf)
    exact = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    got = table["neighbor_id"].to_numpy().reshape(-1, 5)
    queries = table["query_id"].to_numpy()[::5]
    assert queries.tolist() == np.flatnonzero(keep).tolist()
    assert (got == exact[queries]).mean() > 0.99  # IVF-Flat over every list: exact up to float ties
    dist = table["distance"].to_numpy().reshape(-1, 5)
    assert np.allclose(dist, 1 - np.take_along_axis(vecs[queries] @ vecs.T, got, 1), atol=1e-5)
    hits = (labels[got] == labels[queries][:, None]).mean()
    # `fashion knn` seals the run directory as a run of format 2 with the pipeline's stages: the same
    # neighbours, linked into neighbors/, measured by the one tally
    metrics = seal_work(path, 5).metrics
    assert metrics["precision_at_k"] == pytest.approx(hits) and metrics["n_queries"] == len(queries)
    from fashion.rundir import verify
    from fashion.run.reader import read_neighbors

    verify(path)
    assert read_neighbors(path).equals(table) and json.loads((path / "metrics.json").read_text())["k"] == 5
    # a rerun finds every shard done and keeps them
    stamps = {p: p.stat().st_mtime_ns for p in shards.list_parts(path / "knn")}
    knn.knn_run(knn.KnnConfig(str(path), k=5))
    assert {p: p.stat().st_mtime_ns for p in shards.list_parts(path / "knn")} == stamps
    # another k: the old shards are replaced, not mixed in
    assert knn.knn_run(knn.KnnConfig(str(path), k=3))["k"] == 3
    assert knn.read_neighbors(path)["rank"].max() == 3
