"""fashion.scale.ivfpq: factory choice, sharded build == one-shot build, re-rank, load after a move."""

import shutil

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
faiss = pytest.importorskip("faiss")

from fashion.neighbors.ivfpq import choose_params, parse_bytes  # noqa: E402
from fashion.scale import ivfpq, shards  # noqa: E402


def _unit(rng, n, d, rank=8):
    """Low-rank + noise unit vectors (clustered like embeddings)."""
    x = rng.standard_normal((n, rank)).astype(np.float32) @ rng.standard_normal((rank, d)).astype(np.float32)
    x += 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _write(directory, vecs, per_shard, start=0):
    for s in range(0, len(vecs), per_shard):
        rows = np.arange(s, min(len(vecs), s + per_shard))
        ids = rows + start
        shards.write_shard(directory, pa.table({"id": pa.array(ids), "vector": shards.vector_array(vecs[rows]),
                                                "ok": pa.array(np.ones(len(ids), bool)),
                                                "reason": pa.array([""] * len(ids))}))


def test_choose_params_follows_count_and_budget():
    small = choose_params(240, 1280)
    assert small.factory.endswith(",Flat") and small.nlist * 39 <= 240 or small.nlist == 1
    big = choose_params(1_000_000, 1280, memory="4G")
    assert big.factory == "OPQ64_256,IVF1024_HNSW32,PQ64x8" and big.bytes_per_vector <= 100
    tight = choose_params(1_000_000, 1280, memory="64M")
    assert tight.m < 64 and tight.train_size * 1280 * 4 <= (64 << 20) // 4
    with pytest.raises(ValueError, match="4G"):
        parse_bytes("four gigs")


def test_sharded_build_equals_one_shot_build_and_loads_after_move(tmp_path):
    rng = np.random.default_rng(0)
    vecs = _unit(rng, 20_000, 32)
    _write(tmp_path / "emb", vecs, per_shard=3_000)
    # 4-bit codes and a 5k sample keep PQ training to seconds (the sharding logic is the same)
    params = ivfpq.build(tmp_path / "emb", tmp_path / "index", factory="IVF128,PQ8x4", seed=0, train_size=5_000)
    assert params.count == 20_000 and params.nlist == 128

    # one-shot: the same trained index, every vector added at once, in memory
    one = faiss.read_index(str(tmp_path / "index" / ivfpq.TRAINED_FILE))
    one.add_with_ids(vecs, np.arange(len(vecs), dtype=np.int64))
    faiss.ParameterSpace().set_index_parameter(one, "nprobe", params.nprobe)
    q = vecs[:200]
    d_one, i_one = one.search(q, 10)
    index = ivfpq.ScaleIndex(tmp_path / "index")
    d_sh, i_sh = index.search(q, 10, rerank=0)
    assert np.array_equal(i_one, i_sh) and np.allclose(d_one / 2, d_sh)

    # re-rank lifts recall@10 against exact search
    exact = np.argsort(-(q @ vecs.T), axis=1)[:, :10]
    recall = lambda ids: np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])  # noqa: E731
    r_pq, r_rr = recall(i_sh), recall(index.search(q, 10, rerank=100)[1])
    assert r_rr > r_pq and r_rr >= 0.9

    # move the directory (and delete the old one): it loads and answers the same
    moved = tmp_path / "elsewhere" / "idx"
    shutil.move(str(tmp_path / "index"), str(moved))
    del index
    again = ivfpq.ScaleIndex(moved)
    assert np.array_equal(again.search(q, 10, rerank=0)[1], i_sh)


def test_build_resumes_from_finished_shard_indexes(tmp_path):
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 3_000, 16)
    _write(tmp_path / "emb", vecs, per_shard=1_000)
    ivfpq.build(tmp_path / "emb", tmp_path / "index")
    first = sorted((tmp_path / "index" / "shards").iterdir())
    stamps = [p.stat().st_mtime_ns for p in first]
    (tmp_path / "index" / ivfpq.INDEX_JSON).unlink()  # as if killed before the seal
    first[1].unlink()
    params = ivfpq.build(tmp_path / "emb", tmp_path / "index")
    assert params.count == 3_000
    assert first[0].stat().st_mtime_ns == stamps[0]  # kept, not rebuilt
    idx = ivfpq.ScaleIndex(tmp_path / "index")
    d, i = idx.search(vecs[:5], 1)
    assert i[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(d[:, 0], 0, atol=1e-5)


def test_finished_build_is_kept_and_a_changed_shard_set_starts_over(tmp_path):
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 3_000, 16)
    _write(tmp_path / "emb", vecs[:2_000], per_shard=1_000)
    first = ivfpq.build(tmp_path / "emb", tmp_path / "index")
    sealed = (tmp_path / "index" / ivfpq.INDEX_JSON).stat().st_mtime_ns
    again = ivfpq.build(tmp_path / "emb", tmp_path / "index")
    assert again.timings == first.timings and (tmp_path / "index" / ivfpq.INDEX_JSON).stat().st_mtime_ns == sealed
    _write(tmp_path / "emb", vecs[2_000:], per_shard=1_000, start=2_000)  # one more shard
    grown = ivfpq.build(tmp_path / "emb", tmp_path / "index")
    assert grown.count == 3_000 and len(list((tmp_path / "index" / "shards").iterdir())) == 3


def test_unfinished_build_is_refused(tmp_path):
    with pytest.raises(ivfpq.IndexBuildError, match="did not finish"):
        ivfpq.ScaleIndex(tmp_path)


def test_overlapping_stdout_swaps_in_two_threads_put_stdout_back(tmp_path):
    """ivfpq._c_stdout_to_stderr in two threads at once: the second waits for the first, so fd 1 ends on
    stdout (unlocked, the second saved the stderr the first swapped in and restored it last)."""
    import os
    import threading

    def identity(fd):
        st = os.fstat(fd)
        return st.st_dev, st.st_ino

    saved = os.dup(1), os.dup(2)
    out, err = open(tmp_path / "out", "wb"), open(tmp_path / "err", "wb")
    try:
        os.dup2(out.fileno(), 1)  # stdout and stderr: two files that fstat tells apart
        os.dup2(err.fileno(), 2)
        first_in, second_trying, first_out = threading.Event(), threading.Event(), threading.Event()

        def first():
            with ivfpq._c_stdout_to_stderr():
                first_in.set()
                second_trying.wait(10)
                first_out.wait(0.3)  # time for an unlocked second swap to begin inside this one
            first_out.set()

        def second():
            first_in.wait(10)
            second_trying.set()
            with ivfpq._c_stdout_to_stderr():
                first_out.wait(10)  # unlocked: ends after the first; locked: begins after it

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        restored, expected = identity(1), identity(out.fileno())
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        out.close()
        err.close()
    assert restored == expected
