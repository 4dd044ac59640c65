"""fashion.retrieval end to end on tiny image-folder, DeepFashion and In-shop roots.

The network is the real pretrained EfficientNet-Lite0 at 64 px (weights ship in a pip package), the
images are solid colours with noise, one colour per class, so the numbers are meaningful but cheap.
metrics.json is recomputed from the neighbour table with plain numpy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashion.retrieval import MeasureConfig, RunResult, run

from factories import (CORRUPT_JPEG, make_deepfashion, make_folder, make_inshop, noisy_jpeg, read_run_items,
                       read_run_neighbors)

COLORS = {"shirt": (200, 30, 30), "pants": (30, 160, 40), "dress": (40, 60, 200)}
REPO = Path(__file__).resolve().parents[1]


def _picture(path: Path, color, seed: int) -> None:
    noisy_jpeg(path, color, seed)


def make_folder_root(root: Path, per_class: int = 5) -> Path:
    """ROOT/<class>/*.jpg plus one corrupt file."""
    make_folder(root, COLORS, per_class)
    (root / "dress" / "zz_corrupt.jpg").write_bytes(CORRUPT_JPEG)
    return root


def make_deepfashion_root(root: Path, per_class: int = 6) -> Path:
    """img/<Item>/img_N.jpg with Anno/ (categories, labels, bboxes) and Eval/ partition."""
    cats = list(COLORS)
    rows, bbox_rows = [], []
    for c, label in enumerate(cats):
        for i in range(per_class):
            name = f"img/{label.title()}_Item_{i % 2}/img_{c * per_class + i + 1:08d}.jpg"
            _picture(root / name, COLORS[label], seed=10 * c + i)
            rows.append((name, c + 1, ["train", "train", "val", "train", "test", "test"][i % 6]))
            bbox_rows.append(f"{name}  2 2 40 60")
    categories = [(label, 1 if label == "shirt" else 2) for label in cats]
    return make_deepfashion(root, rows, categories, bbox=bbox_rows, image=None)


def make_inshop_root(root: Path, items_per_label: int = 2) -> Path:
    """img/<GENDER>/<Category>/id_N/*.jpg with Eval/list_eval_partition.txt (train/query/gallery)."""
    rows = []
    n = 0
    for c, (label, color) in enumerate(COLORS.items()):
        for j in range(items_per_label):
            n += 1
            item = f"id_{n:08d}"
            shade = np.array(color) * (0.55 + 0.45 * j)  # items of a label differ in brightness
            for v, split in enumerate(["query", "gallery", "gallery", "train"]):
                name = f"img/WOMEN/{label.title()}/{item}/{v:02d}_front.jpg"
                _picture(root / name, shade, seed=1000 * n + v)
                rows.append(f"{name}  {item}  {split}")
    return make_inshop(root, rows, in_eval=True, image=None)


def config(root, out, **kw) -> MeasureConfig:
    kw.setdefault("k", 3)
    kw.setdefault("grids", 3)
    return MeasureConfig(input=os.fspath(root), output_dir=os.fspath(out), size=64, batch_size=8, num_workers=0, **kw)


def labelled_neighbors(out: Path):
    """The run's neighbour table joined with its items: query, rank, neighbor, distance, query_label,
    neighbor_label, same_label (and same_item where items have an item_id)."""
    items = read_run_items(out)
    nb = read_run_neighbors(out).rename(columns={"query_id": "query", "neighbor_id": "neighbor"})
    labels = items["label"].to_numpy()
    nb["query_label"], nb["neighbor_label"] = labels[nb["query"]], labels[nb["neighbor"]]
    nb["same_label"] = nb["query_label"] == nb["neighbor_label"]
    if "item_id" in items:
        ids = items["item_id"].to_numpy()
        nb["same_item"] = ids[nb["query"]] == ids[nb["neighbor"]]
    return nb


def recompute(out: Path) -> dict:
    """precision@k, per-label precision and recall@k from the neighbour table alone (plain numpy/pandas)."""
    nb = labelled_neighbors(out)
    got = {"precision_at_k": nb["same_label"].mean(),
           "per_label_precision": nb.groupby("query_label")["same_label"].mean().to_dict()}
    if "same_item" in nb:
        hits = nb.sort_values(["query", "rank"]).groupby("query")["same_item"]
        got["recall_at_k"] = {str(k): float((hits.apply(lambda s, k=k: s.iloc[:k].any())).mean())
                              for k in (1, 5, 10, 20) if k <= nb["rank"].max()}
    # mAP@k: mean over queries of (sum over hits of precision at that rank) / min(k, relevant in top k)
    aps = []
    for _, group in nb.sort_values(["query", "rank"]).groupby("query"):
        hits = group["same_label"].to_numpy(bool)
        prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append((prec * hits).sum() / hits.sum() if hits.any() else 0.0)
    got["map_at_k"] = float(np.mean(aps))
    return got


def check_metrics_agree(out: Path, metrics: dict) -> None:
    got = recompute(out)
    assert metrics["precision_at_k"] == pytest.approx(got["precision_at_k"], abs=1e-9)
    assert metrics["per_label_precision"] == pytest.approx(got["per_label_precision"], abs=1e-9)
    if "recall_at_k" in got:
        assert metrics["recall_at_k"] == pytest.approx(got["recall_at_k"], abs=1e-9)
    assert metrics["map_at_k"] == pytest.approx(got["map_at_k"], abs=1e-6)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("folder")
    root = make_folder_root(base / "root")
    result = run(config(root, base / "out"))
    return root, base / "out", result


def test_folder_run_writes_every_file(folder_run):
    root, out, result = folder_run
    assert isinstance(result, RunResult)
    for name in ("items/part-000000.parquet", "embeddings.npy", "neighbors/part-000000.parquet", "metrics.json",
                 "run.json", "index.html", "index.npz"):
        assert (out / name).is_file(), name
    assert len(list((out / "grids").glob("*.png"))) == 3
    assert not list(out.rglob("*.tmp"))
    items = read_run_items(out)
    assert list(items.columns[:5]) == ["id", "path", "relpath", "label", "split"]
    assert len(items) == 16 and items["ok"].sum() == 15
    emb = np.load(out / "embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape[0] == 16
    assert np.all(emb[~items["ok"].to_numpy(bool)] == 0)
    info = json.loads((out / "run.json").read_text())
    assert info["model_checksum"] == info["embedder"]["checksum"] and len(info["model_checksum"]) == 64
    assert {"python", "torch", "fastai", "timm", "faiss-cpu", "scikit-learn"} <= set(info["versions"])
    assert info["arguments"]["k"] == 3 and info["backbone"] == "efficientnet_lite0"
    assert "precision@3" in result.summary()


def test_folder_run_metrics_agree_with_the_neighbor_table(folder_run):
    _, out, result = folder_run
    metrics = json.loads((out / "metrics.json").read_text())
    check_metrics_agree(out, metrics)
    assert metrics["n_images"] == 16 and metrics["n_skipped"] == 1 and metrics["n_queries"] == 15
    assert metrics["skipped"][0]["path"].endswith("zz_corrupt.jpg") and metrics["skipped"][0]["reason"]
    assert set(metrics["timing"]) >= {"load", "embed", "index", "search", "colour", "report", "total"}
    assert metrics["precision_at_k"] > 0.9  # colours separate the classes
    assert metrics["mode"] == "all-pairs" and metrics == result.metrics


def test_folder_run_neighbors_are_consistent(folder_run):
    _, out, _ = folder_run
    nb = labelled_neighbors(out)
    items = read_run_items(out)
    emb = np.load(out / "embeddings.npy")
    assert (nb["query"] != nb["neighbor"]).all()  # all-pairs leaves each item itself out
    assert items.loc[nb["neighbor"], "ok"].all()
    cos = (emb[nb["query"]] * emb[nb["neighbor"]]).sum(1)
    np.testing.assert_allclose(nb["distance"], 1 - cos, atol=1e-5)
    assert (nb.groupby("query")["distance"].apply(lambda d: d.is_monotonic_increasing)).all()
    assert (nb["same_label"] == (nb["query_label"] == nb["neighbor_label"])).all()


def test_rerun_reuses_the_cache(folder_run, tmp_path):
    root, out, first = folder_run
    again = run(config(root, out))
    assert again.metrics["n_embedded"] == 0 and again.metrics["n_from_cache"] == 16
    assert again.metrics["precision_at_k"] == first.metrics["precision_at_k"]
    assert np.array_equal(np.load(out / "embeddings.npy"), np.load(out / "embeddings.npy"))


def test_deepfashion_query_split(tmp_path):
    root = make_deepfashion_root(tmp_path / "df")
    result = run(config(root, tmp_path / "out", query_split="test", index="exact"))
    m = result.metrics
    items = read_run_items(tmp_path / "out")
    nb = labelled_neighbors(tmp_path / "out")
    assert m["n_queries"] == (items["split"] == "test").sum() == 6 and m["n_gallery"] == 12
    assert (items.loc[nb["query"], "split"] == "test").all() and (items.loc[nb["neighbor"], "split"] != "test").all()
    assert "recall_at_k" not in m and m["index"] == "exact"
    check_metrics_agree(tmp_path / "out", m)


def test_inshop_query_vs_gallery_reports_recall(tmp_path):
    root = make_inshop_root(tmp_path / "inshop")
    result = run(config(root, tmp_path / "out", k=5))
    m = result.metrics
    assert m["mode"].startswith("query vs gallery") and m["n_queries"] == 6 and m["n_gallery"] == 12
    assert set(m["recall_at_k"]) == {"1", "5"} and m["recall_at_k"]["5"] > 0.5
    check_metrics_agree(tmp_path / "out", m)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "recall@k" in page


def test_split_limit_and_clamped_k(tmp_path):
    root = make_deepfashion_root(tmp_path / "df")
    result = run(config(root, tmp_path / "out", split="train", limit=5, k=10, grids=0))
    m = result.metrics
    assert m["n_images"] == 5 and m["k"] == 4 and m["k_requested"] == 10
    assert not list((tmp_path / "out").glob("grids/*.png"))
    with pytest.raises(ValueError, match="split"):
        run(config(root, tmp_path / "out2", split="nosuch"))


def test_measure_sim_script(tmp_path):
    root = make_folder_root(tmp_path / "root", per_class=3)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, os.fspath(REPO / "measure_sim.py"), "-i", os.fspath(root),
                           "--ouput_dir", os.fspath(out), "--size", "64", "-k", "2", "--grids", "1",
                           "--workers", "0", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").is_file() and (out / "metrics.json").is_file()
