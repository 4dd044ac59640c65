"""Pictures and pages of a retrieval run: neighbour grids (PIL) and the ``index.html`` gallery.

A grid follows the original study: the query top-left, then its K neighbours in rank order, left to
right and top to bottom. Every tile is captioned with its label and distance and framed green (same label
as the query) or red (different label); the query's frame is neutral grey.

The gallery is one self-contained HTML page (inline CSS, no JavaScript, no network) that works from
``file://``: every file name and label is HTML-escaped and every link percent-encoded, so a file called
``<script>….png`` is shown as text and still loads.
"""

from __future__ import annotations

import html
import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import quote

import numpy as np

log = logging.getLogger(__name__)

SAME_COLOR = (30, 160, 60)
DIFFERENT_COLOR = (210, 40, 40)
QUERY_COLOR = (120, 120, 120)
PLACEHOLDER_COLOR = (200, 200, 200)
BORDER = 4
CAPTION_LINES = 2


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font, fixed size
        return ImageFont.load_default()


def _fit_text(draw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _thumbnail(path, tile: int):
    """(tile, tile) RGB image: the picture letterboxed on white, or a grey placeholder if it fails."""
    from PIL import Image, ImageDraw

    from .images import open_image
    from .errors import ImageError

    canvas = Image.new("RGB", (tile, tile), "white")
    try:
        img = open_image(path)
    except (ImageError, OSError, ValueError) as exc:
        log.debug("grid placeholder for %s: %s", path, exc)
        canvas.paste(PLACEHOLDER_COLOR, (0, 0, tile, tile))
        draw = ImageDraw.Draw(canvas)
        font = _font(max(10, tile // 12))
        draw.text((tile // 2, tile // 2), "unreadable", fill=(90, 90, 90), font=font, anchor="mm")
        return canvas
    img.thumbnail((tile, tile), Image.Resampling.BILINEAR)
    canvas.paste(img, ((tile - img.width) // 2, (tile - img.height) // 2))
    return canvas


def neighbor_grid(query_path, neighbor_paths: Sequence, labels: Sequence[str], distances: Sequence[float],
                  same_label: Sequence[bool], tile: int = 160, query_label: str | None = None,
                  columns: int | None = None):
    """Draw a query and its neighbours as one image.

    Args:
        query_path: the query image (str/Path); drawn top-left with a grey frame.
        neighbor_paths: K neighbour images in rank order.
        labels: K neighbour labels (str).
        distances: K distances (float), shown with 3 decimals.
        same_label: K booleans; True frames the tile green, False red, None grey (unknown: a new photo).
        tile: side of each picture in pixels (pictures are letterboxed, not cropped).
        query_label: caption of the query tile (default: none).
        columns: tiles per row (default ``min(K + 1, 6)``).

    Returns:
        PIL.Image.Image (RGB) of ``columns`` × ``ceil((K + 1) / columns)`` captioned tiles.
        Unreadable images become grey "unreadable" placeholders; the grid is always drawn.
    """
    from PIL import Image, ImageDraw

    k = len(neighbor_paths)
    if not (len(labels) == len(distances) == len(same_label) == k):
        raise ValueError(f"neighbor_paths, labels, distances and same_label must have the same length, got "
                         f"{k}, {len(labels)}, {len(distances)}, {len(same_label)}")
    if tile < 16:
        raise ValueError(f"tile must be at least 16 pixels, got {tile}")
    columns = columns or min(k + 1, 6)
    rows = math.ceil((k + 1) / columns)
    font_size = max(10, tile // 12)
    font = _font(font_size)
    caption_h = CAPTION_LINES * (font_size + 4) + 4
    cell_w, cell_h = tile + 2 * BORDER, tile + 2 * BORDER + caption_h
    grid = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)

    tiles = [(query_path, QUERY_COLOR, "query", "" if query_label is None else str(query_label))]
    for rank, (path, label, dist, same) in enumerate(zip(neighbor_paths, labels, distances, same_label), 1):
        color = QUERY_COLOR if same is None else (SAME_COLOR if bool(same) else DIFFERENT_COLOR)
        tiles.append((path, color, f"#{rank} {label}", f"d = {float(dist):.3f}"))

    for n, (path, color, line1, line2) in enumerate(tiles):
        x, y = (n % columns) * cell_w, (n // columns) * cell_h
        draw.rectangle((x, y, x + cell_w - 1, y + tile + 2 * BORDER - 1), fill=color)
        grid.paste(_thumbnail(path, tile), (x + BORDER, y + BORDER))
        ty = y + tile + 2 * BORDER + 2
        for line in (line1, line2):
            draw.text((x + BORDER, ty), _fit_text(draw, line, font, tile), fill=(20, 20, 20), font=font)
            ty += font_size + 4
    return grid


# ------------------------------------------------------------------------------------------ gallery

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0 1em 1.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 0.9em; color: #444; }
ul.headline { font-size: 1.2em; list-style: none; padding: 0; }
.same { color: #1ea03c; } .different { color: #d22828; }
"""

_TITLES = {
    "per_label_precision": "Precision@k per label",
    "recall_at_k": "In-shop recall@k (query item found in the gallery)",
    "timing": "Time of each stage (seconds)",
}


def relative_href(path, base: Path) -> str:
    """Link from the page in ``base`` to ``path``: relative to the page (never to the working directory,
    so ``--output_dir out`` and an absolute output directory give the same page), percent-encoded and
    already safe inside an attribute. Both are made absolute first: a relative ``path`` means relative
    to the working directory, like ``base``."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    return html.escape(quote(Path(rel).as_posix(), safe="/"), quote=True)


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(rows: Mapping, key_header: str = "name", value_header: str = "value") -> str:
    head = f"<tr><th>{html.escape(key_header)}</th><th>{html.escape(value_header)}</th></tr>"
    body = "".join(f"<tr><td>{html.escape(str(k))}</td>{_cell(v)}</tr>" for k, v in rows.items())
    return f"<table>{head}{body}</table>"


def _list_item(entry) -> str:
    if isinstance(entry, Mapping):
        text = " — ".join(str(v) for v in entry.values())
    elif isinstance(entry, (list, tuple)):
        text = " — ".join(str(v) for v in entry)
    else:
        text = str(entry)
    return f"<li>{html.escape(text)}</li>"


def headline(metrics: Mapping) -> list[str]:
    """The run's main numbers as sentences people read, e.g. ``"precision@10: 0.53 over 240 queries"``.

    >>> headline({"k": 10, "precision_at_k": 0.5283, "n_queries": 240, "map_at_k": 0.712})
    ['precision@10: 0.53 over 240 queries', 'mAP@10: 0.71']
    """
    k, lines = metrics.get("k", "k"), []
    if isinstance(metrics.get("precision_at_k"), (int, float)):
        over = f" over {metrics['n_queries']} queries" if "n_queries" in metrics else ""
        lines.append(f"precision@{k}: {metrics['precision_at_k']:.2f}{over}")
    if isinstance(metrics.get("map_at_k"), (int, float)):
        lines.append(f"mAP@{k}: {metrics['map_at_k']:.2f}")
    for k_, v in (metrics.get("recall_at_k") or {}).items():
        lines.append(f"recall@{k_} of the query's item: {v:.2f}")
    if "n_gallery" in metrics:
        mode = f" ({metrics['mode']})" if metrics.get("mode") else ""
        lines.append(f"gallery: {metrics['n_gallery']} images{mode}")
    if "n_images" in metrics:
        lines.append(f"images: {metrics['n_images']}, of which {metrics.get('n_skipped', 0)} skipped "
                     "(unreadable or missing)")
    if isinstance(metrics.get("timing"), Mapping) and "total" in metrics["timing"]:
        lines.append(f"time: {metrics['timing']['total']:.1f} s")
    return lines


def _metrics_sections(metrics: Mapping) -> list[str]:
    """Headline sentences first; then scalars in one table; each dict of scalars in its own table; each
    list as a bulleted list."""
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (Mapping, list, tuple))}
    words = "".join(f"<li>{html.escape(line)}</li>" for line in headline(metrics))
    parts = [f'<ul class="headline">{words}</ul>' if words else "", "<h2>Metrics (raw keys)</h2>",
             _table(scalars, "metric")]
    for key, value in metrics.items():
        title = html.escape(_TITLES.get(key, key.replace("_", " ")))
        if isinstance(value, Mapping):
            flat = {k: v for k, v in value.items() if not isinstance(v, (Mapping, list, tuple))}
            header = "label" if key == "per_label_precision" else ("k" if key == "recall_at_k" else "name")
            parts += [f"<h2>{title}</h2>", _table(flat, header)]
        elif isinstance(value, (list, tuple)):
            items = "".join(_list_item(e) for e in value[:1000])
            more = f"<p>… and {len(value) - 1000} more</p>" if len(value) > 1000 else ""
            parts += [f"<h2>{title} ({len(value)})</h2>", f"<ul>{items}</ul>{more}" if value else "<p>none</p>"]
    return parts


def write_gallery(output_dir, metrics: Mapping, grids: Sequence, files: Sequence = (),
                  title: str = "Similar-clothes search", sections: Sequence[str] = ()) -> Path:
    """Write ``output_dir/index.html`` atomically and return its path.

    Args:
        output_dir: the run directory; links are made relative to it.
        metrics: the run's metrics (as in metrics.json): scalars go into the metrics table, dicts
            (``per_label_precision``, ``recall_at_k``, ``timing``…) into their own tables, lists
            (``skipped``…) into lists.
        grids: grid image paths, or ``(path, caption)`` pairs, shown in order.
        files: output files to link (items.csv, metrics.json…).
        title: page title.
        sections: extra HTML blocks (already escaped, e.g. fashion.insight.page), put before the grids.
    """
    from .atomic import write_text

    out = Path(output_dir)
    figures = []
    for grid in grids:
        path, caption = (grid if isinstance(grid, (tuple, list)) else (grid, Path(grid).name))
        href = relative_href(path, out)
        cap = html.escape(str(caption))
        figures.append(f'<figure><a href="{href}"><img src="{href}" alt="{cap}" loading="eager"></a>'
                       f"<figcaption>{cap}</figcaption></figure>")
    links = "".join(f'<li><a href="{relative_href(f, out)}">{html.escape(Path(f).name)}</a></li>' for f in files)
    legend = ('<p>Each grid: the query top-left (grey frame), then its neighbours in rank order; '
              '<span class="same">green</span> = same label as the query, '
              '<span class="different">red</span> = different label.</p>')
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # no scripts, no remote loads: the page must work offline and cannot run injected code
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file: data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *_metrics_sections(metrics),
        *sections,
        f"<h2>Neighbour grids ({len(figures)})</h2>", legend, *figures,
        "<h2>Files</h2>", f"<ul>{links}</ul>" if links else "<p>none</p>",
        "</body></html>", "",
    ])
    path = write_text(out / "index.html", page)
    log.info("wrote %s (%d grids, %d files)", path, len(figures), len(files))
    return path


# ------------------------------------------------------------------------------------ a run's grids


def pick_grid_queries(query_rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions (into ``query_rows``) of the ``n`` queries to draw, seeded and sorted."""
    n = max(0, min(int(n), len(query_rows)))
    return np.sort(np.random.default_rng(seed).choice(len(query_rows), size=n, replace=False))


def draw_grids(out: Path, items, query_rows, neighbor_rows, dist, picks) -> list[tuple[Path, str]]:
    """Draw the neighbour grids of the queries at positions ``picks`` into ``out/grids`` (stale grids of an
    earlier run removed); returns [(png path, caption)]. ``items``: the item frame (path, label, relpath);
    query_rows (q,), neighbor_rows (q, k), dist (q, k): the neighbours in item rows, rank order."""
    from .atomic import save_image

    paths = items["path"].astype(str).to_numpy()
    labels = items["label"].astype(str).to_numpy()
    relpaths = items["relpath"].astype(str).to_numpy()
    grids = []
    for n, pos in enumerate(picks):
        q, nbrs = int(query_rows[pos]), neighbor_rows[pos]
        same = labels[nbrs] == labels[q]
        image = neighbor_grid(paths[q], list(paths[nbrs]), list(labels[nbrs]), dist[pos], same,
                              query_label=labels[q])
        path = save_image(out / "grids" / f"grid_{n:03d}_item{q:06d}.png", image)
        grids.append((path, f"{relpaths[q]} ({labels[q]}): {int(same.sum())}/{len(nbrs)} same label"))
    _remove_stale_grids(out / "grids", {path.name for path, _ in grids})
    return grids


def _remove_stale_grids(folder: Path, keep: set[str]) -> None:
    """Delete the grid PNGs of an earlier run into the same directory (a rerun with fewer ``--grids``
    must not leave old grids beside the page), never any other file."""
    if folder.is_dir():
        for old in folder.glob("grid_*.png"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
                log.debug("removed stale grid %s", old)
