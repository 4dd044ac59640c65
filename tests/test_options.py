"""Every option defined once (issue 27): every parser is built from fashion.options, every flag explains
itself, a flag means the same everywhere, and the config dataclasses' defaults are the options'."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from fashion import cli, options


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """{name: parser} of measure_sim.py and of every ``fashion`` sub-command."""
    top = cli.build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"measure_sim.py": cli.measure_sim_parser(), **sub.choices}


def _actions(parser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_every_subcommand_is_checked():
    assert {"measure_sim.py", "train", "neighbors", "search", "serve", "summary", "backbones", "duplicates",
            "manifest", "embed", "index", "knn"} <= set(_parsers())


@pytest.mark.parametrize("name", sorted(_parsers()))
def test_every_action_has_help_and_comes_from_the_registry(name):
    for action in _actions(_parsers()[name]):
        label = action.option_strings or action.dest
        assert action.help and len(action.help) > 10, (name, label)
        assert getattr(action, "option_name", None) in options.OPTIONS, (name, label)  # not hand-made


def test_a_flag_has_one_type_and_one_set_of_choices_everywhere():
    seen: dict[str, tuple] = {}
    for name, parser in _parsers().items():
        for action in _actions(parser):
            for flag in action.option_strings:
                kind = (action.type, None if action.choices is None else tuple(action.choices), action.nargs)
                assert seen.setdefault(flag, kind) == kind, (name, flag, seen[flag], kind)
    assert seen["--size"][0] is options.image_size  # bounded in train, neighbors and embed alike
    assert seen["--runtime"][1] == options.RUNTIMES


def test_an_option_is_the_same_in_every_subcommand():
    seen: dict[str, tuple] = {}
    for name, parser in _parsers().items():
        for action in _actions(parser):
            if action.default is argparse.SUPPRESS:  # a sub-command's -v/-q, unset unless given
                continue
            kind = (action.default, action.type, action.choices, tuple(action.option_strings), action.dest)
            assert seen.setdefault(action.option_name, kind) == kind, (name, action.option_name)
    assert {"k", "size", "runtime", "model", "arch", "layer", "batch_size"} <= set(seen)


def _config_defaults(command: str) -> list[type]:
    from fashion.insight.stage import DuplicatesConfig
    from fashion.retrieval import MeasureConfig
    from fashion.scale.embed import EmbedConfig
    from fashion.scale.knn import KnnConfig
    from fashion.service.budget import Limits
    from fashion.training import TrainConfig

    return {"measure_sim.py": MeasureConfig, "neighbors": MeasureConfig, "train": TrainConfig,
            "embed": EmbedConfig, "knn": KnnConfig, "duplicates": DuplicatesConfig, "serve": Limits}[command]


@pytest.mark.parametrize("command", ["measure_sim.py", "neighbors", "train", "embed", "knn", "duplicates", "serve"])
def test_parsed_defaults_are_the_config_dataclass_defaults(command):
    config = _config_defaults(command)
    parser = _parsers()[command]
    given = {"output_dir", "run_dir"}
    needs_output = any("--output-dir" in a.option_strings and a.required for a in _actions(parser))
    argv = ["--output-dir=o"] if needs_output else []
    parsed = parser.parse_args(argv + (["r"] if command in ("embed", "knn", "serve") else []))
    checked = 0
    for field in dataclasses.fields(config):
        if field.default is dataclasses.MISSING or not hasattr(parsed, field.name) or field.name in given:
            continue
        assert getattr(parsed, field.name) == field.default, (command, field.name)
        checked += 1
    assert checked >= 3, (command, checked)


def test_embed_and_neighbors_default_to_the_same_embedder():
    from fashion.retrieval import MeasureConfig
    from fashion.scale.embed import EmbedConfig

    measure, embed = MeasureConfig(output_dir="o"), EmbedConfig("r")
    assert (embed.model, embed.arch) == (measure.model, measure.arch)  # the bundled clothing model
    assert measure.model is not None


def test_no_flag_shows_a_default_that_is_not_one():
    text = _parsers()["search"].format_help()
    assert "do not draw a grid per photo" in text and "default: True" not in text
    knn = _parsers()["knn"].format_help()
    assert "RUN " in knn and "a run directory" in knn


def test_the_registry_refuses_a_name_defined_twice():
    with pytest.raises(ValueError, match="twice"):
        options.registry(options.Option("k", ("-k",), "help"), options.Option("k", ("--k",), "help"))


def test_option_types_refuse_bad_values():
    with pytest.raises(argparse.ArgumentTypeError):
        options.positive_int("0")
    with pytest.raises(argparse.ArgumentTypeError):
        options.image_size("100000")
    assert options.image_size("224") == 224 and options.epochs("1,2,1") == (1, 2, 1)
