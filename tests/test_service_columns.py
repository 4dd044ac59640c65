"""fashion.service.columns: the item table's string columns without a Python string per row at start,
answering as the numpy arrays of ``.astype(str)`` did (missing values as "")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fashion.service.columns import LazyStrings, shared_strings


@pytest.mark.parametrize("dtype", ["str", object, "category"])
def test_shared_strings_are_the_column_as_str(dtype):
    values = ["dress", "hat", None, "dress", "t-shirt", None, "hat"]
    series = pd.Series(values, dtype=dtype)
    got = shared_strings(series)
    assert got.dtype == object and got.tolist() == ["dress", "hat", "", "dress", "t-shirt", "", "hat"]
    assert got[0] is got[3]  # one string object per distinct value
    assert shared_strings(series, missing="?")[2] == "?"


def test_shared_strings_without_missing_equal_astype_str():
    series = pd.Series(np.random.default_rng(0).choice(["a", "bb", "ccc"], 1000), dtype="str")
    assert np.array_equal(shared_strings(series), series.astype(str).to_numpy())


@pytest.mark.parametrize("dtype", ["str", object])
def test_lazy_strings_read_by_row_and_whole(dtype):
    paths = [f"/data/img/{i:05d}.jpg" for i in range(500)]
    column = LazyStrings(pd.Series(paths, dtype=dtype))
    assert len(column) == 500 and column[7] == paths[7] and column[np.int64(499)] == paths[499]
    assert isinstance(column[3], str)
    whole = column.to_numpy()
    assert whole.dtype == object and whole.tolist() == paths and column.to_numpy() is whole
    assert column[np.array([2, 4])].tolist() == [paths[2], paths[4]]
