"""Shop metadata: a CSV or parquet file of columns (brand, price, in_stock, any column) joined onto a
run's item table, typed, so that every column works as a filter and a facet (:mod:`fashion.filters`).

- :func:`read_metadata`: the file, one row per item, keyed by ``relpath`` (the item's path under the
  dataset root, as the run's item table spells it) or ``id`` (the run's item id); each other column
  typed — numbers, booleans (true/false, yes/no), ISO dates (YYYY-MM-DD…), text otherwise;
- :func:`join_metadata`: its columns added to an item table (items it does not name get empty cells);
- :func:`update_run`: ``fashion update RUN --metadata FILE`` — the columns of an existing run changed
  or added without embedding anything: a new sealed run written in one transaction
  (:mod:`fashion.rundir`), every other file carried over unchanged (hard links).

A bad file, a key given twice, a column that would replace one of the run's own (id, path, label …) or
one the colour stage computes from the photos (colour, colour_2, colour_hex, colour_share), or a join that matches no item is a :class:`MetadataError`: one line naming the file (and the line).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ..errors import FashionError
from ..run import layout

log = logging.getLogger(__name__)

KEYS = ("relpath", "id")  # the join key, first one the file has
RESERVED = ("id", "path", "relpath", "label", "split", "ok", "reason", "role")  # the run's own columns
_BOOLS = {"true": True, "false": False, "yes": True, "no": False}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


class MetadataError(FashionError, ValueError):
    """A metadata file that cannot be read or joined (one line naming the file, and the line)."""


def _line(source: Path, row: int, csv: bool) -> str:
    """``FILE, line N`` of data row ``row`` (0-based; the CSV's header is line 1), or ``FILE, row N``."""
    return f"{source}, line {row + 2}" if csv else f"{source}, row {row + 1}"


def _typed(series):
    """A text column as booleans, numbers or dates when every value present reads as one, else text."""
    import pandas as pd

    present = series.dropna().astype(str).str.strip()
    present = present[present != ""]
    if not len(present):
        return series.astype(object).where(series.notna(), None)
    low = present.str.lower()
    if low.isin(list(_BOOLS)).all():
        return series.astype(str).str.strip().str.lower().map(_BOOLS).astype("boolean")
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        return pd.to_numeric(series.astype(str).str.strip().replace("", None), errors="coerce")
    if present.str.match(_DATE).all():
        dates = pd.to_datetime(present, errors="coerce", format="ISO8601")
        if dates.notna().all():
            return pd.to_datetime(series.astype(str).str.strip().replace("", None), errors="coerce", format="ISO8601")
    return series.astype(object).where(series.notna(), None)


def read_metadata(path):
    """The metadata table of ``path`` (.csv or .parquet): its key column (relpath or id) and every other
    column typed; :class:`MetadataError` naming the file (and line) when it cannot be used."""
    import pandas as pd

    source = Path(path)
    if not source.is_file():
        raise MetadataError(f"{source}: no such metadata file")
    is_csv = source.suffix.lower() != ".parquet"
    try:
        if is_csv:
            table = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True,
                                encoding="utf-8")
        else:
            table = pd.read_parquet(source)
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except (ValueError, OSError, pd.errors.ParserError, ImportError) as exc:
        # pandas' parser names the line itself ("Expected 3 fields in line 7, saw 4")
        raise MetadataError(f"{source}: not a readable {'CSV' if is_csv else 'parquet'} file "
                            f"({(str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]})") from None
    return checked_table(table, source, is_csv)


