"""The insight part of a run's ``index.html``: the map image and the top duplicate clusters (leaks first).

Each cluster is drawn as one strip with ``fashion.report.neighbor_grid`` (its first photo as the anchor,
then the others with label and distance, framed green/red for same/different label).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

TOP_CLUSTERS = 8


def cluster_order(table) -> list[int]:
    """Cluster ids of a duplicates table, leaks (a pair across splits) first, then by size and id.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"cluster": [0, 0, 1], "a_split": ["train", "train", "train"],
    ...                   "b_split": ["train", "train", "test"], "a": [0, 0, 5], "b": [1, 2, 6]})
    >>> cluster_order(t)
    [1, 0]
    """
    if len(table) == 0:
        return []
    cross = (table["a_split"] != table["b_split"]).groupby(table["cluster"]).any()
    size = table.groupby("cluster").apply(lambda g: len(set(g["a"]) | set(g["b"])), include_groups=False)
    keys = sorted(cross.index, key=lambda c: (not bool(cross[c]), -int(size[c]), int(c)))
    return [int(c) for c in keys]


def draw_clusters(out, items, table, top: int = TOP_CLUSTERS) -> list[tuple[Path, str]]:
    """PNG strips of the top clusters under ``out/duplicates/`` (strips of an earlier run that are not
    redrawn are removed); returns [(path, caption)]."""
    from ..atomic import save_image
    from ..report import neighbor_grid

    paths = items["path"].astype(str).to_numpy()
    labels = items["label"].astype(str).to_numpy()
    splits = items["split"].astype(str).to_numpy()
    strips = []
    for n, c in enumerate(cluster_order(table)[:top]):
        pairs = table[table["cluster"] == c]
        best: dict[int, float] = {}
        for a, b, d in zip(pairs["a"], pairs["b"], pairs["distance"]):
            for r in (int(a), int(b)):
                best[r] = min(best.get(r, np.inf), float(d))
        members = sorted(best)
        first, rest = members[0], members[1:][:11]
        grid = neighbor_grid(paths[first], list(paths[rest]), [f"{labels[r]} ({splits[r]})" for r in rest],
                             [best[r] for r in rest], [labels[r] == labels[first] for r in rest], tile=120,
                             query_label=f"{labels[first]} ({splits[first]})")
        path = save_image(Path(out) / "duplicates" / f"cluster_{c:05d}.png", grid)
        where = sorted(set(splits[members].tolist()))
        strips.append((path, f"cluster {c}: {len(members)} photos in {', '.join(where)}; "
                             f"labels {', '.join(sorted(set(labels[members].tolist())))}"))
    kept = {p.name for p, _ in strips}
    for old in (Path(out) / "duplicates").glob("cluster_*.png"):
        if old.name not in kept:
            old.unlink(missing_ok=True)
    return strips


def insight_section(out, summary: dict, strips, map_png=None) -> str:
    """HTML of the insight section (escaped; links relative to ``out``)."""
    from ..report import relative_href

    d = summary.get("duplicates", {})
    leaks = d.get("leaks", {})
    parts = []
    if map_png is not None:
        href = relative_href(map_png, Path(out))
        parts += ["<h2>Embedding map</h2>",
                  f"<p>{html.escape(str(summary.get('map', {}).get('n', '')))} photos laid out by "
                  f"{html.escape(str(summary.get('map', {}).get('method', '')))}; "
                  f"{int(summary.get('suspects', 0))} suspect labels (neighbours mostly of one other label).</p>",
                  f'<figure><a href="{href}"><img src="{href}" alt="embedding map" loading="eager"></a></figure>']
    parts.append(f"<h2>Duplicates ({int(d.get('n_clusters', 0))} clusters)</h2>")
    parts.append("<p>" + html.escape(
        f"{d.get('n_pairs', 0)} pairs ({d.get('exact_pairs', 0)} byte-identical); "
        f"{d.get('cross_split_pairs', 0)} cross splits, {d.get('label_disagreeing_pairs', 0)} have different labels; "
        f"test photos with a copy in train: {leaks.get('test_in_train', 0)}, in valid: {leaks.get('test_in_valid', 0)}. "
        f"Leaking clusters first; full list in duplicates.csv.") + "</p>")
    for path, caption in strips:
        href, cap = relative_href(path, Path(out)), html.escape(str(caption))
        parts.append(f'<figure><a href="{href}"><img src="{href}" alt="{cap}" loading="eager"></a>'
                     f"<figcaption>{cap}</figcaption></figure>")
    return "\n".join(parts)


def run_insight(out, items, vectors, ok, query_rows, neighbor_rows, config, metrics: dict, files: dict) -> list[str]:
    """The insight stage of a retrieval run (small or sharded): :func:`fashion.insight.stage.write_insight`
    with ``config`` (an :class:`~fashion.insight.stage.InsightConfig`), its files into ``files``, its
    summary into ``metrics["insight"]``; returns the gallery's insight section."""
    from .stage import write_insight

    written, summary, dups = write_insight(out, items, vectors, ok, query_rows, neighbor_rows, config)
    files.update(written)
    metrics["insight"] = summary
    strips = draw_clusters(out, items, dups.table(items))
    return [insight_section(out, summary, strips, written.get("map.png"))]
