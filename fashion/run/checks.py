"""Checks of a run's tables and JSON values, one line naming the file and the column or key at fault
(:class:`~fashion.rundir.RunDirError`); used by :mod:`fashion.run.reader` and the service's model reports."""

from __future__ import annotations

from pathlib import Path

from ..rundir import RunDirError


def _kind_ok(series, kind: str) -> bool:
    import pandas as pd

    if len(series) == 0:  # a header alone: pandas cannot tell the type
        return True
    if kind == "int":
        return pd.api.types.is_integer_dtype(series)
    if kind == "float":
        return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if kind == "bool":
        return pd.api.types.is_bool_dtype(series)
    return True  # read as str


def check_columns(table, kinds: dict, path) -> None:
    """Each named column of ``table`` holds values of its kind ("int", "float", "bool", "str"); else RunDirError."""
    words = {"int": "integers", "float": "numbers", "bool": "true/false values"}
    for column, kind in kinds.items():
        if column not in table.columns:
            raise RunDirError(f"{path}: column {column!r} is missing")
        if not _kind_ok(table[column], kind):
            raise RunDirError(f"{path}: column {column!r} must hold {words.get(kind, 'strings')}")


def read_table(path: Path, kinds: dict):
    """A CSV run table whose columns ``kinds`` names are present and typed (strings read as str)."""
    import pandas as pd

    from ..filegate import UnsafeFileError, check

    try:
        check(path, what="run file")
        table = pd.read_csv(path, keep_default_na=False,
                            dtype={c: str for c, kind in kinds.items() if kind == "str"})
    except UnsafeFileError as exc:
        raise RunDirError(str(exc)) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{path}: not a readable table ({(str(exc).splitlines() or [''])[0][:200]})") from None
    check_columns(table, kinds, path)
    return table


def _numbers(value, allow_none: bool = False) -> bool:
    ok = (int, float) + ((type(None),) if allow_none else ())
    return isinstance(value, dict) and all(isinstance(v, ok) and not isinstance(v, bool) for v in value.values())


def check_metrics(metrics: dict, path) -> None:
    """The values of metrics.json that the service answers from have the types it writes; else RunDirError."""
    checks = {"per_label_precision": (lambda v: _numbers(v, allow_none=True), "an object of numbers"),
              "per_label_queries": (lambda v: _numbers(v) and all(isinstance(x, int) for x in v.values()),
                                    "an object of integers"),
              "recall_at_k": (_numbers, "an object of numbers"),
              "timing": (_numbers, "an object of numbers"),
              "skipped": (lambda v: isinstance(v, list) and all(isinstance(e, (dict, str)) for e in v),
                          "a list of {path, reason}"),
              "insight": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("map") or {}, dict)),
                          "an object")}
    for key, (ok, what) in checks.items():
        if key in metrics and not ok(metrics[key]):
            raise RunDirError(f"{path}: key {key!r} must be {what}, got {str(metrics[key])[:60]!r}")


def dataset_root(info: dict, where) -> Path:
    """The run's dataset root, as run.json records it (``dataset.root``); never guessed from the items (the
    common folder of hostile paths can be ``/``). :class:`RunDirError` naming ``where`` when absent."""
    dataset = info.get("dataset")
    root = dataset.get("root") if isinstance(dataset, dict) else None
    if not isinstance(root, str) or not root.strip():
        raise RunDirError(f"{where}: no dataset root (key 'dataset.root'; a run of an older version): rerun "
                          "`fashion neighbors` on the dataset to rebuild the run")
    return Path(root).resolve()
