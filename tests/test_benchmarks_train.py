"""benchmarks/train_clothing.py (the recipe command of #15) and benchmarks/retrieval_clothing.py's table rows."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_passes_every_lever_to_train_config(monkeypatch, tmp_path):
    from fashion import training

    bench = load("train_clothing")
    seen = {}

    def fake_train(items, config, output_dir, resume=False):  # the schedule itself is tests/test_training.py's
        seen["config"], seen["items"] = config, items
        raise SystemExit(0)

    monkeypatch.setattr(training, "train", fake_train)
    from factories import make_folder

    root = make_folder(tmp_path / "d", {"a": (200, 0, 0), "b": (0, 200, 0)}, 2, splits=("train", "valid", "test"))
    with pytest.raises(SystemExit):
        bench.main(["--data", str(root), "--output_dir", str(tmp_path / "o"), "--label-smoothing", "0.1", "--tta",
                    "--ema", "0.99", "--metric-loss", "supcon", "--metric-weight", "0.2", "--epochs", "2,3,2,1"])
    cfg = seen["config"]
    assert (cfg.label_smoothing, cfg.tta, cfg.ema, cfg.metric_loss, cfg.metric_weight) == (0.1, True, 0.99, "supcon", 0.2)
    assert [s.epochs for s in cfg.stages] == [2, 3, 2, 1] and cfg.arch == "efficientnet_lite2"
    assert seen["items"].root == str(root)  # the table, so run.json records the dataset's root and format


def test_report_names_the_levers_and_the_extra_accuracies():
    from fashion.training import TrainConfig

    bench = load("train_clothing")
    cfg = TrainConfig(label_smoothing=0.1, tta=True, ensemble=("efficientnet_lite1",), hard_check=False).to_dict()
    cfg = json.loads(json.dumps(cfg))
    assert bench.lever_flags(cfg) == " --label-smoothing 0.1 --tta --no-hard-check --ensemble efficientnet_lite1"
    assert bench.lever_flags(json.loads(json.dumps(TrainConfig().to_dict()))) == ""
    metrics = {"test": {"topk": {"1": 0.9, "3": 0.98}, "tta": {"1": 0.91}, "perturbed": {"1": 0.7}},
               "valid": {"topk": {"1": 0.88}, "tta": {"1": 0.89}}}
    line = bench.accuracy_line(metrics)
    assert line == ("top-1 **0.900**, top-3 **0.980**; with TTA top-1 0.910; perturbed photos top-1 0.700; "
                    "valid top-1 0.880 (TTA 0.890)")
    metrics["test"].update(perturbed_background={"1": 0.8}, perturbed_scale={"1": 0.75})
    assert "; perturbed photos top-1 0.700; on another background top-1 0.800; garment smaller in the frame " \
           "top-1 0.750; valid" in bench.accuracy_line(metrics)


def test_retrieval_table_has_a_row_per_model_and_layer(tmp_path):
    bench = load("retrieval_clothing")
    for name in ("clf", "met"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.json").write_text(json.dumps({"arch": "efficientnet_lite2"}))
    args = bench.parse_args(["--model", str(tmp_path / "clf"), "--metric-model", str(tmp_path / "met")])
    rows = bench.models(args)
    assert [r[0] for r in rows] == ["pretrained efficientnet_lite0 (body)", "trained lite2 (body)", "trained lite2 (head)",
                                    "metric lite2 (body)", "metric lite2 (head)"]
    assert len({r[3] for r in rows}) == len(rows)  # one output directory each
    (tmp_path / "met2").mkdir()
    (tmp_path / "met2" / "model.json").write_text(json.dumps({"arch": "efficientnet_lite2"}))
    two = bench.models(bench.parse_args(["--metric-model", str(tmp_path / "met"), "--metric-model", str(tmp_path / "met2")]))
    assert [r[0] for r in two[1:]] == ["metric lite2 met (body)", "metric lite2 met (head)",
                                       "metric lite2 met2 (body)", "metric lite2 met2 (head)"]
    assert len({r[3] for r in two}) == len(two)
    with pytest.raises(SystemExit):
        bench.main(["--modes", "sideways", "--output_dir", str(tmp_path / "o")])


def test_retrieval_benchmark_prints_its_table(tmp_path, capsys):
    from fashion import sample

    bench = load("retrieval_clothing")
    assert bench.main(["--data", str(sample.sample_root()), "--modes", "all-pairs", "--limit", "12", "--grids", "0",
                       "--output_dir", str(tmp_path / "o")]) == 0
    table = capsys.readouterr().out.splitlines()
    row = next(line for line in table if line.startswith("pretrained efficientnet_lite0 (body)"))
    assert row.split()[3:6] == ["all-pairs", "12", "12"]  # mode, queries, gallery: counts, not timings
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert saved[0]["gallery"] == 12 and set(saved[0]["seconds"]) >= {"embed", "index", "search"}


def test_train_step_benchmark_compares_freeze_settings_in_one_run(capsys):
    bench = load("train_step")
    assert bench.main(["--arch", "efficientnet_lite0", "--size", "32", "--batch-size", "2", "--steps", "1",
                       "--freeze", "0,5"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["0", "5"] and rows[0][2] == "1.00" and float(rows[1][2]) > 0


def test_every_ablation_row_is_a_valid_train_config(tmp_path):
    from fashion.training import TrainConfig
    from fashion.training.config import LEVERS

    abl, bench = load("ablation_clothing"), load("train_clothing")
    args = abl.parse_args(["--output_dir", str(tmp_path)])
    assert args.rows == list(abl.ROWS)
    configs = {}
    for row in abl.ROWS:
        argv = abl.row_command(row, tmp_path, args)[2:]
        parsed = bench.parse_args(argv)
        configs[row] = TrainConfig(arch=parsed.arch, epochs=parsed.epochs, seed=parsed.seed,
                                   **{name: getattr(parsed, name) for name in LEVERS})
        assert parsed.output_dir == str(tmp_path / row) and parsed.freeze_early == 5 and parsed.tta
    base = configs["base"].to_dict()
    for row, cfg in configs.items():  # one lever each, except the combination
        changed = {k for k, v in cfg.to_dict().items() if v != base[k]}
        assert len(changed) == {"base": 0, "recipe": 4, "supcon": 2}.get(row, 1), (row, changed)
    with pytest.raises(SystemExit):
        abl.parse_args(["--rows", "base,sideways"])


def _finished_row(run_dir, valid, test, minutes):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(
        {"test": {"topk": {"1": test, "3": 0.99}, "tta": {"1": test + 0.01}, "perturbed": {"1": test - 0.1}},
         "valid": {"topk": {"1": valid}, "tta": {"1": valid + 0.01}}}))
    (run_dir / "run.json").write_text(json.dumps({"timing": {"total": minutes * 60},
                                                  "config": {"stages": [{"epochs": 1}, {"epochs": 2}]}}))


def test_ablation_runs_unfinished_rows_once_and_tabulates_them(tmp_path, monkeypatch, capsys):
    abl = load("ablation_clothing")
    _finished_row(tmp_path / "base", 0.8, 0.85, 12.0)
    (tmp_path / "ls").mkdir()  # killed before: resumed, not started again
    calls = []

    def fake_call(cmd, stdout, stderr):
        calls.append(cmd)
        _finished_row(Path(cmd[cmd.index("--output_dir") + 1]), 0.82, 0.86, 13.5)
        return 0

    monkeypatch.setattr(abl.subprocess, "call", fake_call)
    assert abl.main(["--output_dir", str(tmp_path), "--rows", "base,ls,mixup"]) == 0
    assert [c[c.index("--output_dir") + 1] for c in calls] == [str(tmp_path / "ls"), str(tmp_path / "mixup")]
    assert calls[0][-3:] == ["--label-smoothing", "0.1", "--resume"] and calls[1][-2:] == ["--mix", "mixup"]
    text = (tmp_path / "ablation.md").read_text()
    assert text in capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| base") or line.startswith("| ls")]
    assert rows[0] == "| base | `(none)` | 0.800 (0.810) | 0.850 / 0.990 | 0.860 | 0.750 | 12.0 min |"
    assert rows[1].startswith("| ls | `--label-smoothing 0.1` | 0.820 (0.830) | 0.860 / 0.990 |")


def test_ablation_stops_at_a_failed_row(tmp_path, monkeypatch):
    abl = load("ablation_clothing")
    monkeypatch.setattr(abl.subprocess, "call", lambda cmd, stdout, stderr: 3)
    assert abl.main(["--output_dir", str(tmp_path), "--rows", "base,ls"]) == 3
    assert (tmp_path / "base.log").exists() and not (tmp_path / "ls.log").exists()
