"""``fashion neighbors`` (= ``measure_sim.py``) and ``fashion duplicates``: a dataset in, a run out."""

from __future__ import annotations

import argparse

from .common import add_options, add_parser, fields_of

NEIGHBORS_OPTIONS = ("input", "output_dir", "model", "arch", "k", "index", "metric", "size", "batch_size", "format",
                     "split", "query_split", "limit", "grids", "layer", "num_workers", "runtime",
                     "precision", "cache_dir", "seed",
                     "metadata", "engine", "address", "actors", "cpus_per_actor", "gpus_per_actor",
                     "embed_shard_rows")
INSIGHT_OPTIONS = ("insight", "duplicate_threshold", "map_method")


def add_neighbors_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``fashion neighbors`` / ``measure_sim.py`` (DESIGN.md's contract): the fields of
    :class:`fashion.pipeline.config.MeasureConfig`, defined in :mod:`fashion.options`."""
    add_options(p, *NEIGHBORS_OPTIONS)
    add_insight_arguments(p)


def add_insight_arguments(p: argparse.ArgumentParser) -> None:
    """The insight stage's options of ``fashion neighbors`` / ``measure_sim.py``."""
    add_options(p, *INSIGHT_OPTIONS)


def neighbors_config(args):
    """Map parsed ``neighbors`` options onto :class:`fashion.pipeline.config.MeasureConfig`."""
    from ..pipeline.config import MeasureConfig

    # --shard-rows is embed_shard_rows (its dest, shard_rows, is shared with the manifest's option)
    return MeasureConfig(**fields_of(MeasureConfig, args), embed_shard_rows=args.shard_rows)


def run_neighbors(args) -> int:
    """``fashion neighbors`` / ``measure_sim.py``: one retrieval run, any size (:mod:`fashion.pipeline`)."""
    from ..pipeline.measure import measure

    result = measure(neighbors_config(args))
    print(result.summary() if hasattr(result, "summary") else result)
    return 0


def run_duplicates(args) -> int:
    """``fashion duplicates``: duplicates.csv and duplicates.json of a dataset."""
    from ..insight.stage import DuplicatesConfig, run_duplicates as find

    print(find(DuplicatesConfig(**fields_of(DuplicatesConfig, args))).summary())
    return 0


def register(sub) -> None:
    """Add ``neighbors`` and ``duplicates`` to the sub-command parsers ``sub``."""
    p = add_parser(sub, "neighbors",
                   "embed a dataset, find the top-K similar images, write grids, metrics and a gallery",
                   "Embed every image with the model's body, build a nearest-neighbour index,\n"
                   "query the top-K neighbours of every image and write the run's files.")
    add_neighbors_arguments(p)
    p.set_defaults(func=run_neighbors)

    p = add_parser(sub, "duplicates", "find (near-)duplicate photos and split leaks in a dataset",
                   "Exact copies by file hash, then near-copies: embed -> top-K neighbours ->\n"
                   "pairs under the threshold, confirmed on the thumbnails (or perceptual hashes\n"
                   "with --method phash). Writes duplicates.csv and duplicates.json.")
    add_options(p, "dataset_input", "duplicates_method", "output_dir", "duplicates_threshold", "k", "model",
                "duplicates_arch", "format", "cache_dir",
                output_dir="where duplicates.csv and duplicates.json go",
                k="neighbours per photo searched for copies",
                model="trained model directory; default: the pretrained backbone (--arch)")
    p.set_defaults(func=run_duplicates)
