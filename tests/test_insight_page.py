"""fashion.insight.page: cluster order (leaks first), the strips (no stale ones), the escaped HTML section."""

from __future__ import annotations

import pandas as pd

from fashion.insight.page import cluster_order, draw_clusters, insight_section
from fashion.sample import sample_root


def _table():
    return pd.DataFrame({"cluster": [0, 0, 1], "a": [0, 0, 3], "b": [1, 2, 4], "distance": [0.1, 0.2, 0.05],
                         "a_split": ["train", "train", "train"], "b_split": ["train", "train", "test"]})


def _items():
    paths = sorted((sample_root() / "img" / "Hat").glob("*.jpg"))[:5]
    return pd.DataFrame({"path": [str(p) for p in paths], "label": ["Hat", "Hat", "<b>x</b>", "Hat", "Hat"],
                         "split": ["train", "train", "train", "train", "test"]})


def test_leaking_clusters_come_first():
    assert cluster_order(_table()) == [1, 0]
    assert cluster_order(_table().iloc[:0]) == []


def test_strips_and_no_stale_files(tmp_path):
    strips = draw_clusters(tmp_path, _items(), _table())
    assert [p.name for p, _ in strips] == ["cluster_00001.png", "cluster_00000.png"]
    assert "test, train" in strips[0][1]
    strips = draw_clusters(tmp_path, _items(), _table(), top=1)
    assert sorted(p.name for p in (tmp_path / "duplicates").iterdir()) == ["cluster_00001.png"]


def test_section_escapes_names(tmp_path):
    strips = draw_clusters(tmp_path, _items(), _table())
    summary = {"duplicates": {"n_clusters": 2, "n_pairs": 3, "leaks": {"test_in_train": 1}}, "map": {"n": 5,
               "method": "pca"}, "suspects": 0}
    page = insight_section(tmp_path, summary, strips, tmp_path / "map.png")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert 'src="map.png"' in page and 'src="duplicates/cluster_00001.png"' in page
