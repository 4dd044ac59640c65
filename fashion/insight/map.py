"""A 2-D map of the embeddings: the layout (PCA first, then UMAP or t-SNE) and its figure.

Method ``auto`` (benchmarks/README.md, "Embedding map"): plain PCA to 2-D below ``AUTO_UMAP_MIN``
points — UMAP's numba compilation, paid in every new process, costs more than the whole quick start
on the 240-photo sample — and UMAP (umap-learn) on 50 PCA components from
there up, where its neighbourhood-preserving layout pays for the compile; scikit-learn t-SNE when
umap-learn is not installed and the set is small enough for it, PCA beyond.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MAP_METHODS = ("auto", "pca", "umap", "tsne")
AUTO_UMAP_MIN = 2000  # below: PCA (the compile would dominate); from here: UMAP
TSNE_MAX = 20000  # auto's fallback without umap-learn: scikit-learn t-SNE up to here, PCA beyond
PCA_DIMS = 50


def umap_available() -> bool:
    """True when umap-learn can be imported (checked without importing numba)."""
    from importlib.util import find_spec

    return find_spec("umap") is not None


def resolve_method(n: int, method: str = "auto") -> str:
    """The layout method ``auto`` picks for ``n`` points (others are returned unchanged).

    >>> resolve_method(240), resolve_method(100, "tsne")
    ('pca', 'tsne')
    """
    if method not in MAP_METHODS:
        raise ValueError(f"unknown map method {method!r}; valid: {', '.join(MAP_METHODS)}")
    if method != "auto":
        return method
    if n < AUTO_UMAP_MIN:
        return "pca"
    if umap_available():
        return "umap"
    return "tsne" if n <= TSNE_MAX else "pca"


def _pca(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """Projection of ``x`` (n, d) on its top ``dims`` principal axes (float32 (n, dims)), in numpy.

    From the d × d covariance, accumulated in row blocks, so memory stays O(d²) beyond the data and no
    scikit-learn import is paid (seconds on a loaded machine; the quick start needs none otherwise).
    Each axis' sign is fixed (largest loading positive), so the layout is deterministic; ``seed`` is unused.
    """
    n, d = x.shape
    dims = max(1, min(dims, n, d))
    mean = x.mean(0, dtype=np.float64)
    cov = np.zeros((d, d))
    for s in range(0, n, 8192):
        block = x[s:s + 8192].astype(np.float64) - mean
        cov += block.T @ block
    values, vectors = np.linalg.eigh(cov)
    axes = vectors[:, ::-1][:, :dims]
    axes *= np.where(axes[np.abs(axes).argmax(0), np.arange(dims)] < 0, -1.0, 1.0)
    return ((x - mean.astype(np.float32)) @ axes.astype(np.float32)).astype(np.float32)


def layout(vectors: np.ndarray, method: str = "auto", seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-D coordinates (float32 (n, 2)) of ``vectors`` (n, d); deterministic for a given ``seed``.

    PCA first (to 2-D for ``pca``; to 50 components before UMAP/t-SNE, for speed). Fewer than 3 points
    are placed on a line (x = row, y = 0).
    """
    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n, d), got shape {x.shape}")
    if n < 3:
        return np.stack([np.arange(n, dtype=np.float32), np.zeros(n, dtype=np.float32)], axis=1)
    chosen = resolve_method(n, method)
    if chosen == "pca":
        out = _pca(x, 2, seed)
        if out.shape[1] < 2:
            out = np.hstack([out, np.zeros((n, 2 - out.shape[1]))])
    elif chosen == "umap":
        import umap

        reduced = _pca(x, PCA_DIMS, seed)
        out = umap.UMAP(n_neighbors=min(n_neighbors, n - 1), n_components=2, random_state=seed,
                        n_jobs=1).fit_transform(reduced)
    else:
        from sklearn.manifold import TSNE

        reduced = _pca(x, PCA_DIMS, seed)
        out = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (n - 1) / 3)).fit_transform(reduced)
    log.info("map: %d points laid out by %s", n, chosen)
    return np.asarray(out, dtype=np.float32)


