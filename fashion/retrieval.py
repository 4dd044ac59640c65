"""``measure_sim.py`` / ``fashion neighbors``: embed a dataset, find every query's top-K, measure, report.

Stages (each timed and logged): load the item table, embed (cached), build the index, search and
compute metrics, report (files, grids, gallery), insight. The output directory is a run of format 2
(:mod:`fashion.run.layout`: items/ and neighbors/ parquet keyed on item ids, embeddings.npy, index.npz
with its ids, metrics.json, run.json, insight tables, grids/, index.html, manifest.json), written by
:mod:`fashion.run.writer` and opened by :func:`fashion.run.reader.open_run`; ``cache/`` holds the
embedding cache (reused by a rerun into the same directory; not in the manifest). Above
``MeasureConfig.shard_above`` items the same layout comes from the sharded stages
(:mod:`fashion.scale.measure`).

The run is a transaction (:mod:`fashion.rundir`): it is written into a staging directory beside
``output_dir`` and swapped into place in one step at the end, so a failed or killed rerun leaves the
previous complete run as it was, and readers verify the manifest before trusting the files.

Modes: all-pairs over every usable item (each query leaves itself out); ``query_split`` → queries from
that split, gallery = the other items; In-shop roots default to query vs gallery by their split column,
and wherever items have an ``item_id`` column recall@k by item id is reported too.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, DatasetError
from .options import default  # every option's default, defined once
from .provenance import command_line, created, git_revision, versions
from .runresult import RunResult, Stopwatch

log = logging.getLogger(__name__)

RECALL_KS = (1, 5, 10, 20)


@dataclass
class MeasureConfig:
    """Options of a retrieval run (the CLI maps its flags one-to-one onto these fields).

    input: dataset root (None = the bundled sample); output_dir: where the files go;
    model: trained model dir; arch: a bare ImageNet backbone instead; neither: the bundled clothing
    model (``fashion.embedding.spec.resolve_model``, applied on construction); k: neighbours per query;
    index/metric: fashion.neighbors backend and distance; size: image px (None = model's);
    format: auto/deepfashion/inshop/folder; split: keep only these splits ("train,valid" allowed);
    query_split: queries from this split, gallery = the rest; limit: a seeded random subset of this
    many items (row order kept); grids: how many grids to draw; layer: "body", "head" or "auto" (head for a trained model, else body);
    num_workers: DataLoader workers (None = automatic); seed: picks the limit subset and the grids;
    cache_dir: embedding cache (None = ``output_dir/cache``; share one between runs of the same model);
    runtime: embedding runtime, one of ``fashion.embedding.RUNTIMES`` ("auto", "torch", "openvino",
        "openvino-int8").
    insight: the insight stage (duplicates.csv, suspects.csv, map.csv, map.png; ``fashion.insight``);
    duplicate_threshold: its candidate cosine distance; map_method: its layout (auto, pca, umap, tsne).
    shard_above: runs of at least this many items use the sharded, resumable stages (fashion.scale:
        embedding shards, the on-disk IVF-PQ index); the run's layout is the same either way.
    metadata: shop metadata file (CSV or parquet) joined onto the item table on relpath or id
        (:mod:`fashion.catalog.metadata`); its typed columns land in the run's items.
    """

    input: str | None = default("input")
    output_dir: str | None = None
    model: str | None = default("model")
    arch: str | None = default("arch")
    k: int = default("k")
    index: str = default("index")
    metric: str = default("metric")
    size: int | None = default("size")
    batch_size: int = default("batch_size")
    format: str = default("format")
    split: str | None = default("split")
    query_split: str | None = default("query_split")
    limit: int | None = default("limit")
    grids: int = default("grids")
    layer: str = default("layer")
    num_workers: int | None = default("num_workers")
    seed: int = default("seed")
    cache_dir: str | None = default("cache_dir")
    runtime: str = default("runtime")
    insight: bool = default("insight")
    duplicate_threshold: float = default("duplicate_threshold")
    map_method: str = default("map_method")
    shard_above: int = default("shard_above")
    metadata: str | None = default("metadata")

    def __post_init__(self):
        from .embedding.spec import resolve_model

        self.model, self.arch = resolve_model(self.model, self.arch)


# ------------------------------------------------------------------------------------------- stages


def _splits(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from .datasets import split_name

    names = [split_name(s) for s in str(text).split(",") if s.strip()]
    return names or None


def load_items(config: MeasureConfig):
    """The run's :class:`~fashion.datasets.ItemTable`: loaded, split-filtered and limited; index 0..n-1."""
    from . import datasets, sample

    root = config.input if config.input is not None else sample.sample_root()
    table = datasets.load(root, format=config.format, missing="skip")
    wanted = _splits(config.split)
    if wanted:
        available = sorted(set(table.frame["split"]))
        table = table.take(np.flatnonzero(table.frame["split"].isin(wanted).to_numpy()))
        if not len(table):
            raise ConfigError(f"split {config.split!r} matches no item; splits in {root}: {available}")
    if config.limit is not None and config.limit < len(table):
        if config.limit < 2:
            raise ConfigError(f"limit must be at least 2, got {config.limit}")
        rng = np.random.default_rng(config.seed)
        table = table.take(np.sort(rng.choice(len(table), size=config.limit, replace=False)))
    return table


def assign_roles(table, ok: np.ndarray, config: MeasureConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """(query mask, gallery mask, mode) over the item rows; skipped rows are in neither."""
    items = table.frame
    splits = items["split"].to_numpy()
    query_split = _splits(config.query_split)
    is_inshop = table.format == "inshop" or "item_id" in items.columns
    if query_split is None and is_inshop and {"query", "gallery"} <= set(splits):
        query, gallery, mode = splits == "query", splits == "gallery", "query vs gallery (In-shop)"
    elif query_split is not None:
        query = np.isin(splits, query_split)
        if not query.any():
            raise ConfigError(f"query split {config.query_split!r} matches no item; splits: {sorted(set(splits))}")
        gallery = ~query
        if is_inshop and "gallery" in set(splits):
            gallery = splits == "gallery"
        mode = f"queries {','.join(query_split)} vs gallery of the rest"
    else:
        query = gallery = np.ones(len(items), dtype=bool)
        mode = "all-pairs"
    return query & ok, gallery & ok, mode


def check_model_output(emb, embedder, paths) -> None:
    """Refuse a model whose features are unusable for every image, naming the model, not the images.

    Non-finite (NaN/infinity: NaN weights, a std of 0 in model.json) or all-zero features for every
    readable image, or one and the same vector for all of them while the files (``paths``, one per
    row) differ (a collapsed model): a :class:`~fashion.errors.FashionError` naming the model file.
    """
    from .embedding import NO_FEATURES, NON_FINITE
    from .errors import FashionError

    where = (f"the model in {Path(embedder.model_dir) / 'model.json'}" if embedder.model_dir
             else f"the backbone {embedder.name} ({embedder.source or 'pretrained'})")
    reasons = [r for _, r in emb.failures]
    featureless = sum(r in (NO_FEATURES, NON_FINITE) for r in reasons)
    if not emb.ok.any() and featureless:
        norm = f"(mean {list(embedder.mean)}, std {list(embedder.std)})"
        if NON_FINITE in reasons:
            raise FashionError(f"{where} produces non-finite (NaN or infinite) features for all {featureless} "
                               f"readable images: its weights or its normalisation {norm} are broken")
        raise FashionError(f"{where} produces all-zero features for all {featureless} readable images: blank "
                           f"images, or broken weights or normalisation {norm}")
    good = np.flatnonzero(emb.ok)
    if len(good) >= 2:
        first = emb.vectors[good[0]]
        spread = max(float(np.abs(emb.vectors[rows] - first).max()) for rows in np.array_split(good, max(1, len(good) // 4096)))
        if spread < 1e-6 and _distinct_files(paths, good):
            raise FashionError(f"{where} produces the same vector for every image ({len(good)} images): "
                               "a collapsed or untrained model; its neighbours would be arbitrary")


def _distinct_files(paths, rows: np.ndarray, most: int = 64) -> bool:
    """Whether the images behind ``rows`` are not all one and the same file content (copies of one
    photo rightly share a vector). Only run when every vector is the same, so hashing is rare."""
    from .rundir import file_sha256

    seen = set()
    for i in rows[:most]:
        try:
            seen.add(file_sha256(paths[i]))
        except OSError:
            continue
        if len(seen) > 1:
            return True
    return False


def _fit_index(vectors: np.ndarray, query: np.ndarray, gallery: np.ndarray, config: MeasureConfig):
    """Fit the index on the gallery rows; returns (index, k, all_pairs). k is clamped to what exists."""
    from .neighbors import auto_index_name, build_index

    n_gallery, n_query = int(gallery.sum()), int(query.sum())
    all_pairs = bool(np.array_equal(query, gallery))
    possible = n_gallery - (1 if all_pairs else 0)
    if possible < 1 or n_query == 0:
        raise DatasetError(f"not enough usable images to search: {n_query} queries, {n_gallery} gallery images")
    k = min(config.k, possible)
    if k < config.k:
        log.warning("k=%d is more than the %d possible neighbours; using k=%d", config.k, possible, k)
    name = auto_index_name(n_gallery) if config.index == "auto" else config.index  # auto: by size
    index = build_index(name, metric=config.metric).fit(vectors[gallery])
    return index, k, all_pairs


def _query(index, vectors, query: np.ndarray, gallery: np.ndarray, k: int, all_pairs: bool):
    """(query_rows (q,), distances float32 (q, k), neighbor item rows (q, k)) in rank order."""
    query_rows, gallery_rows = np.flatnonzero(query), np.flatnonzero(gallery)
    dist, idx = index.kneighbors(None if all_pairs else vectors[query_rows], n_neighbors=k)
    return query_rows, np.asarray(dist, dtype=np.float32), gallery_rows[np.asarray(idx)]


def compute_metrics(items, query_rows: np.ndarray, neighbor_rows: np.ndarray, k: int) -> dict:
    """precision@k, mAP@k, per-label precision@k (and recall@k by item id) of a neighbours table.

    query_rows: (q,) item rows; neighbor_rows: (q, k) item rows, rank order.
    """
    from . import metrics as M

    labels = items["label"].astype(str).to_numpy()
    q_labels, n_labels = labels[query_rows], labels[neighbor_rows]
    per_label = M.per_label_precision(q_labels, n_labels, k)
    counts = {str(lab): int(c) for lab, c in zip(*np.unique(q_labels, return_counts=True))}
    out = {
        "precision_at_k": float(M.precision_at_k(q_labels, n_labels, k)),
        "map_at_k": float(M.map_at_k(q_labels, n_labels, k)),
        "per_label_precision": {str(lab): float(v) for lab, v in sorted(per_label.items())},
        "per_label_queries": counts,
    }
    if "item_id" in items.columns:
        ids = items["item_id"].astype(str).to_numpy()
        ks = tuple(x for x in RECALL_KS if x <= k) or (k,)
        recall = M.recall_at_k(ids[query_rows], ids[neighbor_rows], ks=ks)
        out["recall_at_k"] = {str(x): float(v) for x, v in sorted(recall.items())}
    return out


# ------------------------------------------------------------------------------------------- run


def run(config: MeasureConfig) -> RunResult:
    """Run the whole retrieval measurement; its files appear in ``output_dir`` together, in one step."""
    from . import rundir
    from .run import layout

    if config.output_dir is None:
        raise ConfigError("output_dir is required")
    if config.k < 1:
        raise ConfigError(f"k must be positive, got {config.k}")
    if config.size is not None:
        from .runfiles import check_size

        check_size(config.size, "size")
    # the run is staged beside output_dir and swapped in at the end: a failed or killed rerun leaves
    # the previous complete run readable (fashion.rundir); the cache stays in output_dir throughout
    with rundir.transaction(config.output_dir, kind=layout.RUN_KIND) as txn:
        result = _run(config, txn)
    files = {name: txn.final(path) for name, path in result.files.items()}
    return RunResult(txn.target, result.metrics, files)


def _run(config: MeasureConfig, txn) -> RunResult:
    from .atomic import write_json
    from .embedding import Embedder, EmbedderSpec
    from .insight.page import run_insight
    from .report import draw_grids, pick_grid_queries, write_gallery
    from .run import writer

    out = txn.path
    watch = Stopwatch()
    from .scale import measure as scaled  # above a size threshold: the sharded stages (fashion.scale)

    with watch.stage("load"):
        table = load_items(config)
        metadata = None
        if config.metadata:  # read and joined before anything is embedded: a bad file fails at once
            from .catalog.metadata import join_metadata, read_metadata

            metadata = read_metadata(config.metadata)
            joined = join_metadata(table.frame, metadata)
        items = table.frame
        if scaled.applies(config, items):
            result = scaled.run(config, table, out, txn.run_id, cache=config.cache_dir or txn.target / "cache")
            if metadata is not None:  # the sealed item table gains the columns, as the one-machine path's
                from .catalog.metadata import rewrite_items

                rewrite_items(out, metadata)
            return result
        if metadata is not None:
            items = joined
        embedder = Embedder.from_spec(EmbedderSpec.of(config))
    with watch.stage("embed"):
        emb = embedder.embed(items, batch_size=config.batch_size, cache_dir=config.cache_dir or txn.target / "cache",
                             num_workers=config.num_workers)
    check_model_output(emb, embedder, items["path"].astype(str).to_numpy())
    query, gallery, mode = assign_roles(table, emb.ok, config)
    with watch.stage("index"):
        index, k, all_pairs = _fit_index(emb.vectors, query, gallery, config)
    with watch.stage("search"):
        query_rows, dist, neighbor_rows = _query(index, emb.vectors, query, gallery, k, all_pairs)
        quality = compute_metrics(items, query_rows, neighbor_rows, k)

    missing, refused = table.missing, table.refused  # refused: by the file gate at load time
    skipped = [{"path": p, "reason": r} for p, r in emb.failures]
    skipped += [{"path": rel, "reason": "file not found (listed in the annotations)"} for rel in missing]
    skipped += [{"path": rel, "reason": reason} for rel, reason in refused]
    metrics = {
        "k": k, "k_requested": config.k, "metric": config.metric, "index": index.name, "mode": mode,
        "layer": embedder.layer, "precision_at_k": quality.pop("precision_at_k"), "map_at_k": quality.pop("map_at_k"),
        "n_images": len(items) + len(missing) + len(refused), "n_ok": int(emb.ok.sum()), "n_skipped": len(skipped),
        "n_queries": int(len(query_rows)), "n_gallery": int(gallery.sum()),
        "n_embedded": emb.n_computed, "n_from_cache": emb.n_cached,
        **quality, "timing": watch.timing, "skipped": skipped,
    }
    with watch.stage("report"):
        failed = dict(emb.failures)
        reasons = [failed.get(p, "") for p in items["path"].astype(str)]
        from .pipeline.items import add_item_columns

        item_table = writer.item_table(add_item_columns(items, emb.ok), emb.ok, reasons,
                                       writer.roles(emb.ok, query, gallery))
        files = {f"items/{p.name}": p for p in writer.write_items(out, item_table)}
        files["embeddings.npy"] = writer.write_embeddings(out, emb.vectors)
        files.update({f"neighbors/{p.name}": p for p in writer.write_neighbors(out, query_rows, dist, neighbor_rows)})
        files["index.npz"], ref = writer.write_index_npz(out, index, np.flatnonzero(gallery))
        files["run.json"] = writer.write_run_json(out, txn.run_id, ref, len(items), _run_info(config, table, embedder))
        files["metrics.json"] = out / "metrics.json"
        grids = draw_grids(out, items, query_rows, neighbor_rows, dist,
                            pick_grid_queries(query_rows, config.grids, config.seed))
    sections = []
    if config.insight:
        with watch.stage("insight"):
            sections = run_insight(out, items, emb.vectors, emb.ok, query_rows, neighbor_rows,
                                   insight_config(config), metrics, files)
    with watch.stage("gallery"):
        title = f"Similar-clothes search: {Path(table.root).name}"
        files["index.html"] = write_gallery(out, metrics, grids, list(files.values()), title=title,
                                            sections=sections)
    metrics["timing"] = {**watch.timing, "total": watch.total()}
    write_json(out / "metrics.json", metrics)
    files.update({f"grids/{path.name}": path for path, _ in grids})
    # the closing summary is RunResult.summary(), which the entry points print: logged here at debug only
    log.debug("precision@%d = %.4f over %d queries (%s); %d images, %d skipped; time: %s", k,
             metrics["precision_at_k"], metrics["n_queries"], mode, metrics["n_images"], metrics["n_skipped"],
             ", ".join(f"{s} {t:.2f}s" for s, t in metrics["timing"].items()))
    return RunResult(out, metrics, files)


def insight_config(config: MeasureConfig):
    """The insight stage's options of a retrieval run."""
    from .insight.stage import InsightConfig

    return InsightConfig(threshold=config.duplicate_threshold, map_method=config.map_method, seed=config.seed)


def _run_info(config: MeasureConfig, table, embedder) -> dict:
    arguments = asdict(config)
    arguments["input"] = table.root
    return {
        "arguments": arguments,
        "command": command_line(),
        "dataset": {"root": table.root, "format": table.format, "n_items": len(table)},
        "backbone": embedder.name,
        "model_checksum": embedder.checksum,
        "embedder": embedder.describe(),
        "versions": versions(),
        "git": git_revision(),
        "created": created(),
    }
