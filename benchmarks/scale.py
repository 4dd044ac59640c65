"""Scale benchmark: embedding engines (local vs Ray) and the IVF-PQ index at a million vectors.

    python benchmarks/scale.py embed --photos 400          # local vs Ray with 1 and 2 actors, same photos
    python benchmarks/scale.py drift --photos 200          # torch runtime: Ray's vectors vs the local engine's
    python benchmarks/scale.py index --n 1000000 --dim 256  # generated data calibrated on real embeddings

``drift``: the same with the torch runtime (not batch-invariant) plus a local run at batch 7; prints, per
run, the max and median over vectors of max |a − b| and ‖a − b‖ / ‖a‖ against the local engine at batch 32.

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
        shutil.copyfile(p, out)  # copies: the dataset loader refuses links that leave its root
    return dest


def _import_ray():
    """Ray, imported after the variables that keep it on 127.0.0.1 (read at import) and tokenless; its
    workers at the driver's priority (Ray starts them at niceness 15: against the local engine at 0
    that would time the scheduler, not the engine)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    return ray


def _ray_init(work: Path) -> float:
    """A private loopback-only Ray (2 CPUs, no dashboard, temp dir under ``work``); returns its start-up s."""
    ray = _import_ray()

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             _temp_dir=str(work / "ray"), object_store_memory=500 * 2**20)
    nodes = ray.nodes()
    assert nodes and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes), nodes
    return time.perf_counter() - t


def _engine_runs(items, work: Path, runs, runtime: str):
    """Embed ``items`` once per (name, engine, actors, batch size) of ``runs`` into runs of their own;
    yields (name, wall s, Ray start-up s, ids, vectors). Each run pays its own model load."""
    ray = _import_ray()

    from fashion.scale import embed, manifest

    for name, engine, actors, batch in runs:
        run = work / name.replace(" ", "_")
        manifest.write_manifest(items, run)
        start_s = _ray_init(work) if engine == "ray" else 0.0
        embed.forget_embedders()
        t = time.perf_counter()
        try:
            res = embed.embed_run(embed.EmbedConfig(str(run), engine=engine, runtime=runtime, actors=max(1, actors),
                                                    cpus_per_actor=0.5, batch_size=batch, shard_rows=256),
                                  progress=False)
            wall = time.perf_counter() - t
        finally:
            if engine == "ray":
                ray.shutdown()
        yield (name, wall, start_s) + embed.read_embeddings(res.directory)


ENGINE_RUNS = [("local", "local", 0, 32), ("ray x1", "ray", 1, 32), ("ray x2", "ray", 2, 32)]


def bench_embed(args) -> dict:
    from fashion import datasets
    from fashion.embedding import Embedder

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
        for name, wall, start_s, ids, vecs in _engine_runs(items, work, ENGINE_RUNS, "openvino"):
            same = None if ref is None else bool(np.array_equal(ref[0], ids) and np.array_equal(ref[1], vecs))
            ref = ref or (ids, vecs)
            rows.append({"engine": name, "images": len(items), "wall_s": round(wall, 1),
                         "img_per_s": round(len(items) / wall, 1), "ray_start_s": round(start_s, 1),
                         "equal_to_local": same})
        out = {"photos": len(items), "model_load_s": round(load_s, 1), "rows": rows}
        print(f"\nembedding {len(items)} photos (OpenVINO runtime; model load + conversion {load_s:.1f} s, "
              "inside every wall time below)")
        print(f"{'engine':10} {'wall s':>7} {'img/s':>7} {'ray start s':>11}  equal to local")
        for r in rows:
            print(f"{r['engine']:10} {r['wall_s']:7.1f} {r['img_per_s']:7.1f} {r['ray_start_s']:11.1f}  {r['equal_to_local']}")
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_drift(args) -> dict:
    """The torch runtime's vectors on the Ray engine (1 and 2 actors) and at another batch size on the
    local engine, each against the local engine's at batch 32 (same photos, same precision)."""
    from fashion import datasets
    from fashion.scale import embed

    work = Path(tempfile.mkdtemp(prefix="scale_drift_"))
    try:
        items = datasets.load(_photo_dataset(work / "data", args.photos))
        runs = ENGINE_RUNS + [("local b7", "local", 0, 7)]
        rows, ref = [], None
        for name, _, _, ids, vecs in _engine_runs(items, work, runs, "torch"):
            if ref is None:
                ref = (ids, vecs)
                continue
            assert np.array_equal(ids, ref[0]), f"{name}: other ids than the local engine's"
            rows.append({"run": name, **embed.drift(ref[1], vecs)})
        spec = json.loads(next((work / "local").glob("embeddings/*/embedder.json")).read_text())["spec"]
        out = {"photos": len(items), "precision": spec["precision"], "rows": rows}
        print(f"\ntorch runtime ({spec['precision']}), {len(ref[0])} vectors, each run against the local engine "
              "at batch 32")
        print(f"{'run':10} {'max |a-b|':>10} {'median':>10} {'max rel':>10} {'median rel':>10}  bitwise equal")
        for r in rows:
            print(f"{r['run']:10} {r['max_abs']:10.3g} {r['median_abs']:10.3g} {r['max_rel']:10.3g} "
                  f"{r['median_rel']:10.3g}  {r['bitwise_equal']}/{r['vectors']}")
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
    """Clusters of the real vectors' top-``dim`` PCA space, each with its own covariance.

    k-means (``k`` centres) on the projected real vectors; a generated vector is a centre plus a random
    Gaussian combination of that cluster's real residuals (``coef ~ N(0, 1 / (m − 1))`` over its ``m``
    members), so each cluster keeps the covariance of its members, the low-rank, correlated shape the
    real embeddings have (a per-axis spread around the centres instead made data that PQ finds much
    harder than real embeddings: recall 0.420 vs 0.546). ``k`` is the knob the calibration reports.
    """

    def __init__(self, real: np.ndarray, dim: int, k: int = 64, seed: int = 0, pca=None):
        import faiss

        self.mean, self.basis, self.explained = pca or _pca(real, dim)
        low = np.ascontiguousarray((real - self.mean) @ self.basis, dtype=np.float32)
        km = faiss.Kmeans(dim, k, niter=20, seed=seed)
        km.train(low)
        assign = km.index.search(low, 1)[1][:, 0]
        self.centres = km.centroids
        self.members = [np.where(assign == c)[0] for c in range(k)]
        self.residuals = [low[m] - self.centres[c] for c, m in enumerate(self.members)]
        self.weights = np.array([len(m) for m in self.members]) / len(assign)
        self.dim, self.k = dim, k

    def project(self, real: np.ndarray) -> np.ndarray:
        return _unit((real - self.mean) @ self.basis)

    def sample(self, n: int, rng) -> np.ndarray:
        c = rng.choice(len(self.centres), size=n, p=self.weights)
        x = np.empty((n, self.dim), dtype=np.float32)
        for j in np.unique(c):
            rows, res = np.where(c == j)[0], self.residuals[j]
            coef = rng.standard_normal((len(rows), len(res)), dtype=np.float32) / np.float32(max(1, len(res) - 1) ** 0.5)
            x[rows] = self.centres[j] + coef @ res
        return _unit(x)


