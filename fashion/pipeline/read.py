"""The read stage: the dataset's item table (id = row), split-filtered and limited, its query and gallery
roles, and the item manifest the later stages key on (:mod:`fashion.scale.manifest`)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def splits(text: str | None) -> list[str] | None:
    """``"train,valid"`` → the canonical split names (None: no filter)."""
    if text is None:
        return None
    from ..datasets import split_name

    names = [split_name(s) for s in str(text).split(",") if s.strip()]
    return names or None


def load_items(config):
    """The run's :class:`~fashion.datasets.ItemTable`: loaded, split-filtered and limited; index 0..n-1."""
    from .. import datasets, sample

    root = config.input if config.input is not None else sample.sample_root()
    table = datasets.load(root, format=config.format, missing="skip" if config.skip_missing else "error")
    wanted = splits(config.split)
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


def read_stage(config):
    """(item table, item frame): the table and its frame with the shop metadata joined (read and joined
    before anything is embedded, so a bad file fails at once)."""
    table = load_items(config)
    items = table.frame
    if config.metadata:
        from ..catalog.metadata import join_metadata, read_metadata

        items = join_metadata(items, read_metadata(config.metadata))
    return table, items


def assign_roles(table, ok: np.ndarray, config) -> tuple[np.ndarray, np.ndarray, str]:
    """(query mask, gallery mask, mode) over the item rows; skipped rows are in neither."""
    items = table.frame
    split_of = items["split"].to_numpy()
    query_split = splits(config.query_split)
    is_inshop = table.format == "inshop" or "item_id" in items.columns
    if query_split is None and is_inshop and {"query", "gallery"} <= set(split_of):
        query, gallery, mode = split_of == "query", split_of == "gallery", "query vs gallery (In-shop)"
    elif query_split is not None:
        query = np.isin(split_of, query_split)
        if not query.any():
            raise ConfigError(f"query split {config.query_split!r} matches no item; splits: {sorted(set(split_of))}")
        gallery = ~query
        if is_inshop and "gallery" in set(split_of):
            gallery = split_of == "gallery"
        mode = f"queries {','.join(query_split)} vs gallery of the rest"
    else:
        query = gallery = np.ones(len(items), dtype=bool)
        mode = "all-pairs"
    return query & ok, gallery & ok, mode
