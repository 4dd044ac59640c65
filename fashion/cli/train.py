"""``fashion train``, ``fashion summary`` and ``fashion backbones``: the classifier and its inputs."""

from __future__ import annotations

import argparse

from .common import add_options, add_parser, fields_of, load_items

TRAIN_OPTIONS = ("dataset", "output_dir", "train_arch", "weights", "format", "train_size", "final_size", "epochs",
                 "lr", "lr_find_iters", "fallback_lr", "train_batch_size", "crop", "early_stopping", "train_seed",
                 "train_workers", "resume", "overwrite", "skip_missing", "leak_check")


def add_train_levers(p: argparse.ArgumentParser) -> None:
    """Accuracy and retrieval levers of `fashion train` (#15), fields of TrainConfig (also used by
    benchmarks/train_clothing.py, so each lever is defined once, in :mod:`fashion.options`)."""
    from ..training.config import LEVERS  # the levers' names are their options' names

    add_options(p.add_argument_group("accuracy and retrieval levers"), *LEVERS)


def run_train(args) -> int:
    """``fashion train``: the three-stage schedule into ``--output-dir``."""
    from .. import training

    items = load_items(args.dataset, args.format, args.skip_missing)
    config = training.TrainConfig(**fields_of(training.TrainConfig, args))
    result = training.train(items, config, args.output_dir, resume=args.resume, overwrite=args.overwrite)
    print(result.summary() if hasattr(result, "summary") else result)
    return 0


def run_summary(args) -> int:
    """``fashion summary``: counts per split and label."""
    from .. import datasets

    print(datasets.describe(load_items(args.dataset, args.format, args.skip_missing)))
    return 0


def run_backbones(args) -> int:
    """``fashion backbones``: the registered names, and how to name any timm model."""
    from .. import backbones

    for name in backbones.list_backbones():
        print(name)
    print("\nAny timm model works too: --arch timm:<name>, e.g. timm:mobilenetv3_large_100 "
          "(names: python -c 'import timm; print(timm.list_models())'; CNNs, whose features are a map).")
    return 0


def register(sub) -> None:
    """Add ``train``, ``summary`` and ``backbones`` to the sub-command parsers ``sub``."""
    p = add_parser(sub, "train", "three-stage fastai transfer learning of a clothing-category classifier",
                   "Stage 1: LR finder + frozen-body head training; stage 2: unfreeze + LR finder +\n"
                   "discriminative LRs; stage 3: the same at --final-size. Keeps the best model by\n"
                   "validation loss and evaluates it on the test split.")
    add_options(p, *TRAIN_OPTIONS, output_dir="where the model, its metrics, figures and checkpoints go")
    add_train_levers(p)
    p.set_defaults(func=run_train)

    p = add_parser(sub, "summary", "read a dataset and print its counts per split and label")
    add_options(p, "dataset", "format", "skip_missing")
    p.set_defaults(func=run_summary)

    p = add_parser(sub, "backbones", "list the registered backbones",
                   "The registered backbones (offline weights where a package ships them);\n"
                   "--arch also takes any timm model as timm:<name>.")
    p.set_defaults(func=run_backbones)
