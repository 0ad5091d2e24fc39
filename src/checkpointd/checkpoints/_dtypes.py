"""Dtype names as operators write them in a config file, and how to apply them.

``dtypes: {amount: Float64, day: Date}`` in a data source and the ``schema``
validator both name polars dtypes. Names are matched case-insensitively, and
the common aliases (``Utf8``/``Str`` for String, ``Bool`` for Boolean) work.
``Datetime`` means microsecond precision without a time zone when it is
applied, and any Datetime (any unit, any zone) when it is compared.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

_CANONICAL: dict[str, pl.DataType] = {
    "Int8": pl.Int8(),
    "Int16": pl.Int16(),
    "Int32": pl.Int32(),
    "Int64": pl.Int64(),
    "UInt8": pl.UInt8(),
    "UInt16": pl.UInt16(),
    "UInt32": pl.UInt32(),
    "UInt64": pl.UInt64(),
    "Float32": pl.Float32(),
    "Float64": pl.Float64(),
    "Boolean": pl.Boolean(),
    "String": pl.String(),
    "Date": pl.Date(),
    "Datetime": pl.Datetime("us"),
    "Time": pl.Time(),
    "Duration": pl.Duration("us"),
    "Categorical": pl.Categorical(),
}
_ALIASES = {"utf8": "String", "str": "String", "bool": "Boolean"}
_BY_LOWER = {name.lower(): name for name in _CANONICAL} | _ALIASES

VALID_NAMES: tuple[str, ...] = (*_CANONICAL, "Utf8")
"""Every dtype name a config may use (aliases aside), for error messages."""

_PARSED_FROM_STRING = (pl.Date, pl.Datetime, pl.Time)


def parse_dtype(name: str) -> pl.DataType:
    """The polars dtype a config names; ``ValueError`` listing the valid names otherwise."""
    canonical = _BY_LOWER.get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown dtype {name!r}; valid names: {', '.join(VALID_NAMES)}")
    return _CANONICAL[canonical]


def parse_dtypes(dtypes: Mapping[str, str] | None) -> dict[str, pl.DataType]:
    """Parse a ``column -> dtype name`` mapping; the error names the column."""
    parsed: dict[str, pl.DataType] = {}
    for column, name in (dtypes or {}).items():
        try:
            parsed[column] = parse_dtype(name)
        except ValueError as exc:
            raise ValueError(f"column {column!r}: {exc}") from None
    return parsed


def dtype_matches(actual: pl.DataType, name: str) -> bool:
    """Whether a column's dtype is the one a config names (units and zones ignored)."""
    expected = parse_dtype(name)
    return bool(actual.base_type() == expected.base_type())


def cast_expr(column: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """An expression turning ``column`` from ``source`` into ``target``, strictly.

    Polars 2 no longer casts strings to temporal types, so those are parsed;
    a value that does not convert fails the query instead of becoming null.
    """
    col = pl.col(column)
    if source == pl.String and isinstance(target, _PARSED_FROM_STRING):
        if isinstance(target, pl.Date):
            return col.str.to_date(strict=True)
        if isinstance(target, pl.Datetime):
            return col.str.to_datetime(time_unit=target.time_unit, strict=True)
        return col.str.to_time(strict=True)
    return col.cast(target, strict=True)
