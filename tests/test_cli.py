import subprocess
import sys
from pathlib import Path

import pytest

from fashion import cli
from fashion.cli.common import fields_of

REPO = Path(__file__).resolve().parents[1]


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_is_light():
    code = ("import sys, fashion, fashion.cli, fashion.errors, fashion.atomic;"
            "heavy = [m for m in ('torch', 'fastai', 'timm', 'faiss', 'sklearn', 'matplotlib', 'pandas') if m in sys.modules];"
            "print(heavy)")
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_fashion_help_lists_every_subcommand():
    out = _run("-m", "fashion", "--help")
    assert out.returncode == 0, out.stderr
    for command in ("train", "neighbors", "search", "summary", "backbones", "duplicates"):
        assert command in out.stdout


@pytest.mark.parametrize("command", ["train", "neighbors", "search", "summary", "backbones", "duplicates"])
def test_each_subcommand_has_help_with_defaults(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"fashion {command}" in text
    if command in ("train", "neighbors"):
        assert "(default:" in text


def test_measure_sim_script_help_and_misspelled_output_dir():
    out = _run("measure_sim.py", "--help")
    assert out.returncode == 0, out.stderr
    assert "--output_dir" in out.stdout and "--ouput_dir" in out.stdout
    args = cli.measure_sim_parser().parse_args(["--ouput_dir", "x", "-k", "5", "--index", "kdtree"])
    assert (args.output_dir, args.k, args.index, args.input) == ("x", 5, "kdtree", None)


def test_epochs_option_takes_one_or_three_numbers():
    parser = cli.build_parser()
    assert parser.parse_args(["train", "--output_dir", "o", "--epochs", "2"]).epochs == (2, 2, 2)
    assert parser.parse_args(["train", "--output_dir", "o", "--epochs", "1,3,1"]).epochs == (1, 3, 1)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--output_dir", "o", "--epochs", "1,2"])


def test_lr_finder_options_reach_the_train_config():
    """--lr-find-iters and --fallback-lr are TrainConfig fields, defaults from the dataclass."""
    from fashion.training import TrainConfig

    parser = cli.build_parser()
    args = parser.parse_args(["train", "--output_dir", "o", "--lr-find-iters", "40", "--fallback-lr", "5e-4"])
    config = TrainConfig(**fields_of(TrainConfig, args))
    assert (config.lr_find_iters, config.fallback_lr) == (40, 5e-4)
    defaults = parser.parse_args(["train", "--output_dir", "o"])
    assert (defaults.lr_find_iters, defaults.fallback_lr) == (TrainConfig.lr_find_iters, TrainConfig.fallback_lr)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--output_dir", "o", "--lr-find-iters", "0"])


def test_every_verbs_options_reach_the_orchestrators_config():
    """The verbs and ``fashion neighbors`` map their flags onto the one config the orchestrator runs
    (``--shard-rows`` of neighbors was dropped before: its dest is not the field's name)."""
    from fashion.cli.neighbors import neighbors_config
    from fashion.cli.scale import config_of

    parser = cli.build_parser()
    assert neighbors_config(parser.parse_args(["neighbors", "--output-dir", "o", "--shard-rows", "7"])).embed_shard_rows == 7
    config = config_of("manifest", parser.parse_args(["manifest", "data", "--output-dir", "o", "--shard-rows", "9",
                                                      "--skip-missing"]))
    assert (config.input, config.output_dir, config.manifest_shard_rows, config.skip_missing) == ("data", "o", 9, True)
    config = config_of("embed", parser.parse_args(["embed", "r", "--shard-rows", "5", "--precision", "fp32"]))
    assert (config.output_dir, config.embed_shard_rows, config.precision) == ("r", 5, "fp32")
    config = config_of("index", parser.parse_args(["index", "r", "--factory", "IVF4,PQ4", "--memory", "1G", "--seed", "3"]))
    assert (config.index, config.factory, config.memory, config.seed) == ("ivfpq-disk", "IVF4,PQ4", "1G", 3)
    config = config_of("knn", parser.parse_args(["knn", "r", "-k", "4", "--nprobe", "2", "--rerank", "8"]))
    assert (config.output_dir, config.k, config.nprobe, config.rerank, config.index) == ("r", 4, 2, 8, "ivfpq-disk")


def test_library_errors_become_one_line(tmp_path, capsys):
    code = cli.main(["summary", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("fashion: error:") and "nowhere" in err
    assert "\n" not in err and "Traceback" not in err


def test_verbosity_works_before_and_after_the_subcommand():
    parser = cli.build_parser()
    assert parser.parse_args(["-v", "summary"]).verbose == 1
    assert parser.parse_args(["summary", "-vv"]).verbose == 2
    assert parser.parse_args(["summary", "-q"]).quiet and not parser.parse_args(["summary"]).quiet
    assert cli.measure_sim_parser().parse_args(["--output-dir", "o", "-q"]).quiet


@pytest.mark.parametrize("command", ["train", "neighbors", "search", "summary", "backbones", "duplicates"])
def test_every_option_has_help(command):
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    missing = [a.option_strings or a.dest for a in sub._actions if not a.help]
    assert not missing, missing


def test_output_dir_spellings():
    for spelling in ("--output-dir", "--output_dir", "--ouput_dir"):
        assert cli.build_parser().parse_args(["neighbors", spelling, "x"]).output_dir == "x"
        assert cli.build_parser().parse_args(["train", spelling, "x"]).output_dir == "x"
    assert "--output-dir DIR, --output_dir DIR" in cli.measure_sim_parser().format_help()


def test_backbones_says_how_to_name_any_timm_model(capsys):
    assert cli.main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "timm:<name>" in out


def test_faiss_loader_lines_are_off_by_default():
    code = ("import logging, sys; from fashion.cli.common import setup_logging; setup_logging(0, False); import faiss;"
            "print(logging.getLogger('faiss.loader').isEnabledFor(logging.INFO))")
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False" and "Loading faiss" not in out.stderr


def test_every_runtime_option_offers_the_same_runtimes():
    """``fashion embed --runtime`` lacked openvino-int8 while ``neighbors`` had it (issue 27): one list now."""
    import argparse

    from fashion.embedding import RUNTIMES

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    offered = {name: next(a.choices for a in p._actions if "--runtime" in a.option_strings)
               for name, p in sub.choices.items() if any("--runtime" in a.option_strings for a in p._actions)}
    assert {"neighbors", "embed"} <= set(offered)
    assert all(tuple(choices) == tuple(RUNTIMES) for choices in offered.values()), offered
