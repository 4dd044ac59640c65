"""Reference training run: clothing-dataset-small (10 classes), EfficientNet-Lite2, this machine's CPU.

    python benchmarks/train_clothing.py --data /work/shared/data/clothing-dataset-small \\
        --output_dir /work/runs/clothing-lite2

The defaults are the run recorded in benchmarks/README.md (0.901 test top-1, 30 min on two cores):
``--arch efficientnet_lite2 --size 224 --final-size 260 --epochs 2,3,2 --lr 2e-3``.

Loads the dataset with ``fashion.datasets.load`` (train / validation / test folders as given) and runs
``fashion.training.train`` with the three-stage schedule below; the results (metrics.json, plots,
model) land in ``--output_dir``. Add ``--resume`` to continue a killed run after its last stage.
Not part of the test suite: it takes about half an hour on two idle CPU cores.

    python benchmarks/train_clothing.py --report-only --output_dir /work/runs/clothing-lite0 \
        --log /work/runs/clothing-lite0.log --images images

The levers of issue 15 are the options of `fashion train` (``fashion.cli.train.add_train_levers``, defaults
from ``TrainConfig``), so an ablation row is one command, e.g. label smoothing and TTA on the reference run::

    python benchmarks/train_clothing.py --output_dir /work/runs/ls --label-smoothing 0.1 --tta

writes the markdown section for benchmarks/README.md (``<output_dir>/benchmark.md``) from a finished
run and copies its loss curves and confusion matrix into ``--images``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/clothing-dataset-small", help="dataset root")
    p.add_argument("--output_dir", default="/work/runs/clothing-lite2")
    p.add_argument("--arch", default="efficientnet_lite2")
    p.add_argument("--size", type=int, default=224, help="stages 1-2")
    p.add_argument("--final-size", type=int, default=260, help="stage 3")
    p.add_argument("--epochs", default="2,3,2",
                   help="per stage; numbers after the third add unfrozen stages at --final-size")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr-find-iters", type=int, default=60)
    p.add_argument("--lr", type=float, default=2e-3,
                   help="peak LR of stage 1 (fastai fine_tune's 2e-3); 0 = the LR finder's suggestion")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--holdout", type=float, default=None, metavar="SHARE",
                   help="train on the train + validation photos, holding out this seeded share of them (e.g. 0.05) "
                        "as the validation set that picks the best epoch (the bundled model's run)")
    from fashion.cli.train import add_train_levers

    add_train_levers(p)
    p.add_argument("--report-only", action="store_true", help="only write benchmark.md from a finished run")
    p.add_argument("--log", default=None, help="the run's log (for the total wall time), with --report-only")
    p.add_argument("--images", default=None, help="copy loss curves + confusion matrix here, with --report-only")
    return p.parse_args(argv)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def lever_flags(cfg: dict) -> str:
    """The command-line flags of a saved TrainConfig's levers that differ from the defaults."""
    from fashion.training.config import LEVERS, TrainConfig

    default = TrainConfig().to_dict()
    flags = []
    for name in LEVERS:
        value = cfg.get(name, default[name])
        if value == default[name] or (isinstance(value, list) and tuple(value) == default[name]):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            flags.append(f"{flag} {','.join(value) if isinstance(value, list) else value}")
    return "".join(" " + f for f in flags)


def accuracy_line(metrics: dict) -> str:
    """Test top-k, then valid top-1 (what levers are chosen on), TTA and perturbed-photo accuracy where run."""
    test, valid = metrics["test"], metrics.get("valid", {})
    parts = [", ".join(f"top-{k} **{v:.3f}**" for k, v in test["topk"].items())]
    from fashion.training.robustness import PERTURBED

    for key, label in (("tta", "with TTA"),) + tuple((key, label) for key, _, label in PERTURBED):
        if key in test:
            parts.append(f"{label} top-1 {test[key]['1']:.3f}")
    if valid:
        parts.append(f"valid top-1 {valid['topk']['1']:.3f}" + (f" (TTA {valid['tta']['1']:.3f})" if "tta" in valid else ""))
    return "; ".join(parts)


