"""``fashion upgrade`` on a current-format run made before an item-table stage (the colour columns):
the columns are computed in a new sealed version, nothing else changes; a current run is left alone."""

import shutil

import numpy as np
import pytest

COLOUR = ["colour", "colour_2", "colour_hex", "colour_share"]


@pytest.fixture
def colourless(sample_run, tmp_path):
    """A copy of the sample run whose item table lacks the colour columns (a run of an earlier version)."""
    from fashion.catalog.metadata import rewrite_items

    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    rewrite_items(run, lambda r: (r.items.reset_index(drop=True).drop(columns=COLOUR), dict(r.info)))
    return run


def test_upgrade_adds_the_colour_columns_in_a_new_version(sample_run, colourless, capsys):
    from fashion import cli
    from fashion.catalog.versions import version_of
    from fashion.run.reader import open_run

    before = open_run(colourless)
    assert not set(COLOUR) & set(before.items.columns)
    with pytest.raises(ValueError, match="fashion upgrade RUN"):  # colour modes say how to get the columns
        from fashion.service import SimilarityService

        SimilarityService.open(colourless, warm=False).neighbors_of(0, k=3, colour="same")
    assert cli.main(["upgrade", str(colourless)]) == 0
    assert "added the columns of the colour stage" in capsys.readouterr().out
    after, ref = open_run(colourless), open_run(sample_run)
    assert after.items[COLOUR].equals(ref.items[COLOUR])  # the same colours the run's own stage computed
    assert after.items.drop(columns=COLOUR).equals(before.items)
    assert np.array_equal(after.embeddings, before.embeddings) and after.neighbors().equals(before.neighbors())
    assert version_of(after.info) == version_of(before.info) + 1 and after.info["changes"][-1]["op"] == "upgrade"
    assert cli.main(["upgrade", str(colourless)]) == 0
    assert "already current" in capsys.readouterr().out
    assert version_of(open_run(colourless).info) == version_of(after.info)


def test_upgrade_of_a_directory_that_is_no_run_is_one_line(tmp_path, capsys):
    from fashion import cli

    assert cli.main(["upgrade", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and str(tmp_path) in err
