"""The item table's string columns as the service reads them, without a Python string per row at start.

A 1,000,000-item run's table holds its strings in Arrow (pandas' ``str`` columns); turning a column into
a numpy array of Python strings (``.astype(str).to_numpy()``) makes a million objects per column: about
2 s of the service's start for its five columns on two busy cores (benchmarks/README.md, "photo and id
queries near the floor"). Instead:

- :func:`shared_strings`: a column of few distinct values (label, split, colour family, swatch) as a numpy
  object array whose cells all point at the few distinct strings (one factorisation, one gather);
- :class:`LazyStrings`: a column of distinct values (path, relpath) left in Arrow; one cell is read when
  asked (a search's matches, an image by id), the whole column only by what needs all of it.
"""

from __future__ import annotations

import threading

import numpy as np


def shared_strings(series, missing: str = "") -> np.ndarray:
    """The column ``series`` as a numpy object array of str (``missing`` where it is empty), its cells
    sharing one string object per distinct value (Arrow's dictionary encoding, then one gather)."""
    import pyarrow as pa

    column = pa.array(series)
    encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
    indices = encoded.indices.fill_null(-1) if encoded.null_count else encoded.indices
    values = np.array([str(u) for u in encoded.dictionary.to_pylist()] + [missing], dtype=object)
    return values[indices.to_numpy()]  # index -1 (a missing value) takes the last: ``missing``


class LazyStrings:
    """A string column kept in Arrow: ``column[i]`` is the str of row ``i``, ``len(column)`` its rows,
    :meth:`to_numpy` the whole column as a numpy object array (made once, on first use)."""

    def __init__(self, series):
        import pyarrow as pa

        self._arrow = pa.array(series)  # an Arrow-backed column: its own buffers, no copy
        self._whole = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._arrow)

    def __getitem__(self, i) -> str:
        if isinstance(i, (int, np.integer)):
            return self._arrow[int(i)].as_py()
        return self.to_numpy()[i]

    def to_numpy(self) -> np.ndarray:
        with self._lock:
            if self._whole is None:
                self._whole = np.asarray(self._arrow.to_numpy(zero_copy_only=False), dtype=object)
            return self._whole
