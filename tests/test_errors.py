"""The error contract: user errors are FashionError subclasses (and the builtin a caller expects);
the CLI turns those and OSErrors into one line, and lets every other exception show its traceback."""

from __future__ import annotations

import numpy as np
import pytest

from fashion import cli
from fashion.errors import ConfigError, FashionError, NotFittedError


def test_error_types_keep_the_builtin_contract():
    assert issubclass(ConfigError, FashionError) and issubclass(ConfigError, ValueError)
    assert issubclass(NotFittedError, FashionError) and issubclass(NotFittedError, ValueError)


def test_options_and_state_errors_are_fashion_errors():
    from fashion.neighbors import build_index
    from fashion.retrieval import MeasureConfig, run
    from fashion.training import TrainConfig

    with pytest.raises(ConfigError, match="unknown index"):
        build_index("annoy")
    with pytest.raises(ConfigError, match="unknown metric"):
        build_index("exact", metric="manhattan")
    with pytest.raises(NotFittedError, match="not fitted"):
        build_index("exact").kneighbors(np.ones((1, 2)))
    with pytest.raises(ConfigError, match="n_neighbors"):
        build_index("exact").fit(np.eye(3)).kneighbors(None, n_neighbors=5)
    with pytest.raises(ConfigError, match="crop"):
        TrainConfig(crop="box")
    with pytest.raises(ConfigError, match="output_dir"):
        run(MeasureConfig())


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    code = cli.main(["neighbors", "--output-dir", str(tmp_path / "out"), "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("fashion: error:") and "no-model" in err and "\n" not in err


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A plain ValueError/TypeError from inside the library is a bug, not a user error: not swallowed."""
    from fashion.pipeline import measure

    def broken(config):
        raise TypeError("a bug")

    monkeypatch.setattr(measure, "measure", broken)
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["neighbors", "--output-dir", "out"])
