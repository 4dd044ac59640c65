"""Scale benchmark: embedding engines (local vs Ray) and the IVF-PQ index at a million vectors.

    python benchmarks/scale.py embed --photos 400          # local vs Ray with 1 and 2 actors, same photos
    python benchmarks/scale.py index --n 1000000 --dim 256  # generated data calibrated on real embeddings

``embed``: one manifest of the first N photos of clothing-dataset-small (or the bundled sample), embedded by
the local engine and by Ray with 1 and 2 actors (0.5 CPU each) into separate runs, OpenVINO runtime;
prints wall seconds, img/s, Ray start-up seconds and the model load (build + OpenVINO conversion) seconds,
and checks the vectors are equal across engines.

``index``: real embeddings of clothing-dataset-small are projected on their top ``--dim`` principal
axes; a Gaussian mixture fitted there (k-means centres + per-axis residual spread) generates ``--n``
vectors in parquet shards, chunk by chunk. Calibration: the recall@10 of one IVF-PQ setting on the real
vectors and on as many generated ones should agree. Then `fashion.scale.ivfpq.build` (factory auto,
``--memory``) runs in a child process (its peak RSS from ``ru_maxrss``), and queries (generated, not in
the index) are timed at several nprobe / re-rank depths against exact search. Prints one table and the
10M / 100M arithmetic; ``--json`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = Path("/work/shared/data/clothing-dataset-small")


# ------------------------------------------------------------------------------------------ embed


def _photo_dataset(dest: Path, n: int) -> Path:
    from fashion import sample

    src = REAL if REAL.is_dir() else sample.sample_root()
    photos = sorted(p for p in src.rglob("*.jpg"))[:n]
    for i, p in enumerate(photos):
        out = dest / p.parent.name / f"{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(p, out)
    return dest


def bench_embed(args) -> dict:
    from fashion import datasets
    from fashion.embedding import Embedder
    from fashion.scale import embed, manifest

    work = Path(tempfile.mkdtemp(prefix="scale_bench_"))
    try:
        items = datasets.load(_photo_dataset(work / "data", args.photos))
        t = time.perf_counter()
        e = Embedder.create(runtime="openvino")
        _ = e.dim
        import torch

        e.forward(torch.zeros((2, 3, e.size, e.size), dtype=torch.uint8))  # converts to OpenVINO
        load_s = time.perf_counter() - t
        rows, ref = [], None
        for engine, actors in (("local", 0), ("ray", 1), ("ray", 2)):
            run = work / f"{engine}{actors}"
            manifest.write_manifest(items, run)
            start_s = 0.0
            if engine == "ray":
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
                import ray

                t = time.perf_counter()
                ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                         _temp_dir=str(work / "ray"), object_store_memory=500 * 2**20)
                start_s = time.perf_counter() - t
            embed._embedder.cache_clear()  # each engine pays its own model load
            t = time.perf_counter()
            res = embed.embed_run(embed.EmbedConfig(str(run), engine=engine, runtime="openvino",
                                                    actors=max(1, actors), cpus_per_actor=0.5, batch_size=32,
                                                    shard_rows=256), progress=False)
            wall = time.perf_counter() - t
            if engine == "ray":
                ray.shutdown()
            ids, vecs = embed.read_embeddings(res.directory)
            same = None if ref is None else bool(np.array_equal(ref[0], ids) and np.array_equal(ref[1], vecs))
            ref = ref or (ids, vecs)
            rows.append({"engine": engine if engine == "local" else f"ray x{actors}", "images": len(items),
                         "wall_s": round(wall, 1), "img_per_s": round(len(items) / wall, 1),
                         "ray_start_s": round(start_s, 1), "equal_to_local": same})
        out = {"photos": len(items), "model_load_s": round(load_s, 1), "rows": rows}
        print(f"\nembedding {len(items)} photos (OpenVINO runtime; model load + conversion {load_s:.1f} s, "
              "inside every wall time below)")
        print(f"{'engine':10} {'wall s':>7} {'img/s':>7} {'ray start s':>11}  equal to local")
        for r in rows:
            print(f"{r['engine']:10} {r['wall_s']:7.1f} {r['img_per_s']:7.1f} {r['ray_start_s']:11.1f}  {r['equal_to_local']}")
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------ index


def _real_vectors(args) -> np.ndarray:
    """Unit embeddings of real photos (cached in --cache as .npy)."""
    cache = Path(args.cache) / "real_embeddings.npy"
    if cache.is_file():
        return np.load(cache)
    from fashion import datasets
    from fashion.embedding import Embedder

    items = datasets.load(REAL if REAL.is_dir() else ROOT / "fashion" / "data" / "sample").frame
    vecs = Embedder.create(runtime="openvino").embed(items, progress=False).vectors
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vecs)
    return vecs


class Generator:
    """A Gaussian mixture in the real vectors' top-``dim`` PCA space: centres from k-means, per-axis spread."""

    def __init__(self, real: np.ndarray, dim: int, k: int = 64, seed: int = 0):
        import faiss

        mean = real.mean(0)
        _, s, vt = np.linalg.svd(real - mean, full_matrices=False)
        self.basis, self.mean = vt[:dim].T.astype(np.float32), mean.astype(np.float32)
        self.explained = float((s[:dim] ** 2).sum() / (s ** 2).sum())
        low = (real - mean) @ self.basis
        km = faiss.Kmeans(dim, k, niter=20, seed=seed)
        km.train(np.ascontiguousarray(low, dtype=np.float32))
        assign = km.index.search(np.ascontiguousarray(low, np.float32), 1)[1][:, 0]
        self.centres = km.centroids
        self.weights = np.bincount(assign, minlength=k) / len(assign)
        self.spread = (low - self.centres[assign]).std(0).astype(np.float32)
        self.dim = dim

    def project(self, real: np.ndarray) -> np.ndarray:
        return _unit((real - self.mean) @ self.basis)

    def sample(self, n: int, rng) -> np.ndarray:
        c = rng.choice(len(self.centres), size=n, p=self.weights)
        x = self.centres[c] + rng.standard_normal((n, self.dim)).astype(np.float32) * self.spread
        return _unit(x)