def _pca(real: np.ndarray, dim: int):
    """(mean, (D, dim) basis of the top principal axes, share of the variance they keep)."""
    mean = real.mean(0)
    _, s, vt = np.linalg.svd(real - mean, full_matrices=False)
    return mean.astype(np.float32), vt[:dim].T.astype(np.float32), float((s[:dim] ** 2).sum() / (s ** 2).sum())


def spectrum(x: np.ndarray, at=(8, 32, 128)) -> list[float]:
    """Share of the variance on the top ``at`` principal axes (the singular-value profile, in three numbers)."""
    s2 = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    return [round(float(s2[:a].sum() / s2.sum()), 3) for a in at]


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


CALIBRATION = ("IVF64,PQ16x8", 4, 0)  # (factory, nprobe, re-rank): the setting k is chosen on
CHECKS = (("IVF64,PQ32x8", 8, 0), ("IVF64,PQ8x8", 16, 0), ("IVF64,PQ16x8", 16, 50))  # held out: not used to choose


def _recall_of(x: np.ndarray, factory: str, nprobe: int, rerank: int, queries: int = 300) -> float:
    """recall@10 vs exact of one IVF-PQ setting on ``x`` (first ``queries`` rows query the rest)."""
    import faiss

    q, base = x[:queries], x[queries:]
    idx = faiss.index_factory(x.shape[1], factory)
    faiss.downcast_index(faiss.extract_index_ivf(idx)).do_polysemous_training = False  # as fashion.scale.ivfpq
    idx.train(base)
    idx.add(base)
    idx.nprobe = nprobe
    truth = _exact_topk(q, [(np.arange(len(base)), base)])
    found = idx.search(q, max(10, rerank))[1]
    if rerank:
        sims = np.einsum("qkd,qd->qk", base[np.maximum(found, 0)], q)
        found = np.take_along_axis(found, np.argsort(-np.where(found >= 0, sims, -np.inf), 1)[:, :10], 1)
    return round(_recall(found[:, :10], truth), 4)


