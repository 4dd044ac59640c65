"""Item filters: a small grammar, parsed (never evaluated as code) into a row mask over an item table.

One clause per filter; several clauses are ANDed (``--filter`` and ``filter=`` repeat)::

    label=dress          split!=test          price<100          price>=9.5
    in_stock=true        brand in Acme,Zeta   colour not in black,grey
    added>=2026-01-31

    clause := COLUMN OP VALUE | COLUMN ("in" | "not in") VALUE ("," VALUE)*
    OP     := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="

A value is read as the column's type: a number for a numeric column, ``true/false/yes/no/1/0`` for a
boolean one, an ISO 8601 date for a date one, text otherwise. Text compares case-insensitively
(``label=Dress`` matches ``dress``) and may be quoted (``brand="Acme, Inc"``); order operators need a
number or a date. A missing value (empty cell, NaN) matches no clause, ``!=`` included, as in SQL.
An unknown column, an operator the column's type has no meaning for, or a value that is not of the
column's type is a :class:`FilterError`: one line naming the clause.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import FashionError

OPERATORS = ("=", "==", "!=", "<", "<=", ">", ">=", "in", "not in")
ORDER_OPERATORS = ("<", "<=", ">", ">=")
MAX_CLAUSE = 1000  # characters: a filter is a few words; a longer one is refused before parsing
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_COMPARISON = re.compile(r"^\s*(?P<column>[^\s=!<>]+?)\s*(?P<op>==|!=|<=|>=|=|<|>)\s*(?P<value>.*?)\s*$", re.S)
_MEMBERSHIP = re.compile(r"^\s*(?P<column>\S+)\s+(?P<op>not\s+in|in)\s+(?P<value>.+?)\s*$", re.S | re.I)


class FilterError(FashionError, ValueError):
    """A filter clause that cannot be parsed or does not fit the item table (HTTP 422, one CLI line)."""


@dataclass(frozen=True)
class Clause:
    """One parsed clause: ``column op values`` (one value except for ``in`` / ``not in``)."""

    column: str
    op: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        if self.op in ("in", "not in"):
            return f"{self.column} {self.op} {','.join(self.values)}"
        return f"{self.column}{self.op}{self.values[0]}"


def _split_values(text: str, clause: str) -> tuple[str, ...]:
    """Comma-separated values, each optionally double-quoted (a quoted value may hold a comma)."""
    try:
        values = next(csv.reader([text], skipinitialspace=True))
    except (csv.Error, StopIteration):
        raise FilterError(f"filter {clause!r}: unreadable value list {text!r}") from None
    values = tuple(v.strip() for v in values)
    if not values or any(v == "" for v in values):
        raise FilterError(f"filter {clause!r}: empty value in the list {text!r}")
    return values


def parse(text: str) -> Clause:
    """One clause from its text; :class:`FilterError` naming it when it is not one.

    >>> parse("brand in Acme, Zeta")
    Clause(column='brand', op='in', values=('Acme', 'Zeta'))
    >>> parse('price <= 99.5')
    Clause(column='price', op='<=', values=('99.5',))
    """
    if not isinstance(text, str) or not text.strip():
        raise FilterError("empty filter: write COLUMN OP VALUE, e.g. label=dress or price<100")
    if len(text) > MAX_CLAUSE:
        raise FilterError(f"filter of {len(text)} characters: at most {MAX_CLAUSE}")
    found = _MEMBERSHIP.match(text)
    if found:
        op = " ".join(found["op"].lower().split())
        return Clause(found["column"], op, _split_values(found["value"], text))
    found = _COMPARISON.match(text)
    if not found:
        raise FilterError(f"filter {text!r}: expected COLUMN OP VALUE with OP one of "
                          f"{', '.join(OPERATORS)} (e.g. label=dress, price<100, brand in Acme,Zeta)")
    op = "=" if found["op"] == "==" else found["op"]
    value = found["value"]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    elif value[:1] in ("=", "<", ">", "!"):  # price<>3, label=!x: an operator typo, not a value (quote it)
        raise FilterError(f"filter {text!r}: {found['op'] + value[0]!r} is not an operator (one of "
                          f"{', '.join(OPERATORS)}); quote a value that starts with {value[0]!r}")
    if value == "":
        raise FilterError(f"filter {text!r}: no value after {found['op']!r}")
    return Clause(found["column"], op, (value,))


def parse_all(texts: Iterable[Clause | str] | str | None) -> list[Clause]:
    """Every clause of ``texts`` (one string or several, parsed ones kept as they are; None: none), to be
    ANDed."""
    if texts is None:
        return []
    if isinstance(texts, str):
        texts = [texts]
    return [t if isinstance(t, Clause) else parse(t) for t in texts]


def column_kind(series) -> str:
    """How a column's values compare: "bool", "number", "date" or "text"."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date"
    return "text"


def _typed(value: str, kind: str, clause: Clause, series):
    import pandas as pd

    if kind == "bool":
        low = value.lower()
        if low not in _TRUE + _FALSE:
            raise FilterError(f"filter {str(clause)!r}: {clause.column} holds true/false, not {value!r}")
        return low in _TRUE
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            raise FilterError(f"filter {str(clause)!r}: {clause.column} holds numbers, not {value!r}") from None
        if np.isnan(number):
            raise FilterError(f"filter {str(clause)!r}: NaN matches nothing; compare with a number")
        return number
    if kind == "date":
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise FilterError(f"filter {str(clause)!r}: {clause.column} holds dates (YYYY-MM-DD), "
                              f"not {value!r}") from None
        tz = getattr(series.dt, "tz", None)
        if tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(tz)
        return stamp
    return value.casefold()


def clause_mask(table, clause: Clause) -> np.ndarray:
    """Boolean mask of the rows of ``table`` (a DataFrame) that ``clause`` keeps."""
    if clause.column not in table.columns:
        known = ", ".join(map(str, table.columns))
        raise FilterError(f"filter {str(clause)!r}: no column {clause.column!r} (columns: {known})"[:400])
    series = table[clause.column]
    kind = column_kind(series)
    if clause.op in ORDER_OPERATORS and kind not in ("number", "date"):
        raise FilterError(f"filter {str(clause)!r}: {clause.op!r} needs a number or date column; "
                          f"{clause.column} holds {kind}")
    present = series.notna().to_numpy().copy()
    if kind == "text":
        present &= series.astype(str).str.len().to_numpy() > 0
        series = series.astype(str).str.casefold()
    values = [_typed(v, kind, clause, series) for v in clause.values]
    if clause.op in ("in", "not in"):
        hit = series.isin(values).to_numpy()
        return present & (hit if clause.op == "in" else ~hit)
    compare = {"=": series.eq, "!=": series.ne, "<": series.lt, "<=": series.le, ">": series.gt, ">=": series.ge}
    return present & compare[clause.op](values[0]).to_numpy(dtype=bool, na_value=False)


def mask(table, clauses: Iterable[Clause | str] | str | None) -> np.ndarray:
    """Rows of ``table`` kept by every clause (text clauses are parsed first); all True when none."""
    clauses = parse_all(clauses)
    keep = np.ones(len(table), dtype=bool)
    for clause in clauses:
        keep &= clause_mask(table, clause)
    return keep
