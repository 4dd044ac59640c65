"""The insight stage of a run: duplicates (exact file copies, then near-copies from the top-K table),
the embedding map and the kNN label suspects, written beside a run's other files.

``measure_sim.py`` calls :func:`write_insight` with the neighbours it already computed;
``fashion duplicates`` (:func:`run_duplicates`) embeds, searches and calls the same functions.
Files: ``duplicates.csv`` (cluster, a_relpath, b_relpath, distance, a_split, b_split, a_label, b_label,
a, b, method — a/b are item ids, the rows of the run's item table), ``map.csv`` (id, x, y), ``map.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..options import default
from .duplicates import DEFAULT_THRESHOLD
from .verify import DEFAULT_MIN_SCORE

log = logging.getLogger(__name__)

DUPLICATE_COLUMNS = ("cluster", "a_relpath", "b_relpath", "distance", "a_split", "b_split", "a_label", "b_label",
                     "a", "b", "method")


@dataclass
class Duplicates:
    """Pairs found in a run: a, b (item rows, a < b), distance, method ("exact", "embedding", "phash"),
    cluster (n,) per item row (-1: in no pair) and the metrics.json summary."""

    a: np.ndarray
    b: np.ndarray
    distance: np.ndarray
    method: np.ndarray
    cluster: np.ndarray
    summary: dict = field(default_factory=dict)

    def table(self, items):
        """duplicates.csv as a DataFrame (columns ``DUPLICATE_COLUMNS``), leaks first, then by cluster."""
        import pandas as pd

        rel, split, label = (items[c].astype(str).to_numpy() for c in ("relpath", "split", "label"))
        a, b = self.a, self.b
        frame = pd.DataFrame({
            "cluster": self.cluster[a] if len(a) else np.zeros(0, dtype=np.int64),
            "a_relpath": rel[a], "b_relpath": rel[b], "distance": self.distance, "a_split": split[a],
            "b_split": split[b], "a_label": label[a], "b_label": label[b], "a": a, "b": b, "method": self.method,
        }, columns=list(DUPLICATE_COLUMNS))
        return frame.sort_values(["cluster", "distance", "a", "b"], kind="stable").reset_index(drop=True)


def file_digests(paths, ok=None) -> list:
    """sha256 of each file's bytes (None where ``ok`` is False or the file cannot be read)."""
    from ..rundir import file_sha256

    out = []
    for i, path in enumerate(paths):
        if ok is not None and not ok[i]:
            out.append(None)
            continue
        try:
            out.append(file_sha256(path))
        except OSError as exc:
            log.debug("no digest for %s: %s", path, exc)
            out.append(None)
    return out


def find_duplicates(items, query_rows, neighbor_rows, distances, threshold: float, digests=None,
                    method: str = "embedding", min_score: float | None = None) -> Duplicates:
    """Exact copies (equal ``digests``) plus the top-K pairs at or under ``threshold``; clusters and summary.

    query_rows (q,), neighbor_rows (q, k): item rows; distances (q, k): the method's distance (cosine
    distance of the embeddings, or Hamming bits of the perceptual hashes). ``min_score``: keep only the
    top-K pairs whose thumbnails correlate at least this well (:func:`fashion.insight.verify.match_scores`).
    """
    from .duplicates import connected_clusters, dedupe_pairs, exact_copy_pairs, knn_pairs, pair_summary

    ea, eb = exact_copy_pairs(digests) if digests is not None else (np.zeros(0, np.int64),) * 2
    na, nb, nd = knn_pairs(query_rows, neighbor_rows, distances, threshold)
    n_candidates = len(na)
    if min_score is not None and len(na):
        from .verify import match_scores

        keep = match_scores(items["path"].astype(str).tolist(), na, nb) >= min_score
        na, nb, nd = na[keep], nb[keep], nd[keep]
    exact = set(zip(ea.tolist(), eb.tolist()))
    a, b, d = dedupe_pairs(np.concatenate([ea, na]), np.concatenate([eb, nb]),
                           np.concatenate([np.zeros(len(ea)), nd]))
    kinds = np.array(["exact" if (x, y) in exact else method for x, y in zip(a.tolist(), b.tolist())], dtype=object)
    cluster = connected_clusters(len(items), a, b)
    summary = pair_summary(a, b, cluster, items["split"].astype(str), items["label"].astype(str))
    summary.update(method=method, threshold=float(threshold), min_score=min_score, exact_pairs=int(len(ea)),
                   n_candidates=int(n_candidates))
    log.info("duplicates (%s, threshold %g): %d pairs in %d clusters, %d across splits, %d with different labels",
             method, threshold, summary["n_pairs"], summary["n_clusters"], summary["cross_split_pairs"],
             summary["label_disagreeing_pairs"])
    return Duplicates(a, b, d, kinds, cluster, summary)