def _unit(x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact_topk(q: np.ndarray, chunks, k: int = 10):
    best_d = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    for ids, x in chunks:
        s = q @ x.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k] if s.shape[1] > k else np.tile(np.arange(s.shape[1]), (len(q), 1))
        d = np.concatenate([best_d, np.take_along_axis(s, top, 1)], 1)
        i = np.concatenate([best_i, ids[top]], 1)
        o = np.argsort(-d, axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(d, o, 1), np.take_along_axis(i, o, 1)
    return best_i


def _recall(found, truth):
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(found, truth)]))


def _calibrate(real_low: np.ndarray, gen_low: np.ndarray, factory="IVF64,PQ16x8", nprobe=4) -> dict:
    """recall@10 of one IVF-PQ setting (no re-rank) on real and generated vectors of the same count."""
    import faiss

    out = {}
    for name, x in (("real", real_low), ("generated", gen_low)):
        q, base = x[:300], x[300:]
        idx = faiss.index_factory(x.shape[1], factory)
        idx.train(base)
        idx.add(base)
        idx.nprobe = nprobe
        truth = _exact_topk(q, [(np.arange(len(base)), base)])
        out[name] = round(_recall(idx.search(q, 10)[1], truth), 4)
    out["setting"] = f"{factory} nprobe={nprobe}, {len(real_low) - 300} vectors, 300 queries"
    return out


def _child_build(emb: str, out: str, memory: str, n: int) -> None:
    from fashion.scale import ivfpq

    params = ivfpq.build(emb, out, id_space=n, memory=memory)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"params": params.__dict__, "peak_rss": peak}))