def checked_table(table, source, is_csv: bool = False):
    """``table`` (text or typed columns, as read) checked as a metadata table: a key column (relpath or
    id), no column of the run's own, no key twice, each other text column typed; ``source`` names it in
    errors (a file, or a request). :class:`MetadataError` when it cannot be used."""
    import pandas as pd

    table.columns = [str(c).strip() for c in table.columns]
    key = next((k for k in KEYS if k in table.columns), None)
    if key is None:
        raise MetadataError(f"{source}: no 'relpath' or 'id' column to join on (columns: "
                            f"{', '.join(table.columns)})"[:300])
    # with the catalogue's own columns: a shop's copy would mislead its duplicate check
    own = RESERVED + (layout.HASH_COLUMN, layout.SIZE_COLUMN)
    reserved = [c for c in table.columns if c in own and c != key]
    if reserved:
        raise MetadataError(f"{source}: column {reserved[0]!r} is one of the run's own ({', '.join(own)}); "
                            "rename it")
    from ..colour.table import COLUMNS as COLOUR_COLUMNS  # computed from the photos: never overridden

    computed = [c for c in table.columns if c in COLOUR_COLUMNS]
    if computed:
        raise MetadataError(f"{source}: column {computed[0]!r} is computed from the photos by the colour stage "
                            f"({', '.join(COLOUR_COLUMNS)}); rename it (e.g. shop_{computed[0]})")
    if len(set(table.columns)) != len(table.columns):
        dup = next(c for c in table.columns if list(table.columns).count(c) > 1)
        raise MetadataError(f"{source}: column {dup!r} appears twice")
    if len(table.columns) < 2:
        raise MetadataError(f"{source}: only the {key!r} column; nothing to add")
    keys = table[key]
    if key == "id":
        ids = pd.to_numeric(keys, errors="coerce")
        bad = np.flatnonzero(ids.isna().to_numpy() | (ids.to_numpy(dtype=float, na_value=np.nan) % 1 != 0))
        if len(bad):
            raise MetadataError(f"{_line(source, int(bad[0]), is_csv)}: id {str(keys.iat[bad[0]])[:40]!r} is not "
                                "an item id (an integer)")
        table[key] = ids.astype(np.int64)
    else:
        blank = np.flatnonzero(keys.isna().to_numpy() | (keys.astype(str).str.strip() == "").to_numpy())
        if len(blank):
            raise MetadataError(f"{_line(source, int(blank[0]), is_csv)}: empty relpath")
        table[key] = keys.astype(str).str.strip()
    dup = np.flatnonzero(table[key].duplicated().to_numpy())
    if len(dup):
        raise MetadataError(f"{_line(source, int(dup[0]), is_csv)}: {key} {str(table[key].iat[dup[0]])[:80]!r} "
                            "given twice")
    for column in table.columns:
        if column != key and (table[column].dtype == object or pd.api.types.is_string_dtype(table[column].dtype)):
            table[column] = _typed(table[column])
    table.attrs["source"], table.attrs["csv"] = str(source), is_csv
    return table


def join_metadata(items, metadata):
    """``items`` (a run's item table or a dataset's item frame, row i = item i) with the columns of
    ``metadata`` (:func:`read_metadata`) beside them: a new column is empty where the file names no item;
    in a column the items already have, the items the file names get its values and the others keep
    theirs. :class:`MetadataError` when no row of the file names an item."""
    import pandas as pd

    source, is_csv = metadata.attrs.get("source", "metadata"), metadata.attrs.get("csv", True)
    key = next(k for k in KEYS if k in metadata.columns)
    if key == "id":
        item_keys = pd.Series(np.arange(len(items), dtype=np.int64))
    else:
        item_keys = pd.Series(items["relpath"].astype(str).to_numpy())
    position = pd.Index(item_keys).get_indexer(metadata[key])
    matched = position >= 0
    if not matched.any():
        raise MetadataError(f"{_line(source, 0, is_csv)}: {key} {str(metadata[key].iat[0])[:80]!r} is no item of "
                            f"the run, nor is any other row's (join on {key}: "
                            + ("the items' paths under the dataset root)" if key == "relpath" else "ids 0..n-1)"))
    if not matched.all():
        first = int(np.flatnonzero(~matched)[0])
        log.warning("%s: %d of %d rows name no item of the run (first: %s)", source, int((~matched).sum()),
                    len(metadata), _line(source, first, is_csv))
    out = items.copy()
    rows = metadata[matched]
    for column in metadata.columns:
        if column == key:
            continue
        values = rows[column]
        full = np.full(len(out), None, dtype=object)
        if column in out.columns:  # a column the items have: the rows the file names change, the rest stay
            full[:] = out[column].to_numpy(dtype=object, na_value=None)
        full[position[matched]] = values.to_numpy(dtype=object, na_value=None)
        out[column] = _retyped(pd.Series(full, index=out.index), values.dtype)
    log.info("%s: %d columns joined onto %d of %d items on %s", source, len(metadata.columns) - 1,
             int(matched.sum()), len(items), key)
    return out


