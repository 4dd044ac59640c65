"""fashion.scale.shards / manifest / sampler: stable ids, torn files, resume anti-join, uniform sample."""

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from fashion.scale import manifest, sampler, shards  # noqa: E402


def _table(ids, d=4, ok=None):
    ids = np.asarray(ids, dtype=np.int64)
    vecs = np.tile(ids[:, None].astype(np.float32), (1, d))
    ok = np.ones(len(ids), bool) if ok is None else np.asarray(ok)
    return pa.table({"id": pa.array(ids), "vector": shards.vector_array(vecs), "ok": pa.array(ok),
                     "reason": pa.array([""] * len(ids))})


def _folder_dataset(root, n_per=3):
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(n_per):
            Image.new("RGB", (16, 16), (i * 40, 10, 10)).save(root / label / f"{i}.jpg")
    return root


def test_manifest_ids_are_stable_and_dense(tmp_path):
    from fashion import datasets

    root = _folder_dataset(tmp_path / "data")
    items = datasets.load(root)
    m1 = manifest.write_manifest(items, tmp_path / "run", shard_rows=4)
    table = manifest.read_items(tmp_path / "run")
    assert table.column("id").to_pylist() == list(range(len(items)))
    assert table.column("relpath").to_pylist() == list(items.frame["relpath"])
    assert len(m1.shards) == 2
    # rerun on the same dataset: same manifest; another directory: same ids and fingerprint
    assert manifest.write_manifest(items, tmp_path / "run").fingerprint == m1.fingerprint
    m2 = manifest.write_manifest(datasets.load(root), tmp_path / "run2", shard_rows=100)
    assert m2.fingerprint == m1.fingerprint
    assert manifest.read_items(tmp_path / "run2").column("relpath").to_pylist() == table.column("relpath").to_pylist()


def test_manifest_refuses_another_dataset(tmp_path):
    from fashion import datasets

    root = _folder_dataset(tmp_path / "data")
    manifest.write_manifest(datasets.load(root), tmp_path / "run")
    (root / "a" / "0.jpg").unlink()
    with pytest.raises(manifest.ManifestError, match="another dataset"):
        manifest.write_manifest(datasets.load(root), tmp_path / "run")


def test_missing_manifest_is_one_clear_error(tmp_path):
    with pytest.raises(manifest.ManifestError, match="fashion manifest"):
        manifest.Manifest.read(tmp_path)


def test_torn_files_are_removed_and_their_ids_redone(tmp_path):
    good = shards.write_shard(tmp_path, _table([0, 1, 2]))
    torn = shards.write_shard(tmp_path, _table([3, 4, 5]))
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) // 2])  # no footer
    (tmp_path / ".part-x.parquet.123.tmp.parquet").write_bytes(b"partial")
    assert shards.is_complete(good) and not shards.is_complete(torn)
    removed = shards.clean_torn(tmp_path)
    assert torn in removed and len(removed) == 2
    assert shards.list_parts(tmp_path) == [good]
    done = shards.read_ids(tmp_path)
    assert shards.missing_ids(np.arange(6), done).tolist() == [3, 4, 5]


def test_shard_set_keeps_each_id_once_and_skips_failed_rows(tmp_path):
    shards.write_shard(tmp_path, _table([0, 1, 2], ok=[True, False, True]))
    shards.write_shard(tmp_path, _table([2, 3]))  # id 2 again (a retried task)
    every = shards.ShardSet(tmp_path)
    assert sorted(every.ids.tolist()) == [0, 1, 2, 3] and every.n_duplicates == 1
    ok = shards.ShardSet(tmp_path, only_ok=True)
    assert sorted(ok.ids.tolist()) == [0, 2, 3]
    rows = [shards.vectors_of(t.column("vector"))[:, 0].tolist() for _, t in ok.iter_batches(["vector"])]
    assert sorted(sum(rows, [])) == [0.0, 2.0, 3.0]


def test_vectors_round_trip_bitwise(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((7, 5)).astype(np.float32)
    t = pa.table({"id": pa.array(np.arange(7)), "vector": shards.vector_array(vecs)})
    path = shards.write_table(tmp_path / "part-0.parquet", t)
    import pyarrow.parquet as pq

    assert np.array_equal(shards.vectors_of(pq.read_table(path).column("vector")), vecs)


def test_sampler_is_uniform_across_shards_and_seeded(tmp_path):
    for start in range(0, 1000, 100):  # ten shards of 100
        shards.write_shard(tmp_path, _table(range(start, start + 100)))
    s = shards.ShardSet(tmp_path, only_ok=True)
    ids, vecs = sampler.sample_vectors(s, 300, seed=1)
    assert len(set(ids.tolist())) == 300 and np.array_equal(vecs[:, 0], ids.astype(np.float32))
    assert np.array_equal(ids, sampler.sample_vectors(s, 300, seed=1)[0])
    per_shard = np.bincount(ids // 100, minlength=10)
    assert per_shard.min() > 10  # not the first N: every shard is drawn from (expected 30 each)
    assert not np.array_equal(ids, sampler.sample_vectors(s, 300, seed=2)[0])
