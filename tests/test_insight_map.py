"""fashion.insight.map and .suspects: layout shape/determinism, method choice, the figure; kNN suspects."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from fashion.insight.map import AUTO_UMAP_MIN, layout, map_figure, mosaic, resolve_method
from fashion.insight.suspects import knn_suspects


def _vectors(n=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d)) * 5
    return (centres[np.arange(n) % 3] + rng.normal(size=(n, d))).astype(np.float32)


def test_layout_one_row_per_point_and_deterministic():
    x = _vectors()
    a, b = layout(x, seed=1), layout(x, seed=1)
    assert a.shape == (60, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b)


def test_layout_tiny_inputs():
    assert layout(np.zeros((0, 4))).shape == (0, 2)
    assert layout(np.ones((2, 4))).shape == (2, 2)
    with pytest.raises(ValueError):
        layout(np.ones(4))


def test_auto_method_is_pca_for_small_sets():
    assert resolve_method(240) == "pca"
    assert resolve_method(AUTO_UMAP_MIN) in ("umap", "tsne")
    with pytest.raises(ValueError, match="valid"):
        resolve_method(10, "mds")


@pytest.mark.slow  # scikit-learn t-SNE: ~30 s on the shared cores
def test_tsne_layout_separates_clusters():
    xy = layout(_vectors(), method="tsne")
    labels = np.arange(60) % 3
    centres = np.stack([xy[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(xy[labels == c] - centres[c], axis=1).mean() for c in range(3))
    assert min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i)) > spread


@pytest.mark.slow  # numba compiles UMAP's kernels in every new process
def test_umap_layout_when_installed():
    pytest.importorskip("umap")
    xy = layout(_vectors(), method="umap")
    assert xy.shape == (60, 2) and np.isfinite(xy).all()


def test_figure_and_mosaic(tmp_path):
    paths = []
    for i in range(12):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (30, 40), (20 * i, 100, 200)).save(p)
        paths.append(str(p))
    paths[3] = str(tmp_path / "missing.png")  # an unreadable photo leaves its cell empty, no error
    xy = layout(_vectors(12))
    image = mosaic(xy, paths, grid=4, tile=20, marks={0: (255, 0, 0)})
    assert image.size == (80, 80)
    fig = map_figure(xy, paths, np.array(["a", "b", "c"])[np.arange(12) % 3],
                     suspects=np.arange(12) == 1, duplicates=np.arange(12) < 2, grid=4)
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "duplicate (2)" in texts and "suspect label (1)" in texts


def test_knn_suspects():
    labels = np.array(["a"] * 5 + ["b"])
    q = np.arange(6)
    nb = np.array([[1, 2], [0, 2], [0, 1], [0, 1], [0, 5], [0, 1]])
    rows, own, other, share = knn_suspects(labels, q, nb)
    assert rows.tolist() == [5] and other.tolist() == ["a"] and share.tolist() == [1.0]
    rows, *_ = knn_suspects(labels, q, nb[:, :0])
    assert len(rows) == 0


def test_pca_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    from fashion.insight.map import _pca

    x = _vectors(200, 12)
    ours = _pca(x, 3, 0)
    ref = PCA(3).fit_transform(x)
    for j in range(3):
        assert abs(np.corrcoef(ours[:, j], ref[:, j])[0, 1]) > 0.9999
