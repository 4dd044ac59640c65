"""Figures of a training run, returned as matplotlib ``Figure`` objects built without pyplot (no global
state, no display): LR finder, loss curves, confusion matrix, image grids (top losses, suspect labels)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def lr_find_figure(lrs: Sequence[float], losses: Sequence[float], suggestion: float | None,
                   title: str = "", fallback: float | None = None) -> "Figure":
    """Loss against learning rate (log x) with the suggested LR marked, and the fallback LR trained
    at instead when the curve was unfit (``fallback``)."""
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    if suggestion:
        ax.axvline(suggestion, color="red", linestyle="--",
                   label=f"suggested {suggestion:.2e}" + (" (not used)" if fallback else ""))
    if fallback:
        ax.axvline(fallback, color="green", linestyle="-", label=f"fallback {fallback:.2e} (used)")
    if suggestion or fallback:
        ax.legend()
    ax.set_title(title or "LR finder", fontsize=9 if "\n" in title else None)
    return fig


def loss_figure(batch_losses: Sequence[float], epoch_iters: Sequence[int], valid_losses: Sequence[float],
                title: str = "") -> "Figure":
    """Smoothed train loss per batch and valid loss at the end of each epoch (x = batches seen)."""
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    ax.plot(range(1, len(batch_losses) + 1), batch_losses, label="train (smoothed)")
    if len(valid_losses):
        ax.plot(list(epoch_iters)[:len(valid_losses)], valid_losses, marker="o", label="valid")
    ax.set_xlabel("batches")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(title or "loss")
    return fig


def confusion_figure(cm, classes: Sequence[str], title: str = "confusion matrix") -> "Figure":
    """Confusion matrix heat map with counts (rows = actual, columns = predicted)."""
    import numpy as np

    cm = np.asarray(cm)
    n = len(classes)
    fig = _figure(max(5, 0.6 * n + 2), max(4, 0.6 * n + 1.5))
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels=classes, rotation=90)
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > threshold else "black")
    ax.set_title(title)
    return fig


def image_grid_figure(images: Sequence, titles: Sequence[str], ncols: int = 4, title: str = "") -> "Figure":
    """A grid of PIL images with one short caption each."""
    n = max(1, len(images))
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = _figure(3 * ncols, 3.3 * nrows)
    for i, (image, caption) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(image)
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    if not images:
        fig.add_subplot().text(0.5, 0.5, "nothing to show", ha="center")
    if title:
        fig.suptitle(title)
    return fig


def load_thumbnails(paths: Sequence[str], bboxes: Sequence | None = None, size: int = 224) -> list:
    """Open images (with optional bbox crops) as thumbnails; unreadable ones become grey tiles."""
    from PIL import Image

    from ..errors import ImageError
    from ..images import open_image

    out = []
    for i, path in enumerate(paths):
        try:
            image = open_image(path, bboxes[i] if bboxes is not None else None)
            image.thumbnail((size, size))
        except ImageError:
            image = Image.new("RGB", (size, size), (128, 128, 128))
        out.append(image)
    return out


def top_losses_figure(items: "pd.DataFrame", targets, probs, classes: Sequence[str], n: int = 16,
                      bboxes: Sequence | None = None) -> "Figure":
    """The ``n`` items with the largest cross-entropy loss: predicted / actual / loss / P(predicted)."""
    import numpy as np

    targets, probs = np.asarray(targets, dtype=int), np.asarray(probs, dtype=float)
    losses = -np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None))
    order = np.argsort(-losses)[:n]
    preds = probs.argmax(1)
    images = load_thumbnails([items["path"].iloc[i] for i in order],
                             [bboxes[i] for i in order] if bboxes is not None else None)
    titles = [f"{classes[preds[i]]} / {classes[targets[i]]}\nloss {losses[i]:.2f}, p {probs[i, preds[i]]:.2f}"
              for i in order]
    return image_grid_figure(images, titles, title="top losses: predicted / actual")


def suspect_figure(suspects: "pd.DataFrame", n: int = 16, bboxes: Sequence | None = None,
                   caveat: str | None = None) -> "Figure":
    """Grid of the most suspect labels: given label → model's prediction (probabilities); ``caveat``
    (why the flags are unreliable) goes under the title."""
    import textwrap

    rows = suspects.head(n)
    images = load_thumbnails(list(rows["path"]), bboxes[:n] if bboxes is not None else None)
    titles = [f"label {r.label} ({r.label_prob:.2f})\nmodel {r.predicted} ({r.predicted_prob:.2f})"
              for r in rows.itertuples()]
    title = "suspect labels (cleanlab)" + (f"\n{textwrap.fill(caveat, 90)}" if caveat else "")
    return image_grid_figure(images, titles, title=title)
