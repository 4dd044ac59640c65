#!/usr/bin/env python
"""A greedy weight-averaged "soup" of fine-tuned runs (Wortsman et al. 2022, "Model soups"), chosen on their
shared held-out photos, and its figures: a maintainer's tool, as ``bundle_model.py``::

    python scripts/soup_model.py RUN RUN... --data /path/to/clothing-dataset-small [--output DIR]

The runs must share the architecture, the classes and the held-out photos (``fashion train`` with the same
``--seed`` and ``--holdout`` share, as ``benchmarks/train_clothing.py`` makes them): the held-out split is
rebuilt exactly as their training built it (:func:`fashion.training.data.split_items`). Ingredients are
sorted by their own held-out log loss; the soup starts as the first, and each next run enters the uniform
average of every floating tensor (batch-norm statistics included) only if the soup's held-out log loss does
not rise. Printed: each step, then the soup's held-out and test top-1 with the perturbed checks
(:mod:`fashion.training.robustness`) beside the best single run's. ``--output`` writes the soup as a model
directory (float32 weights; the first run's ``model.json`` with the soup's test metrics and its ingredients).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("soup_model")

CHECKS = ("all", "background", "scale")  # the perturbed checks `fashion train` reports


def held_out_and_test(data, info):
    """(held-out frame, test frame, classes) of clothing-dataset-small as the runs' training split it."""
    from fashion import datasets
    from fashion.training import TrainConfig
    from fashion.training.data import split_items

    trained = info.train_config or {}
    items = datasets.load(data, format="folder").frame
    items = items.assign(split=items["split"].replace({"valid": "train"}))  # train_clothing.py --holdout
    config = TrainConfig(seed=int(trained["seed"]), valid_pct=float(trained["valid_pct"]))
    splits = split_items(items, config)
    return splits.valid, splits.test, list(splits.classes)


def probabilities(model, frame, info, kind: str = "none"):
    from fashion.training.robustness import perturbed_probs

    return perturbed_probs(model, frame, info.input_size, info.mean, info.std, kind=kind)


def scores(probs, targets) -> dict:
    import numpy as np

    picked = np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)
    return {"top1": float((probs.argmax(1) == targets).mean()), "log_loss": float(-np.log(picked).mean())}


def average(states: list[dict]) -> dict:
    """The uniform average of ``states``' floating tensors; other tensors (batch counters) from the first."""
    return {k: (sum(s[k].float() for s in states) / len(states) if v.is_floating_point() else v)
            for k, v in states[0].items()}


def figures(model, frame, info, targets) -> dict:
    out = {"plain": scores(probabilities(model, frame, info), targets)}
    for kind in CHECKS:
        out[kind] = scores(probabilities(model, frame, info, kind), targets)
    return out


def soup(runs, data, output=None) -> dict:
    import copy

    import numpy as np

    from fashion.modelio import CONFIG_FILE, export_model, load_model

    loaded = [load_model(r) for r in runs]
    first = loaded[0].info
    for run, m in zip(runs, loaded):
        if m.info.arch != first.arch or m.classes != list(first.classes) or m.size != first.input_size:
            raise SystemExit(f"{run}: {m.info.arch} {m.size} px with {m.classes}, not as {runs[0]}")
        for key in ("seed", "valid_pct"):
            if (m.info.train_config or {}).get(key) != (first.train_config or {}).get(key):
                raise SystemExit(f"{run}: another {key} than {runs[0]}: other held-out photos")
    held, test, classes = held_out_and_test(data, first)
    held_y = np.array([classes.index(x) for x in held["label"]])
    test_y = np.array([classes.index(x) for x in test["label"]])
    own = [scores(probabilities(m.model, held, m.info), held_y) for m in loaded]
    order = sorted(range(len(runs)), key=lambda i: own[i]["log_loss"])
    for i in order:
        log.info("ingredient %s: held-out top-1 %.3f, log loss %.4f", runs[i], own[i]["top1"], own[i]["log_loss"])
    net = copy.deepcopy(loaded[order[0]].model)
    chosen, best = [order[0]], own[order[0]]
    for i in order[1:]:
        net.load_state_dict(average([loaded[j].model.state_dict() for j in chosen + [i]]))
        trial = scores(probabilities(net, held, first), held_y)
        kept = trial["log_loss"] <= best["log_loss"]
        log.info("+ %s: held-out top-1 %.3f, log loss %.4f: %s", runs[i], trial["top1"], trial["log_loss"],
                 "kept" if kept else "left out")
        if kept:
            chosen, best = chosen + [i], trial
    net.load_state_dict(average([loaded[j].model.state_dict() for j in chosen]))
    net.eval()
    single = loaded[order[0]].model
    report = {"ingredients": [str(runs[i]) for i in chosen], "best_single": str(runs[order[0]])}
    for split, frame, targets in (("held_out", held, held_y), ("test", test, test_y)):
        report[f"soup_{split}"] = figures(net, frame, first, targets)
        report[f"best_single_{split}"] = (report[f"soup_{split}"] if len(chosen) == 1  # the same weights
                                          else figures(single, frame, first, targets))
    for name in ("soup", "best_single"):
        for split, n in (("held_out", len(held)), ("test", len(test))):
            f = report[f"{name}_{split}"]
            log.info("%s %s (%d photos): top-1 %.3f (%d), perturbed %.3f (%d), background %.3f (%d), scale %.3f (%d)",
                     name, split, n, *[v for k in ("plain",) + CHECKS
                                       for v in (f[k]["top1"], round(f[k]["top1"] * n))])
    if output is not None:
        output = Path(output)
        metrics = {"n": len(test), "accuracy": report["soup_test"]["plain"]["top1"],
                   "perturbed_top1": report["soup_test"]["all"]["top1"], "soup": report["ingredients"]}
        export_model(output, net, dataclasses.replace(first, metrics=metrics))
        log.info("wrote the soup to %s (%s)", output, CONFIG_FILE)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="finished `fashion train` output directories")
    parser.add_argument("--data", required=True, metavar="ROOT", help="clothing-dataset-small root")
    parser.add_argument("--output", default=None, metavar="DIR", help="write the soup as a model directory")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = soup(args.runs, args.data, args.output)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
