"""One-lever-at-a-time ablation of issue 15's levers on clothing-dataset-small, on a short schedule.

    python benchmarks/ablation_clothing.py --output_dir /work/runs/ablation            # every row, in order
    python benchmarks/ablation_clothing.py --output_dir /work/runs/ablation --rows base,ls,mixup
    python benchmarks/ablation_clothing.py --output_dir /work/runs/ablation --report-only

Each row is one ``benchmarks/train_clothing.py`` run in ``OUTPUT_DIR/<row>`` (log: ``OUTPUT_DIR/<row>.log``):
the base flags below plus the row's own. Rows run one after another (the wall times are comparable
only on quiet cores); a finished row is not run again, a killed one resumes (``--resume``). At the end
the table of every finished row is printed and written to ``OUTPUT_DIR/ablation.md``: valid top-1 (what
the levers are chosen on; with TTA), test top-1 / top-3, test top-1 with TTA, the perturbed test
photos' top-1 (the harder check) and the run's wall time, each read from the row's ``metrics.json`` and
``run.json``.

The short schedule (``--epochs 1,2,0``: one frozen epoch and two unfrozen ones, all at 224 px, 7-9
minutes a row on two cores, 17 for the two-backbone ensemble) is what makes a dozen rows fit a
working session; it favours levers that help early and under-rates regularisers (MixUp, CutMix,
strong augmentation), whose gains usually need more epochs. Every row has ``--freeze-early 5`` (its
effect is on speed: benchmarks/train_step.py) and ``--tta``, so TTA's effect is read off every row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = ["--size", "224", "--final-size", "224", "--freeze-early", "5", "--tta"]
RECIPE = ["--label-smoothing", "0.1", "--min-scale", "0.75", "--metric-loss", "supcon", "--metric-weight", "0.5"]
ROWS = {
    "base": [],
    "recipe": RECIPE,                                     # the chosen combination, on the same schedule
    "ls": ["--label-smoothing", "0.1"],
    "supcon": ["--metric-loss", "supcon", "--metric-weight", "0.5"],
    "crops": ["--min-scale", "0.75"],
    "mixup": ["--mix", "mixup"],
    "cutmix": ["--mix", "cutmix"],
    "ema": ["--ema", "0.99"],
    "strong": ["--augment", "strong"],
    "clean-drop": ["--clean-labels", "drop"],
    "clean-weight": ["--clean-labels", "weight"],
    "ensemble": ["--ensemble", "efficientnet_lite1"],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="/work/runs/ablation")
    p.add_argument("--data", default="/work/shared/data/clothing-dataset-small")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    p.add_argument("--epochs", default="1,2,0", help="per stage, as train_clothing.py's --epochs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--report-only", action="store_true", help="only print the table of the finished rows")
    args = p.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    return args


def row_command(row: str, out: Path, args) -> list[str]:
    return [sys.executable, str(HERE / "train_clothing.py"), "--data", args.data, "--output_dir", str(out / row),
            "--epochs", args.epochs, "--seed", str(args.seed), *BASE, *ROWS[row]]


def finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file() and (run_dir / "run.json").is_file()


def row_figures(run_dir: Path) -> dict:
    """The table's figures of one finished row."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run.json").read_text())
    test, valid = metrics["test"], metrics.get("valid", {})

    def top(m, key="topk", k="1"):
        return m[key][k] if key in m else None

    return {"valid": top(valid), "valid_tta": top(valid, "tta"), "test": top(test), "test3": top(test, k="3"),
            "test_tta": top(test, "tta"), "perturbed": top(test, "perturbed"),
            "minutes": info["timing"]["total"] / 60 if info["timing"].get("total") else None,
            "epochs": [s["epochs"] for s in info["config"]["stages"]]}


def table(out: Path, rows: list[str], seed: int) -> str:
    def f(v, fmt="{:.3f}"):
        return "–" if v is None else fmt.format(v)

    lines = ["| row | flags beside the base | valid top-1 (TTA) | test top-1 / top-3 | test top-1, TTA | "
             "perturbed test top-1 | wall time |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if not finished(out / row):
            continue
        r = row_figures(out / row)
        flags = " ".join(ROWS[row]) or "(none)"
        lines.append(f"| {row} | `{flags}` | {f(r['valid'])} ({f(r['valid_tta'])}) | {f(r['test'])} / {f(r['test3'])} | "
                     f"{f(r['test_tta'])} | {f(r['perturbed'])} | {f(r['minutes'], '{:.1f} min')} |")
    head = (f"Seed {seed}; base flags `{' '.join(BASE)}`; stages' epochs as `--epochs` "
            "(rows run with benchmarks/ablation_clothing.py)\n\n")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for row in args.rows:
            if finished(out / row):
                print(f"{row}: finished before, not run again", flush=True)
                continue
            cmd = row_command(row, out, args) + (["--resume"] if (out / row).exists() else [])
            print(f"{row}: {' '.join(cmd)}", flush=True)
            t0 = time.time()
            with open(out / f"{row}.log", "a") as log:
                rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
            print(f"{row}: exit {rc} after {(time.time() - t0) / 60:.1f} min", flush=True)
            if rc:
                print(f"{row}: failed, see {out / (row + '.log')}", file=sys.stderr)
                return rc
    text = table(out, args.rows, args.seed)
    (out / "ablation.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