def embedding_duplicates(items, vectors, ok, query_rows, neighbor_rows, threshold: float = DEFAULT_THRESHOLD,
                         min_score: float | None = DEFAULT_MIN_SCORE, hash_files: bool = True) -> Duplicates:
    """:func:`find_duplicates` on a run's top-K table, distances recomputed as cosine distances, candidates
    confirmed on the thumbnails (``min_score``; None: distance alone)."""
    from .duplicates import knn_distances

    query_rows, neighbor_rows = np.asarray(query_rows), np.asarray(neighbor_rows)
    dist = knn_distances(vectors, query_rows, neighbor_rows)
    digests = file_digests(items["path"].astype(str).tolist(), ok) if hash_files else None
    return find_duplicates(items, query_rows, neighbor_rows, dist, threshold, digests, "embedding", min_score)


@dataclass
class InsightConfig:
    """Options of the insight stage. threshold: candidate cosine distance; min_score: thumbnail check
    (None: off); map_method: fashion.insight.map.MAP_METHODS; seed: the layout's."""

    threshold: float = DEFAULT_THRESHOLD
    min_score: float | None = DEFAULT_MIN_SCORE
    map_method: str = "auto"
    seed: int = 0
    draw_map: bool = True


def write_duplicates(out: Path, items, dups: Duplicates) -> Path:
    """``out/duplicates.csv`` (atomically)."""
    from ..atomic import save_csv

    return save_csv(Path(out) / "duplicates.csv", dups.table(items))


def write_insight(out, items, vectors, ok, query_rows, neighbor_rows, config: InsightConfig | None = None):
    """Duplicates, suspects and the map of a finished search, written into ``out``.

    Returns (files {name: path}, summary for metrics.json ``insight`` — duplicates, suspects, map —, the
    :class:`Duplicates`).
    """
    import time

    import pandas as pd

    from ..atomic import save_csv, save_figure
    from .map import layout, map_figure, resolve_method
    from .suspects import knn_suspects

    config = config or InsightConfig()
    out = Path(out)
    ok = np.asarray(ok, dtype=bool)
    timing = {}
    t0 = time.perf_counter()
    dups = embedding_duplicates(items, vectors, ok, query_rows, neighbor_rows, config.threshold, config.min_score)
    files = {"duplicates.csv": write_duplicates(out, items, dups)}
    timing["duplicates"] = round(time.perf_counter() - t0, 4)

    labels = items["label"].astype(str).to_numpy()
    rows, own, other, share = knn_suspects(labels, query_rows, neighbor_rows)
    rel = items["relpath"].astype(str).to_numpy()
    files["suspects.csv"] = save_csv(out / "suspects.csv", pd.DataFrame(
        {"id": rows, "relpath": rel[rows], "label": labels[rows], "own_share": own, "neighbor_label": other,
         "neighbor_share": share}))

    t0 = time.perf_counter()
    usable = np.flatnonzero(ok)
    method = resolve_method(len(usable), config.map_method)
    xy = layout(vectors[usable], method=method, seed=config.seed)
    files["map.csv"] = save_csv(out / "map.csv", pd.DataFrame({"id": usable, "x": xy[:, 0], "y": xy[:, 1]}))
    timing["map_layout"] = round(time.perf_counter() - t0, 4)
    if config.draw_map:
        t0 = time.perf_counter()
        suspect = np.zeros(len(items), bool)
        suspect[rows] = True
        fig = map_figure(xy, items["path"].astype(str).to_numpy()[usable], labels[usable], suspect[usable],
                         dups.cluster[usable] >= 0, title=f"Embedding map ({method}, {len(usable)} photos)")
        files["map.png"] = save_figure(out / "map.png", fig)
        timing["map_figure"] = round(time.perf_counter() - t0, 4)
    log.info("insight stage: %s", ", ".join(f"{k} {v:.2f}s" for k, v in timing.items()))
    summary = {"duplicates": dups.summary, "suspects": int(len(rows)), "map": {"method": method, "n": int(len(usable))}}
    return files, summary, dups