def _cells(xy: np.ndarray, grid: int) -> np.ndarray:
    """Cell (row, col) of each point on a grid × grid raster of the layout's bounding box."""
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    cell = np.clip(((xy - lo) / span * grid).astype(int), 0, grid - 1)
    return np.stack([grid - 1 - cell[:, 1], cell[:, 0]], axis=1)  # y up


def mosaic(xy: np.ndarray, paths: Sequence, grid: int = 24, tile: int = 40, marks: dict | None = None):
    """PIL image: per occupied cell of a grid × grid raster of the layout, the thumbnail of the point
    nearest the cell's centre. ``marks``: {row: (r, g, b)} frames those photos' tiles in that colour."""
    from PIL import Image, ImageDraw

    from ..errors import ImageError
    from ..images import open_image

    xy = np.asarray(xy, dtype=np.float64)
    canvas = Image.new("RGB", (grid * tile, grid * tile), "white")
    if len(xy) == 0:
        return canvas
    cells = _cells(xy, grid)
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    frac = (xy - lo) / span * grid
    off = np.hypot(frac[:, 0] - (np.floor(frac[:, 0]) + 0.5), frac[:, 1] - (np.floor(frac[:, 1]) + 0.5))
    key = cells[:, 0] * grid + cells[:, 1]
    order = np.lexsort((off, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    draw = ImageDraw.Draw(canvas)
    marks = marks or {}
    for row in order[first]:
        try:
            image = open_image(paths[row])
        except (ImageError, OSError, ValueError):
            continue
        image.thumbnail((tile - 4, tile - 4))
        r, c = cells[row]
        x0, y0 = c * tile, r * tile
        if int(row) in marks:
            draw.rectangle((x0, y0, x0 + tile - 1, y0 + tile - 1), fill=marks[int(row)])
        canvas.paste(image, (x0 + (tile - image.width) // 2, y0 + (tile - image.height) // 2))
    return canvas


def map_figure(xy: np.ndarray, paths: Sequence, labels: Sequence, suspects: np.ndarray | None = None,
               duplicates: np.ndarray | None = None, grid: int = 24, title: str = "Embedding map") -> "Figure":
    """Two panels: a thumbnail mosaic placed on the layout, and the points coloured by label with
    suspect labels (black ×) and duplicates (red ring) marked.

    xy: (n, 2) layout; paths, labels: n each; suspects, duplicates: bool (n,) masks (None: none).
    Returns a ``matplotlib.figure.Figure`` (no pyplot: nothing global, nothing shown).
    """
    from matplotlib.figure import Figure

    xy = np.asarray(xy, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    n = len(xy)
    suspects = np.zeros(n, bool) if suspects is None else np.asarray(suspects, bool)
    duplicates = np.zeros(n, bool) if duplicates is None else np.asarray(duplicates, bool)
    marks = {int(r): (220, 30, 30) for r in np.flatnonzero(duplicates)}
    marks.update({int(r): (20, 20, 20) for r in np.flatnonzero(suspects)})
    fig = Figure(figsize=(16, 8), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    left.imshow(mosaic(xy, paths, grid=grid, marks=marks))
    left.set_axis_off()
    left.set_title("photos on the map (one per cell; red frame: duplicate, black: suspect label)")
    classes = sorted(set(labels.tolist()))
    cmap = __import__("matplotlib").colormaps["tab20" if len(classes) > 10 else "tab10"]
    for i, name in enumerate(classes):
        sel = labels == name
        right.scatter(xy[sel, 0], xy[sel, 1], s=10 if n > 2000 else 18, color=cmap(i % cmap.N), label=name,
                      alpha=0.8, linewidths=0)
    if duplicates.any():
        right.scatter(xy[duplicates, 0], xy[duplicates, 1], s=70, facecolors="none", edgecolors="red",
                      linewidths=1.2, label=f"duplicate ({int(duplicates.sum())})")
    if suspects.any():
        right.scatter(xy[suspects, 0], xy[suspects, 1], s=30, marker="x", color="black", linewidths=1.0,
                      label=f"suspect label ({int(suspects.sum())})")
    right.set_xticks([])
    right.set_yticks([])
    right.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    right.set_title(f"{n} photos by label")
    fig.suptitle(title)
    return fig
