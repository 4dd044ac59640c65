"""What a training run shows people (issue 30): one line per epoch in a log, one table on a terminal, and
a warning when the exported model is no use (no epoch trained, or chance accuracy)."""

from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from fashion import training  # noqa: E402
from fashion.training import Stage  # noqa: E402

from factories import one_thread  # noqa: E402,F401  (autouse: one torch thread for the module)
from test_training import make_items, tiny_config  # noqa: E402


@pytest.fixture()
def run(tmp_path):
    items = make_items(tmp_path / "data", per_split=(4, 2, 2), corrupt=False)
    return training.prepare(items, tiny_config(leak_check=False), tmp_path / "out")


def test_log_output_is_one_line_per_epoch_counted_from_1(run, caplog, capfd):
    """Output to a file or a pipe (pytest's capture is neither a terminal nor a notebook): each epoch is
    one log line, epochs counted from 1; fastai prints neither its raw lists nor "Better model found"."""
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        training.run_stage(run, Stage("s1", 2, lr=1e-3, frozen=True, size=32))
    printed = capfd.readouterr()
    assert "Better model found" not in printed.out + printed.err
    assert not re.search(r"^\[\d", printed.out + printed.err, re.M), printed  # fastai's "[0, 1.23, ...]"
    lines = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage() and "/2:" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["s1 epoch 1/2", "s1 epoch 2/2"]
    assert "at epoch 0" not in caplog.text


def test_terminal_output_is_one_table(run, caplog, capfd, monkeypatch):
    """On a terminal fastai's table is the one record of each epoch: no log line repeats it at INFO
    and no "Better model found" line follows it."""
    from fashion.training import stages

    monkeypatch.setattr(stages, "_show_bars", lambda: True)
    with caplog.at_level(logging.INFO, logger="fashion.training"):
        training.run_stage(run, Stage("s1", 2, lr=1e-3, frozen=True, size=32))
    printed = capfd.readouterr()
    text = printed.out + printed.err
    assert "Better model found" not in text
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and " epoch 1/2" in r.getMessage()]
    assert text.count("train_loss") == 1  # the table's header, once
    assert [r["epoch"] for r in run.history] == [1, 2]  # history.csv still has every epoch


def test_zero_epochs_exports_with_a_warning(tmp_path, caplog, capfd):
    items = make_items(tmp_path / "data", per_split=(2, 2, 2), corrupt=False)
    with caplog.at_level(logging.WARNING, logger="fashion.training"):
        training.train(items, tiny_config(epochs=0, leak_check=False), tmp_path / "out")
    printed = capfd.readouterr()
    assert "%" not in printed.out + printed.err, printed  # the evaluation's passes draw no fastprogress bar
    assert "exporting a model that is no use: no epoch was trained (epochs 0,0,0)" in caplog.text
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert "no epoch was trained" in info["metrics"]["warning"]


def _fake_run(accuracy: float, labels: list[str], epochs: int = 1):
    n = len(labels)
    return SimpleNamespace(results={"s1": SimpleNamespace(epochs_run=epochs)},
                           evaluation={"metrics": {"test": {"n": n, "accuracy": accuracy}}},
                           splits=SimpleNamespace(test=pd.DataFrame({"label": labels}), classes=sorted(set(labels))))


def test_export_caveat_at_chance_and_above():
    from fashion.training.evaluate import export_caveat

    balanced = ["a", "b", "c", "d"] * 25  # chance 0.25; two standard errors on 100 photos: 0.087
    assert "at chance" in export_caveat(_fake_run(0.30, balanced))
    assert export_caveat(_fake_run(0.60, balanced)) is None
    skewed = ["a"] * 80 + ["b"] * 10 + ["c"] * 10  # always guessing "a" scores 0.80
    caveat = export_caveat(_fake_run(0.82, skewed))
    assert "guessing the commonest class scores 0.800" in caveat
    assert export_caveat(_fake_run(0.99, skewed)) is None
    assert "no epoch was trained" in export_caveat(_fake_run(0.99, skewed, epochs=0))