@dataclass
class DuplicatesConfig:
    """Options of ``fashion duplicates``. threshold None: the method's calibrated default
    (``DEFAULT_THRESHOLD`` cosine distance, or ``DEFAULT_PHASH_THRESHOLD`` Hamming bits)."""

    input: str | None = default("dataset_input")
    output_dir: str | None = None
    method: str = default("duplicates_method")
    threshold: float | None = default("duplicates_threshold")
    k: int = default("k")
    model: str | None = default("model")
    arch: str = default("duplicates_arch")  # the bare backbone DEFAULT_THRESHOLD is calibrated on
    format: str = default("format")
    cache_dir: str | None = default("cache_dir")
    batch_size: int = default("batch_size")


@dataclass
class DuplicatesResult:
    """What :func:`run_duplicates` found and wrote."""

    output_dir: Path
    duplicates: Duplicates
    files: dict = field(default_factory=dict)

    def summary(self) -> str:
        s = self.duplicates.summary
        leaks = s["leaks"]
        return "\n".join([
            f"{s['n_pairs']} duplicate pairs ({s['exact_pairs']} byte-identical) in {s['n_clusters']} clusters "
            f"({s['method']}, threshold {s['threshold']:g})",
            f"{s['cross_split_pairs']} pairs cross splits, {s['label_disagreeing_pairs']} have different labels; "
            f"test photos with a copy in train: {leaks['test_in_train']}, in valid: {leaks['test_in_valid']}",
            f"pairs: {self.files.get('duplicates.csv')}"])


def run_duplicates(config: DuplicatesConfig) -> DuplicatesResult:
    """``fashion duplicates``: load, embed (or hash), top-K search, duplicates; writes items.csv,
    duplicates.csv and duplicates.json into ``output_dir``."""
    from .. import datasets, sample
    from ..atomic import ensure_dir, save_csv, write_json
    from .duplicates import METHODS
    from .phash import DEFAULT_PHASH_THRESHOLD, hamming_neighbors, phash_bits

    if config.output_dir is None:
        raise ValueError("output_dir is required")
    if config.method not in METHODS:
        raise ValueError(f"unknown duplicates method {config.method!r}; valid: {', '.join(METHODS)}")
    out = ensure_dir(config.output_dir)
    root = config.input if config.input is not None else sample.sample_root()
    items = datasets.load(root, format=config.format, missing="skip").frame
    paths = items["path"].astype(str).tolist()
    if config.method == "phash":
        threshold = DEFAULT_PHASH_THRESHOLD if config.threshold is None else config.threshold
        bits, ok = phash_bits(paths)
        query_rows, neighbor_rows, dist = hamming_neighbors(bits, ok, k=config.k)
        dups = find_duplicates(items, query_rows, neighbor_rows, dist, threshold, file_digests(paths, ok), "phash")
    else:
        from ..embedding import Embedder, EmbedderSpec
        from .duplicates import self_neighbors

        threshold = DEFAULT_THRESHOLD if config.threshold is None else config.threshold
        embedder = Embedder.from_spec(EmbedderSpec.of(config))
        emb = embedder.embed(items, batch_size=config.batch_size, cache_dir=config.cache_dir or out / "cache")
        rows, neighbors = self_neighbors(emb.vectors, emb.ok, config.k)
        if neighbors.shape[1] < 1:
            raise ValueError(f"not enough usable images to compare: {len(rows)}")
        dups = embedding_duplicates(items, emb.vectors, emb.ok, rows, neighbors, threshold)
    table = items[["path", "relpath", "label", "split"]].copy()
    table.insert(0, "index", np.arange(len(items)))
    files = {"items.csv": save_csv(out / "items.csv", table), "duplicates.csv": write_duplicates(out, items, dups),
             "duplicates.json": write_json(out / "duplicates.json", dups.summary)}
    return DuplicatesResult(out, dups, files)