def _calibrate(real: np.ndarray, dim: int, clusters, seed: int):
    """Fit the generator for each ``k`` of ``clusters``, keep the one whose recall@10 at CALIBRATION is
    nearest the real vectors' (as many generated vectors as real ones), then compare the held-out CHECKS
    and the variance profile. Prints the comparison; returns (generator, report)."""
    rows, best = [], None
    pca = _pca(real, dim)
    real_low = _unit((real - pca[0]) @ pca[1])
    for k in clusters:
        gen = Generator(real, dim, k=k, seed=seed, pca=pca)
        fake = gen.sample(len(real_low), np.random.default_rng(seed))
        row = {"k": k, "generated": _recall_of(fake, *CALIBRATION), "spectrum": spectrum(fake)}
        rows.append(row)
        if best is None or abs(row["generated"] - _real_cal(real_low)) < abs(best[1]["generated"] - _real_cal(real_low)):
            best = (gen, row, fake)
    gen, chosen, fake = best
    report = {"setting": CALIBRATION, "real": _real_cal(real_low), "real_spectrum": spectrum(real_low),
              "candidates": rows, "k": chosen["k"], "pca_variance": round(gen.explained, 4),
              "checks": [{"setting": c, "real": _recall_of(real_low, *c), "generated": _recall_of(fake, *c)}
                         for c in CHECKS]}
    fmt = "{:>24} {:>9} {:>9}"
    print(f"\ncalibration: {len(real_low)} real vectors (top-{dim} PCA axes keep {gen.explained:.1%} of their "
          f"variance) vs as many generated; recall@10 of 300 of them against the other {len(real_low) - 300}, "
          "no re-rank unless said (rr)")
    print(fmt.format("setting", "real", "generated"))
    for r in rows:
        print(fmt.format(f"{_setting(CALIBRATION)} k={r['k']}", report["real"], r["generated"]))
    print(f"chosen: k={chosen['k']} (nearest the real recall); held-out settings:")
    for c in report["checks"]:
        print(fmt.format(_setting(c["setting"]), c["real"], c["generated"]))
    print(f"variance on the top 8/32/128 axes: real {report['real_spectrum']}, generated {chosen['spectrum']}")
    return gen, report


_REAL_CAL = {}


def _real_cal(real_low: np.ndarray) -> float:
    """The real vectors' recall at CALIBRATION (computed once)."""
    if "r" not in _REAL_CAL:
        _REAL_CAL["r"] = _recall_of(real_low, *CALIBRATION)
    return _REAL_CAL["r"]


def _setting(c) -> str:
    factory, nprobe, rerank = c
    return f"{factory} np{nprobe}" + (f" rr{rerank}" if rerank else "")


def _child_build(emb: str, out: str, memory: str, n: int) -> None:
    from fashion.scale import ivfpq

    params = ivfpq.build(emb, out, id_space=n, memory=memory)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"params": params.__dict__, "peak_rss": peak}))


def bench_index(args) -> dict:
    import pyarrow as pa

    from fashion.neighbors.ivfpq import choose_params, train_index
    from fashion.scale import ivfpq, shards

    rng = np.random.default_rng(args.seed)
    real = _real_vectors(args)
    gen, calib = _calibrate(real, args.dim, args.clusters, args.seed)
    if args.calibrate_only:
        return {"calibration": calib}
    work = Path(args.work or tempfile.mkdtemp(prefix="scale_index_"))
    emb = work / "embeddings"
    t = time.perf_counter()
    marker = work / "generated.json"  # written once every shard is: a reused set is whole and of these settings
    settings = {"n": args.n, "dim": args.dim, "k": gen.k, "seed": args.seed, "shard": args.shard}
    reused = marker.is_file() and json.loads(marker.read_text()) == settings
    if not reused:
        shutil.rmtree(emb, ignore_errors=True)
        marker.unlink(missing_ok=True)
        for s in range(0, args.n, args.shard):
            ids = np.arange(s, min(args.n, s + args.shard), dtype=np.int64)
            v = gen.sample(len(ids), rng)
            shards.write_shard(emb, pa.table({"id": pa.array(ids), "vector": shards.vector_array(v),
                                              "ok": pa.array(np.ones(len(ids), bool)),
                                              "reason": pa.array([""] * len(ids))}))
        marker.write_text(json.dumps(settings))
    gen_s = time.perf_counter() - t
    print(f"{args.n} generated vectors of d={args.dim} (k={gen.k}) in {emb}: "
          + ("reused from an earlier run" if reused else f"written in {gen_s:.0f} s"))
    if args.generate_only:
        return {"calibration": calib, "generated": str(emb)}
    # train time vs sample size (the trained index is not kept)
    train_rows = []
    params0 = choose_params(args.n, args.dim, memory=args.memory)
    from fashion.scale import sampler

    shard_set = shards.ShardSet(emb, only_ok=True)
    for size in args.train_sizes:
        if size >= params0.train_size:
            continue
        _, sample = sampler.sample_vectors(shard_set, size, seed=args.seed)
        t = time.perf_counter()
        train_index(params0, sample)
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
        from fashion.neighbors.ivfpq import choose_params

        q = choose_params(n, r["dim"], memory="64G")
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
    dr = sub.add_parser("drift", help="the torch runtime's vectors: Ray engine vs local (no timings)")
    dr.add_argument("--photos", type=int, default=200)
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
    i.add_argument("--clusters", type=int, nargs="+", default=[16, 32, 64, 128],
                   help="generator cluster counts tried by the calibration (≤ 128: ≥ ~30 real members each)")
    i.add_argument("--calibrate-only", action="store_true", help="print the calibration and stop")
    i.add_argument("--generate-only", action="store_true",
                   help="calibrate, write the generated shards to --work and stop (the timed run reuses them)")
    i.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "fashion_scale_bench"))
    i.add_argument("--work", default=None, help="keep generated shards here (reused by a rerun)")
    i.add_argument("--keep", action="store_true")
    for p in (e, dr, i):
        p.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    result = {"embed": bench_embed, "drift": bench_drift, "index": bench_index}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
