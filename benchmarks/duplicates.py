"""Calibrate the duplicate threshold on real photos with planted copies (benchmarks/README.md).

Takes ``--originals`` photos of clothing-dataset-small (seeded), writes five copies of each — JPEG
re-encoded at quality 40, resized to half size, cropped 5 % a side, mirrored, greyscale — and embeds
the whole dataset plus the copies with measure_sim's default embedding (the pretrained backbone's body).
Then, exactly as the duplicates stage of a run does (top-K table, then pairs at or under a threshold),
it finds pairs in a pool of every dataset photo plus the copies of one transform (one pool per
transform) and in a pool with all copies, for the embedding method and the perceptual hash.

A found pair is true when both photos come from one original (original-copy or copy-copy) or are
byte-identical files; every other found pair is counted false, including pairs of two different
dataset photos (the report counts those apart: some may be real copies inside the dataset).

    python benchmarks/duplicates.py --data /work/shared/data/clothing-dataset-small --originals 300
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashion.insight.calibrate import TRANSFORMS  # noqa: E402

EMBED_THRESHOLDS = (0.04, 0.06, 0.08, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40)
MIN_SCORES = (None, 0.95, 0.97, 0.98, 0.99)  # thumbnail check of the candidates (None: distance alone)
PHASH_THRESHOLDS = (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24)


def plant(src: Path, dst_dir: Path, transform: str, rng: np.random.Generator) -> Path:
    """One planted copy of ``src`` under ``dst_dir/transform/`` (fashion.insight.calibrate.plant_copy)."""
    from fashion.insight.calibrate import plant_copy

    return plant_copy(src, dst_dir / transform / f"{src.parent.name}_{src.stem}.jpg", transform, rng)


def evaluate(group: np.ndarray, digests: list, pool: np.ndarray, query_rows, neighbor_rows, dist,
             thresholds, is_copy: np.ndarray, scores: dict | None = None, min_score=None) -> list[dict]:
    """Precision/recall of the pairs at each threshold, within ``pool`` (global rows); with ``min_score``,
    only candidate pairs whose thumbnail score (``scores[(a, b)]``) reaches it are kept."""
    from fashion.insight.duplicates import exact_copy_pairs, knn_pairs

    ea, eb = exact_copy_pairs([digests[i] for i in pool])
    exact = {(int(pool[x]), int(pool[y])) for x, y in zip(ea, eb)}
    members = set(pool.tolist())
    truth = set()
    for row in pool[is_copy[pool]]:
        for other in np.flatnonzero(group == group[row]):
            if other != row and other in members:
                truth.add((min(row, other), max(row, other)))
    truth |= exact
    out = []
    for t in thresholds:
        a, b, _ = knn_pairs(query_rows, neighbor_rows, dist, t)
        found = set(zip(a.tolist(), b.tolist()))
        if min_score is not None:
            found = {p for p in found if scores[p] >= min_score}
        found |= exact
        hits = found & truth
        false = found - truth
        internal = sum(1 for x, y in false if not is_copy[x] and not is_copy[y])
        out.append({"threshold": t, "min_score": min_score, "found": len(found), "true": len(truth), "hits": len(hits),
                    "false": len(false), "false_dataset_pairs": internal,
                    "precision": len(hits) / len(found) if found else 1.0,
                    "recall": len(hits) / len(truth) if truth else 1.0})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/clothing-dataset-small")
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--k", type=int, default=10, help="neighbours per photo (measure_sim's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="copies and embedding cache (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from fashion import datasets
    from fashion.embedding import Embedder
    from fashion.insight.phash import hamming_neighbors, phash_bits
    from fashion.insight.duplicates import knn_pairs
    from fashion.insight.stage import file_digests
    from fashion.insight.verify import match_scores
    from fashion.neighbors import build_index

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="dup-bench-"))
    items = datasets.load(args.data).frame
    n0 = len(items)
    rng = np.random.default_rng(args.seed)
    originals = np.sort(rng.choice(n0, size=min(args.originals, n0), replace=False))
    paths = items["path"].astype(str).tolist()
    group = list(range(n0))
    kind = ["dataset"] * n0
    for row in originals:
        for transform in TRANSFORMS:
            paths.append(str(plant(Path(items["path"].iloc[row]), work / "copies", transform, rng)))
            group.append(int(row))
            kind.append(transform)
    group, kind = np.asarray(group), np.asarray(kind)
    is_copy = kind != "dataset"
    print(f"{n0} dataset photos, {len(originals)} originals x {len(TRANSFORMS)} transforms = {is_copy.sum()} copies")

    t0 = time.perf_counter()
    embedder = Embedder.create()  # measure_sim's default: pretrained efficientnet_lite0 body
    emb = embedder.embed(paths, cache_dir=work / "cache", progress=False)
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    bits, bits_ok = phash_bits(paths)
    t_hash = time.perf_counter() - t0
    digests = file_digests(paths)
    print(f"embedded in {t_embed:.1f}s ({embedder.name}, {emb.vectors.shape[1]}-d), phash in {t_hash:.1f}s")

    pools = {t: np.flatnonzero((kind == "dataset") | (kind == t)) for t in TRANSFORMS}
    pools["all"] = np.arange(len(paths))
    results: dict = {"embedding": {}, "phash": {}, "distances": {}}
    knn = {}
    for name, pool in pools.items():
        pool = pool[emb.ok[pool]]
        dist, idx = build_index("exact", metric="cosine").fit(emb.vectors[pool]).kneighbors(None, n_neighbors=args.k)
        knn[name] = (pool, pool[idx], dist)
    # the thumbnail check of every candidate pair of any pool, once
    cand = set()
    for pool, nbrs, dist in knn.values():
        a, b, _ = knn_pairs(pool, nbrs, dist, max(EMBED_THRESHOLDS))
        cand |= set(zip(a.tolist(), b.tolist()))
    cand = sorted(cand)
    t0 = time.perf_counter()
    s = match_scores(paths, np.array([p[0] for p in cand]), np.array([p[1] for p in cand]))
    scores = dict(zip(cand, s.tolist()))
    print(f"thumbnail check of {len(cand)} candidate pairs in {time.perf_counter() - t0:.1f}s")
    for name, (pool, nbrs, dist) in knn.items():
        results["embedding"][name] = {str(m): evaluate(group, digests, pool, pool, nbrs, dist, EMBED_THRESHOLDS,
                                                       is_copy, scores, m) for m in MIN_SCORES}
        hpool = pool[bits_ok[pool]]
        q, nb, hd = hamming_neighbors(bits[hpool], np.ones(len(hpool), bool), k=args.k)
        results["phash"][name] = evaluate(group, digests, hpool, hpool[q], hpool[nb], hd, PHASH_THRESHOLDS, is_copy)

    # distance of each planted copy to its original, and of each original to its nearest distinct photo
    from fashion.insight.duplicates import pair_cosine_distances

    copies = np.flatnonzero(is_copy)
    d_copy = pair_cosine_distances(emb.vectors, group[copies], copies)
    base = build_index("exact", metric="cosine").fit(emb.vectors[:n0])
    dd, di = base.kneighbors(emb.vectors[originals], n_neighbors=2)
    same_class = items["label"].to_numpy()
    nearest = []
    for row, drow, irow in zip(originals, dd, di):
        cand = [(d, i) for d, i in zip(drow, irow) if i != row]
        nearest.append(cand[0][0])
    # nearest distinct photo of the same class, over the whole dataset
    dd, di = base.kneighbors(emb.vectors[originals], n_neighbors=50)
    same = []
    for row, drow, irow in zip(originals, dd, di):
        cand = [d for d, i in zip(drow, irow) if i != row and same_class[i] == same_class[row]
                and digests[i] != digests[row]]
        same.append(cand[0] if cand else np.nan)
    pct = lambda x: {p: float(np.nanpercentile(x, p)) for p in (1, 5, 50, 95, 99)}
    results["distances"] = {t: pct(d_copy[kind[copies] == t]) for t in TRANSFORMS}
    results["distances"]["nearest same-class distinct"] = pct(np.asarray(same))
    hd_copy = (bits[group[copies]] != bits[copies]).sum(1)
    results["hamming"] = {t: pct(hd_copy[kind[copies] == t]) for t in TRANSFORMS}

    print("\ncosine distance copy -> its original (percentiles 1/5/50/95/99):")
    for name, p in results["distances"].items():
        print(f"  {name:28s} " + "  ".join(f"{v:.4f}" for v in p.values()))
    print("\nHamming bits copy -> its original (percentiles 1/5/50/95/99):")
    for name, p in results["hamming"].items():
        print(f"  {name:28s} " + "  ".join(f"{v:.0f}" for v in p.values()))
    tables = [(f"embedding, thumbnail check {m}", {n: r[str(m)] for n, r in results["embedding"].items()},
               EMBED_THRESHOLDS) for m in MIN_SCORES]
    tables.append(("phash (Hamming bits)", results["phash"], PHASH_THRESHOLDS))
    for title, res, thresholds in tables:
        print(f"\n{title}: precision / recall by threshold (pool = dataset + copies of one transform)")
        print(f"  {'thr':>6s} " + " ".join(f"{n:>13s}" for n in pools))
        for i, t in enumerate(thresholds):
            cells = [f"{r[i]['precision']:.3f}/{r[i]['recall']:.3f}" for r in res.values()]
            print(f"  {t:6g} " + " ".join(f"{c:>13s}" for c in cells))
        print("  pool 'all': found, hits, false (of which dataset-dataset pairs)")
        for r in res["all"]:
            print(f"  {r['threshold']:6g} found {r['found']:5d} hits {r['hits']:5d} false {r['false']:4d} "
                  f"({r['false_dataset_pairs']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    print(f"\nwork dir: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