def find_leaks(items, split: str = "test", against=("train", "valid"), k: int = 5,
               threshold: float = DEFAULT_THRESHOLD, embedder=None, cache_dir=None) -> np.ndarray:
    """Bool (n,) over ``items`` rows: photos of ``split`` with a (near-)copy in an ``against`` split.

    Embeds those photos with ``embedder`` (default: the pretrained backbone measure_sim uses, on which the
    threshold is calibrated), searches each ``split`` photo's top-``k`` among the ``against`` photos,
    then applies the duplicates stage (file hash, threshold, thumbnail check).
    """
    from ..embedding import Embedder
    from ..neighbors import build_index
    from .duplicates import leaked_rows

    splits = items["split"].astype(str).to_numpy()
    query, gallery = np.flatnonzero(splits == split), np.flatnonzero(np.isin(splits, list(against)))
    out = np.zeros(len(items), dtype=bool)
    if len(query) == 0 or len(gallery) == 0:
        return out
    rows = np.concatenate([query, gallery])
    sub = items.iloc[rows].reset_index(drop=True)
    emb = (embedder or Embedder.create()).embed(sub, cache_dir=cache_dir, progress=False)
    q = np.flatnonzero(emb.ok[: len(query)])
    g = len(query) + np.flatnonzero(emb.ok[len(query):])
    if len(q) == 0 or len(g) == 0:
        return out
    kk = min(k, len(g))
    _, idx = build_index("auto", metric="cosine").fit(emb.vectors[g]).kneighbors(emb.vectors[q], n_neighbors=kk)
    dups = embedding_duplicates(sub, emb.vectors, emb.ok, q, g[np.asarray(idx)], threshold)
    mask = leaked_rows(dups.a, dups.b, sub["split"].astype(str).to_numpy(), split, against)
    out[rows[mask]] = True
    return out


def leak_report(train, valid, test, targets, predictions, test_split: str = "test") -> dict:
    """``fashion train``'s leak-aware test score: how many ``test`` photos have a copy in train (or valid)
    and the accuracy without them (:func:`fashion.insight.leaks.leak_aware_accuracy`).

    train, valid, test: item tables (``path`` column); targets, predictions: int (len(test),). When the
    evaluated split is valid itself (``test_split="valid"``), copies are looked for in train only.
    """
    import pandas as pd

    from .leaks import leak_aware_accuracy

    frames = [train.assign(split="train"), test.assign(split="eval")]
    against = ["train"]
    if test_split != "valid":
        frames.insert(1, valid.assign(split="valid"))
        against.append("valid")
    items = pd.concat([f[["path"]].assign(split=f["split"], label="", relpath=f["path"].astype(str))
                       for f in frames], ignore_index=True)
    leaked = find_leaks(items, split="eval", against=tuple(against))[-len(test):] if len(test) else np.zeros(0, bool)
    result = leak_aware_accuracy(np.asarray(targets), np.asarray(predictions), leaked)
    result.update(against=against, threshold=DEFAULT_THRESHOLD, method="embedding + thumbnail check "
                  "(fashion.insight, pretrained efficientnet_lite0 body)")
    log.info("%d of %d %s photos have a copy in %s; accuracy %.4f, without them %s", result["n_leaked"],
             result["n"], test_split, "/".join(against), result["accuracy"],
             "n/a" if result["accuracy_without_leaks"] is None else f"{result['accuracy_without_leaks']:.4f}")
    return result
