"""fashion.run.index: ``search(vectors, k, allowed=ids)`` of both index kinds equals brute force over the
allowed ids (exact below SELECT_EXACT_MAX; the IVF-PQ selector above it keeps to the allowed ids)."""

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("faiss")

from fashion.neighbors import build_index  # noqa: E402
from fashion.run import index as run_index  # noqa: E402
from fashion.scale import ivfpq, shards  # noqa: E402


def _unit(rng, n, d):
    x = rng.standard_normal((n, 6)).astype(np.float32) @ rng.standard_normal((6, d)).astype(np.float32)
    x += 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(q, vecs, ids, k):
    dist = 1.0 - q @ vecs[ids].T
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return ids[order]


def test_npz_index_allowed_ids_are_the_brute_force_top_k():
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 500, 16)
    item_ids = rng.permutation(np.arange(100, 600))  # index row → item id, not in order
    index = run_index.NpzIndex(build_index("exact", metric="cosine").fit(vecs), item_ids)
    allowed = np.sort(rng.choice(item_ids, 37, replace=False))
    q = _unit(rng, 5, 16)
    dist, found = index.search(q, 8, allowed=allowed)
    row_of = {int(i): r for r, i in enumerate(item_ids)}
    expected = [[int(item_ids[r]) for r in row] for row in _brute(q, vecs, np.array([row_of[i] for i in allowed]), 8)]
    assert found.tolist() == expected and (np.diff(dist, axis=1) >= 0).all()
    assert index.search(q, 50, allowed=allowed[:3])[1].shape == (5, 3)  # min(k, allowed)
    assert index.search(q, 5, allowed=np.array([], dtype=np.int64))[1].shape == (5, 0)


@pytest.fixture(scope="module")
def ivfpq_index(tmp_path_factory):
    rng = np.random.default_rng(0)
    vecs = _unit(rng, 6_000, 32)
    emb = tmp_path_factory.mktemp("ivf") / "emb"
    for s in range(0, len(vecs), 2_000):
        ids = np.arange(s, s + 2_000)
        shards.write_shard(emb, pa.table({"id": pa.array(ids), "vector": shards.vector_array(vecs[ids]),
                                          "ok": pa.array(np.ones(len(ids), bool)), "reason": pa.array([""] * len(ids))}))
    ivfpq.build(emb, emb.parent / "index", factory="IVF32,PQ8x4", seed=0, train_size=3_000)
    return run_index.IvfpqIndex(emb.parent / "index", np.arange(len(vecs))), vecs


def test_ivfpq_allowed_ids_exact_when_few(ivfpq_index):
    index, vecs = ivfpq_index
    rng = np.random.default_rng(2)
    allowed = np.sort(rng.choice(len(vecs), 300, replace=False))
    q = vecs[rng.choice(len(vecs), 20, replace=False)]
    dist, found = index.search(q, 10, allowed=allowed)
    # float16 re-rank vectors: the same ids as float32 brute force but for near-ties
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, _brute(q, vecs, allowed, 10))])
    assert agree >= 0.98 and np.isin(found, allowed).all() and (np.diff(dist, axis=1) >= -1e-6).all()


def test_ivfpq_allowed_ids_through_the_selector(ivfpq_index, monkeypatch):
    index, vecs = ivfpq_index
    monkeypatch.setattr(run_index, "SELECT_EXACT_MAX", 10)  # 600 allowed ids: the faiss bitmap selector
    rng = np.random.default_rng(3)
    allowed = np.sort(rng.choice(len(vecs), 600, replace=False))
    q = vecs[rng.choice(len(vecs), 20, replace=False)]
    dist, found = index.search(q, 10, allowed=allowed)
    assert found.shape == (20, 10) and np.isin(found, allowed).all()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, _brute(q, vecs, allowed, 10))])
    assert recall >= 0.8, recall
    few = allowed[:4]  # fewer than k: every one of them, none other
    assert sorted(index.search(q[:1], 10, allowed=few)[1][0].tolist()) == few.tolist()


def test_ivfpq_selector_scan_keeps_the_unfiltered_recall(ivfpq_index, monkeypatch):
    """A broad filter goes through the scan with a bitmap selector, which visits nprobe / √(the allowed
    share) lists: its recall against brute force over the allowed ids is no lower than the unfiltered
    recall (at nprobe 1 of 32 lists; the scan of the usual lists alone: 0.44 against 0.64 unfiltered)."""
    index, vecs = ivfpq_index
    monkeypatch.setattr(index.live.params, "nprobe", 1)
    rng = np.random.default_rng(4)
    q = vecs[rng.choice(len(vecs), 60, replace=False)] + 0.05 * rng.standard_normal((60, vecs.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    allowed = np.sort(rng.choice(len(vecs), 600, replace=False))
    ids = np.arange(len(vecs))

    def recall(found, want):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, want)])

    unfiltered = recall(index.live.search(q, 10)[1], _brute(q, vecs, ids, 10))
    filtered = recall(index.live.search(q, 10, allowed=allowed)[1], _brute(q, vecs, allowed, 10))
    assert unfiltered < 0.95 and filtered >= unfiltered - 0.02, (filtered, unfiltered)
