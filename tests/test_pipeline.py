"""fashion.pipeline: one pipeline for every size (read → embed → index → search → metrics → item-table
stages → report, insight, seal), composed by one orchestrator, run by an executor."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from factories import make_photo_folder, read_run_items  # noqa: E402

COMMON = dict(k=3, grids=1, runtime="torch", num_workers=0, insight=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_folder(tmp_path_factory.mktemp("photos") / "data", n=12)


def test_item_table_stages_add_columns_before_the_run_is_sealed(photos, tmp_path, monkeypatch):
    from fashion.pipeline import items as hook
    from fashion.retrieval import MeasureConfig, run

    def name_length(items, ok):
        return {"name_length": items["relpath"].str.len().to_numpy(), "embedded": ok}

    monkeypatch.setattr(hook, "ITEM_TABLE_STAGES", (name_length,))
    run(MeasureConfig(input=str(photos), output_dir=str(tmp_path / "out"), **COMMON))
    items = read_run_items(tmp_path / "out")
    assert items["name_length"].tolist() == items["relpath"].str.len().tolist()
    assert items["embedded"].tolist() == items["ok"].tolist() and not items["ok"].all()  # the corrupt one


def test_an_item_table_stage_may_not_overwrite_a_column():
    import pandas as pd

    from fashion.errors import FashionError
    from fashion.pipeline.items import add_item_columns

    frame = pd.DataFrame({"label": ["a", "b"]})
    with pytest.raises(FashionError, match="column 'label' exists already"):
        add_item_columns(frame, np.ones(2, bool), [lambda items, ok: {"label": ["x", "y"]}])
    with pytest.raises(FashionError, match="has 1 values for 2 items"):
        add_item_columns(frame, np.ones(2, bool), [lambda items, ok: {"colour": ["x"]}])
    assert add_item_columns(frame, np.ones(2, bool)) is frame  # no stage: unchanged, not copied