def bench_index(args) -> dict:
    import pyarrow as pa

    from fashion.scale import ivfpq, shards

    rng = np.random.default_rng(args.seed)
    real = _real_vectors(args)
    gen = Generator(real, args.dim, seed=args.seed)
    real_low = gen.project(real)
    calib = _calibrate(real_low, gen.sample(len(real_low), rng))
    print(f"calibration ({calib['setting']}): recall@10 real {calib['real']} vs generated {calib['generated']}; "
          f"top-{args.dim} PCA axes keep {gen.explained:.1%} of the real variance")
    work = Path(args.work or tempfile.mkdtemp(prefix="scale_index_"))
    emb = work / "embeddings"
    t = time.perf_counter()
    if not shards.list_parts(emb):
        for s in range(0, args.n, args.shard):
            ids = np.arange(s, min(args.n, s + args.shard), dtype=np.int64)
            v = gen.sample(len(ids), rng)
            shards.write_shard(emb, pa.table({"id": pa.array(ids), "vector": shards.vector_array(v),
                                              "ok": pa.array(np.ones(len(ids), bool)),
                                              "reason": pa.array([""] * len(ids))}))
    gen_s = time.perf_counter() - t
    print(f"generated {args.n} vectors of d={args.dim} in {gen_s:.0f} s")
    # train time vs sample size (the trained index is not kept)
    train_rows = []
    params0 = ivfpq.choose_params(args.n, args.dim, memory=args.memory)
    from fashion.scale import sampler

    shard_set = shards.ShardSet(emb, only_ok=True)
    for size in args.train_sizes:
        if size >= params0.train_size:
            continue
        _, sample = sampler.sample_vectors(shard_set, size, seed=args.seed)
        t = time.perf_counter()
        ivfpq.train(params0, sample)
        train_rows.append({"sample": size, "train_s": round(time.perf_counter() - t, 1)})
        print(f"train on {size}: {train_rows[-1]['train_s']} s")
        del sample
    out_dir = work / "index"
    shutil.rmtree(out_dir, ignore_errors=True)
    code = ("import sys; sys.path.insert(0, %r); import benchmarks.scale as b; b._child_build(%r, %r, %r, %d)"
            % (str(ROOT), str(emb), str(out_dir), args.memory, args.n))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        print(proc.stderr[-3000:])
        raise SystemExit("index build failed")
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    params, peak = built["params"], built["peak_rss"]
    train_rows.append({"sample": params["train_size"], "train_s": params["timings"].get("train_s")})
    mem_bytes = ivfpq.index_memory_bytes(out_dir)
    print(f"{params['factory']}: {params['timings']}, peak RSS {peak / 2**30:.2f} GiB, "
          f"{mem_bytes / args.n:.1f} B/vector in memory")
    # queries: fresh generated vectors, exact truth by a pass over the shards
    q = gen.sample(args.queries, np.random.default_rng(args.seed + 1))
    t = time.perf_counter()
    truth = _exact_topk(q, ((p.ids, shards.vectors_of(tab.column("vector")))
                            for p, tab in shard_set.iter_batches(["vector"])))
    exact_s = time.perf_counter() - t
    index = ivfpq.ScaleIndex(out_dir)
    grid = []
    for nprobe in args.nprobe:
        for rerank in args.rerank:
            index.search(q[:20], 10, nprobe=nprobe, rerank=rerank)  # warm the mapped lists
            t = time.perf_counter()
            _, found = index.search(q, 10, nprobe=nprobe, rerank=rerank)
            ms = (time.perf_counter() - t) * 1000 / len(q)
            grid.append({"nprobe": nprobe, "rerank": rerank, "ms_per_query": round(ms, 3),
                         "recall_at_10": round(_recall(found, truth), 4)})
            print(grid[-1])
    add_s = params["timings"]["add_s"]
    result = {"n": args.n, "dim": args.dim, "pca_variance": round(gen.explained, 4), "calibration": calib,
              "generate_s": round(gen_s, 1), "params": params, "peak_rss_bytes": peak,
              "index_memory_bytes": mem_bytes, "bytes_per_vector": round(mem_bytes / args.n, 1),
              "rerank_bytes": (out_dir / ivfpq.RERANK_FILE).stat().st_size, "train": train_rows,
              "add_vectors_per_s": round(args.n / add_s, 0), "exact_ms_per_query": round(exact_s * 1000 / len(q), 2),
              "grid": grid, "queries": args.queries}
    result["projection"] = _projection(result)
    _print_index(result)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _projection(r: dict) -> list[dict]:
    """10M / 100M from the 1M figures: codes + ids scale with n; lists and training grow as √n."""
    p, rows = r["params"], []
    for n in (10_000_000, 100_000_000):
        from fashion.scale import ivfpq

        q = ivfpq.choose_params(n, r["dim"], memory="64G")
        rows.append({"n": n, "factory": q.factory, "index_GB": round(n * q.bytes_per_vector / 1e9, 2),
                     "rerank_f16_GB": round(n * r["dim"] * 2 / 1e9, 1), "train_sample": q.train_size,
                     "add_hours_one_core_pair": round(n / r["add_vectors_per_s"] / 3600, 2),
                     "train_s_estimate": round((p["timings"]["train_s"] or 0) * q.train_size / p["train_size"]
                                               * q.nlist / p["nlist"], 0)})
    return rows


def _print_index(r: dict) -> None:
    p = r["params"]
    print(f"\nIVF-PQ at n={r['n']:,}, d={r['dim']} ({p['factory']}, trained on {p['train_size']:,})")
    print(f"train {p['timings'].get('train_s')} s | add {r['add_vectors_per_s']:,.0f} vec/s | merge "
          f"{p['timings']['merge_s']} s | {r['bytes_per_vector']} B/vector in memory (+ {r['rerank_bytes'] / r['n']:.0f} B "
          f"float16 re-rank on disk) | peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB | exact {r['exact_ms_per_query']} ms/query")
    print(f"{'nprobe':>6} {'rerank':>6} {'ms/query':>9} {'recall@10':>9}")
    for g in r["grid"]:
        print(f"{g['nprobe']:6d} {g['rerank']:6d} {g['ms_per_query']:9.3f} {g['recall_at_10']:9.4f}")
    for row in r["projection"]:
        print(row)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--photos", type=int, default=400)
    i = sub.add_parser("index")
    i.add_argument("--n", type=int, default=1_000_000)
    i.add_argument("--dim", type=int, default=256)
    i.add_argument("--memory", default="4G")
    i.add_argument("--shard", type=int, default=50_000)
    i.add_argument("--queries", type=int, default=500)
    i.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    i.add_argument("--rerank", type=int, nargs="+", default=[0, 50, 100, 200])
    i.add_argument("--train-sizes", type=int, nargs="+", default=[20_000, 80_000])
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "fashion_scale_bench"))
    i.add_argument("--work", default=None, help="keep generated shards here (reused by a rerun)")
    i.add_argument("--keep", action="store_true")
    for p in (e, i):
        p.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    result = bench_embed(args) if args.what == "embed" else bench_index(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