def write_report(output_dir, log_path=None, images=None) -> str:
    """Markdown section from a finished run's metrics.json / model.json (+ total time from its log)."""
    out = Path(output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    model = json.loads((out / "model.json").read_text())
    cfg = model["train_config"]
    test = metrics["test"]
    wall, machine = None, None
    if log_path and Path(log_path).is_file():
        found = re.findall(r"machine: (\{.*\})", Path(log_path).read_text(errors="replace"))
        machine = json.loads(found[-1]) if found else None
        wall = machine["wall_seconds"] if machine else None
    command = (f"python benchmarks/train_clothing.py --output_dir {out} --arch {cfg['arch']} --size {cfg['size']} "
               f"--final-size {cfg['final_size']} --epochs {','.join(str(st['epochs']) for st in cfg['stages'])} "
               f"--batch-size {cfg['batch_size']} --seed {cfg['seed']}"
               + (f" --lr {cfg['lr']}" if cfg["lr"] else f" --lr-find-iters {cfg['lr_find_iters']}")
               + lever_flags(cfg))
    lines = ["## Training (benchmarks/train_clothing.py)", "", "    " + command, "",
             f"Machine: {_cpu_name()} ({os.cpu_count()} cores), {machine['torch_threads']} torch threads, torch {machine['torch']}, "
             f"Python {machine['python']} ({machine['platform']}); CPU only, cores shared with other jobs." if machine
             else "Machine: (see the run's log)", "",
             f"Dataset: clothing-dataset-small, {metrics['counts']['train']} train / {metrics['counts']['valid']} "
             f"validation / {metrics['counts']['test']} test images, {metrics['counts']['classes']} classes "
             f"(splits as given). Backbone: `{model['arch']}` ({model['backbone_source']}, offline).", "",
             "| stage | body | size | epochs | LR (lo, hi) | best valid loss | kept | wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for name, st in metrics["stages"].items():
        lo, hi = st["lr"]
        lr = f"{hi:.1e}" if st["frozen"] else f"slice({lo:.1e}, {hi:.1e})"
        lines.append(f"| {name} | {'frozen' if st['frozen'] else 'unfrozen'} | {st['size']} | {st['epochs_run']} | "
                     f"{lr} | {st['best_valid_loss']:.4f} (epoch {st['best_epoch']}) | {'yes' if st['kept'] else 'no'} | "
                     f"{st['seconds'] / 60:.1f} min |")
    stage_total = sum(st["seconds"] for st in metrics["stages"].values())
    total = f"{wall / 60:.1f} min in all" if wall else f"{stage_total / 60:.1f} min of training"
    topk = accuracy_line(metrics)
    lines += ["", f"Test ({test['n']} images, model of {metrics['best'].get('stage', 'every member')} at {model['final_size']} px): {topk}. "
              f"Wall time: {stage_total / 60:.1f} min of stages, {total}.", "",
              f"Batch size {cfg['batch_size']}, seed {cfg['seed']}, LR given as `--lr {cfg['lr']}`"
              if cfg["lr"] else f"Batch size {cfg['batch_size']}, seed {cfg['seed']}, LRs from the LR finder "
              f"({cfg.get('lr_suggestion', 'valley')})", ""]
    if images:
        images = Path(images)
        images.mkdir(parents=True, exist_ok=True)
        copies = {f"loss_{n}.png": f"train_loss_{n}.png" for n in metrics["stages"]}
        copies["confusion_matrix.png"] = "confusion_matrix.png"
        for src, dst in copies.items():
            if (out / src).is_file():
                shutil.copyfile(out / src, images / dst)
                lines.append(f"![{dst}](../{images.name}/{dst})")
    text = "\n".join(lines) + "\n"
    (out / "benchmark.md").write_text(text)
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.report_only:
        logging.info("\n%s", write_report(args.output_dir, args.log, args.images))
        return 0
    from fashion import datasets
    from fashion.training import Stage, TrainConfig, train
    from fashion.training.config import LEVERS

    items = datasets.load(args.data, format="folder")
    holdout = {}
    if args.holdout is not None:  # one pool of train + valid; split_items holds out valid_pct of it (seeded)
        items = dataclasses.replace(items, frame=items.frame.assign(split=items.frame["split"].replace({"valid": "train"})))
        holdout = {"valid_pct": args.holdout}
    logging.info("%s", datasets.describe(items))
    epochs = [int(e) for e in args.epochs.split(",")]
    config = TrainConfig(arch=args.arch, size=args.size, final_size=args.final_size, epochs=tuple(epochs[:3]),
                         lr=args.lr or None, batch_size=args.batch_size, lr_find_iters=args.lr_find_iters, seed=args.seed,
                         **holdout, **{name: getattr(args, name) for name in LEVERS})
    for i, n in enumerate(epochs[3:], start=4):  # more fine-tuning at the final size, as stage 3
        last = config.stages[-1]
        config.stages.append(Stage(f"stage{i}", n, last.lr, False, args.final_size, last.lr_div))
    t0 = time.time()
    result = train(items, config, args.output_dir, resume=args.resume)
    import torch

    machine = {"platform": platform.platform(), "processor": _cpu_name(),
               "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
               "torch": torch.__version__, "wall_seconds": round(time.time() - t0, 1)}
    logging.info("machine: %s", json.dumps(machine))
    logging.info("%s", result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
