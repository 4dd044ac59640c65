"""``faiss-ivfpq`` in the neighbours registry: recall against brute force, save/load, and a run made
with it that ``fashion search`` and ``fashion serve`` answer (issue 27)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from fashion.neighbors import build_index, load_index
from fashion.neighbors.ivfpq import FLAT_BELOW


def _clustered(n: int, d: int, seed: int = 0, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    return np.abs(centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32))


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pq_codes_are_reranked_to_near_exact_recall(metric):
    X = _clustered(FLAT_BELOW + 500, 32)  # above FLAT_BELOW: real PQ codes, not IVF-Flat
    index = build_index("faiss-ivfpq", metric=metric).fit(X)
    assert "PQ" in index._choice.factory
    Q = X[::97]
    dist, idx = index.kneighbors(Q, n_neighbors=10)
    tdist, tidx = build_index("exact", metric=metric).fit(X).kneighbors(Q, n_neighbors=10)
    assert _recall(idx, tidx) >= 0.95
    # where the neighbour is the true one, so is its distance (bitwise: the package-wide recompute)
    same = idx == tidx
    assert same.any() and np.array_equal(dist[same], tdist[same])
    assert (np.diff(dist, axis=1) >= 0).all()
    without_rerank = build_index("faiss-ivfpq", metric=metric, rerank=0).fit(X).kneighbors(Q, n_neighbors=10)[1]
    assert _recall(without_rerank, tidx) <= _recall(idx, tidx)


def test_all_pairs_leaves_each_point_out_and_small_sets_use_flat_codes():
    X = _clustered(300, 16, seed=3)
    X[7] = X[8]  # an exact duplicate still finds its twin at distance 0
    index = build_index("faiss-ivfpq").fit(X)
    assert index._choice.factory.endswith(",Flat") and index._choice.m == 0
    dist, idx = index.kneighbors(None, n_neighbors=5)
    assert (idx != np.arange(len(X))[:, None]).all()
    assert idx[7, 0] == 8 and dist[7, 0] == 0.0
    truth = build_index("exact").fit(X).kneighbors(None, n_neighbors=5)[1]
    assert _recall(idx, truth) >= 0.95


def test_probed_sizes_count_the_lists_a_search_visits_and_a_thinner_probe_goes_exact():
    X = _clustered(1200, 16)
    index = build_index("faiss-ivfpq", metric="cosine", factory="IVF32,Flat", nprobe=2).fit(X)
    Q = X[::50]
    sizes = index.probed_sizes(Q)
    from fashion.neighbors.ivfpq import list_sizes, probed_lists

    cells = probed_lists(index._index, index._prepare(Q, "Q"), 2)
    assert cells.shape == (len(Q), 2) and (cells >= 0).all()
    assert np.array_equal(sizes, list_sizes(index._index)[cells].sum(axis=1))
    assert np.array_equal(index.coarse_lists(Q), cells[:, 0])
    exact = build_index("exact", metric="cosine").fit(X)
    # k within the probed lists: the approximate answer, bound to them; k beyond: every row searched exactly
    for row, size in enumerate(sizes):
        inside = index.kneighbors(Q[row:row + 1], n_neighbors=int(size))[1][0]
        assert np.isin(index.coarse_lists(X[inside]), cells[row]).all()
        beyond = index.kneighbors(Q[row:row + 1], n_neighbors=int(size) + 1)[1][0]
        assert np.array_equal(beyond, exact.kneighbors(Q[row:row + 1], n_neighbors=int(size) + 1)[1][0])
    assert not np.isin(index.coarse_lists(X), cells[0]).all()  # the lists probed are not every list


def test_saved_index_loads_to_the_same_answers(tmp_path):
    X = _clustered(FLAT_BELOW + 200, 24, seed=1)
    index = build_index("faiss-ivfpq", nprobe=4).fit(X)
    loaded = load_index(index.save(tmp_path / "index.npz"))
    assert loaded.name == "faiss-ivfpq" and loaded.params["nprobe"] == 4
    Q = X[:50] + 0.01
    for a, b in zip(index.kneighbors(Q, 7), loaded.kneighbors(Q, 7)):
        assert np.array_equal(a, b)


@pytest.fixture(scope="module")
def ivfpq_run(tmp_path_factory):
    from fashion.retrieval import MeasureConfig, run

    out = tmp_path_factory.mktemp("ivfpq_run") / "out"
    run(MeasureConfig(output_dir=os.fspath(out), limit=40, k=5, grids=0, runtime="torch", num_workers=0,
                      index="faiss-ivfpq", insight=False))
    return out


def test_a_measure_sim_ivfpq_run_answers_search_and_serve(ivfpq_run):
    from fashion.run.reader import read_items
    from fashion.search import search
    from fashion.service import SimilarityService

    items = read_items(ivfpq_run)
    photo = items.loc[3, "path"]
    [result] = search([photo], ivfpq_run, k=5, output_dir=ivfpq_run.parent / "search")
    assert result.ok and result.matches[0].relpath == items.loc[3, "relpath"] and result.matches[0].distance < 1e-3

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fashion.server import create_app

    service = SimilarityService.open(ivfpq_run)
    with TestClient(create_app(service), base_url="http://localhost") as client, open(photo, "rb") as f:
        answer = client.post("/api/search", files={"image": ("photo.jpg", io.BytesIO(f.read()), "image/jpeg")},
                             data={"k": "5"})
        assert answer.status_code == 200, answer.text
        first = answer.json()["results"][0]
        assert first["relpath"] == items.loc[3, "relpath"] and first["distance"] < 1e-3
        health = client.get("/healthz").json()
        assert health["index"] == "faiss-ivfpq" and health["items"] == len(items)


def test_an_hnsw_quantiser_looks_twice_as_wide_as_the_lists_probed_and_at_least_64():
    import faiss

    from fashion.neighbors.ivfpq import tune_quantizer

    X = _clustered(1300, 16)

    def ef(index):
        return faiss.downcast_index(faiss.extract_index_ivf(index).quantizer).hnsw.efSearch

    wide = build_index("faiss-ivfpq", factory="IVF32_HNSW32,Flat", nprobe=50).fit(X)
    wide.kneighbors(X[:2], n_neighbors=3)  # the search sets it (nprobe 50 > nlist 32: efSearch follows 50)
    assert ef(wide._index) == 100
    tune_quantizer(wide._index, wide._choice.factory, 4)
    assert ef(wide._index) == 64
    flat = build_index("faiss-ivfpq", factory="IVF32,Flat", nprobe=50).fit(X)
    tune_quantizer(flat._index, "IVF32,Flat", 50)  # a flat quantiser has no efSearch: left alone, no error
    assert flat.kneighbors(X[:1], n_neighbors=1)[1][0, 0] == 0