def _retyped(series, dtype):
    """``series`` (object, None where missing) back in the metadata column's ``dtype`` (nullable)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(dtype):
        return series.astype("boolean")
    if pd.api.types.is_numeric_dtype(dtype):
        return pd.to_numeric(series, errors="coerce")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.to_datetime(series, errors="coerce")
    return series


def update_run(run_dir, metadata_file, wait: float | None = None, keep: int | None = None) -> dict:
    """``fashion update RUN --metadata FILE``: a new sealed version of the run whose item table carries
    the file's columns (added, or changed for the items it names); embeddings, index and neighbour lists
    carried over unchanged. ``metadata_file``: a path, or a table :func:`read_metadata` would return.
    Under the run's writer lock (waiting up to ``wait`` seconds); ``keep`` old versions kept
    (:mod:`.versions`). Returns {"columns", "matched", "items", "version"}."""
    # a bad file is refused before the run is touched
    metadata = metadata_file if hasattr(metadata_file, "columns") else read_metadata(metadata_file)
    columns = [c for c in metadata.columns if c not in KEYS]
    source = Path(str(metadata.attrs.get("source", "metadata"))).name

    def change(run):
        from .versions import stamp

        info = stamp(dict(run.info), {"op": "update", "columns": columns, "count": len(metadata),
                                      "source": source})
        info["metadata"] = {"source": source, "columns": sorted(
            set(info.get("metadata", {}).get("columns", [])) | set(columns))}
        return join_metadata(run.items.reset_index(drop=True), metadata), info

    items, info = rewrite_items(run_dir, change, wait=wait, keep=keep)
    key = next(k for k in KEYS if k in metadata.columns)
    matched = int(np.isin(metadata[key].to_numpy(), items[key].to_numpy() if key == "relpath"
                          else np.arange(len(items))).sum())
    return {"columns": columns, "matched": matched, "items": len(items), "version": info["version"]}


def rewrite_items(run_dir, change, wait: float | None = None, keep: int | None = None):
    """Commit a new sealed version of the run at ``run_dir`` whose item table (and run.json) is
    ``change(run) -> (items, info)``; every other file is carried over unchanged (hard links). Under the
    run's writer lock (waiting up to ``wait`` seconds); ``keep`` old versions kept. Returns (items, info)."""
    from .. import rundir
    from ..atomic import write_json
    from ..run import writer
    from ..run.reader import open_run, pinned
    from . import versions

    run_dir = Path(run_dir)
    with versions.writer(run_dir, wait=versions.DEFAULT_WAIT if wait is None else wait):
        with pinned(run_dir):
            run = open_run(run_dir, load_index=False)
            manifest = rundir.read_manifest(run_dir)
        items, info = change(run)
        with versions.transaction(run_dir, kind=manifest.get("kind", layout.RUN_KIND)) as txn:
            carried = [rel for rel in manifest["files"] if not rel.startswith(f"{layout.ITEMS_DIR}/")
                       and rel != layout.RUN_JSON]
            for rel in carried:
                writer.link_or_copy(run_dir / rel, txn.path / rel)
            writer.write_items(txn.path, items)
            info["run_id"] = txn.run_id
            write_json(txn.path / layout.RUN_JSON, info)
    versions.prune(run_dir, versions.DEFAULT_KEEP if keep is None else keep)
    return items, info
