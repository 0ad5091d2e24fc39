"""One small, pure builder per validator type, and the registry that maps type -> builder.

Semantics (also in ``validators``' docstring): nulls are ignored by every
validator except ``not_null`` and ``null_ratio``; ``not_null`` and
``null_ratio`` report one result per column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

import polars as pl

from checkpointd.checkpoints._checks import (
    Check,
    Context,
    Values,
    column_dtype,
    column_of_kind,
    failing_rows,
    failing_values,
    interval,
    is_numeric,
    is_textual,
    num,
    pct,
    ratio,
    row_check,
    stat_result,
)
from checkpointd.checkpoints._dtypes import dtype_matches, parse_dtype
from checkpointd.checkpoints._polars import POLARS_FAILURES, brief_error, list_names
from checkpointd.checkpoints.result import Status, ValidatorResult
from checkpointd.config.models import (
    ExpressionValidator,
    FreshnessValidator,
    InSetValidator,
    MeanBetweenValidator,
    NotNullValidator,
    NullRatioValidator,
    RangeValidator,
    RegexValidator,
    RowCountValidator,
    SchemaValidator,
    StddevBetweenValidator,
    UniqueValidator,
)
from checkpointd.errors import ValidatorError

Builder = Callable[[Any, ValidatorResult, Context], Check]


def not_null(cfg: NotNullValidator, base: ValidatorResult, ctx: Context) -> Check:
    column = str(base.column)
    column_dtype(ctx, column)
    is_null = pl.col(column).is_null()
    return row_check(
        base,
        cfg.mostly,
        checked=pl.len(),
        failed=is_null,
        sample=failing_rows(is_null, ctx.sample_size),
        describe=lambda bad, n: f"{bad} of {n} values of {column} are null",
    )


def null_ratio(cfg: NullRatioValidator, base: ValidatorResult, ctx: Context) -> Check:
    column = str(base.column)
    column_dtype(ctx, column)
    is_null = pl.col(column).is_null()

    def finish(base: ValidatorResult, values: Values, rows: int) -> ValidatorResult:
        nulls = int(values["nulls"])
        share = ratio(nulls, rows)
        return replace(
            base,
            status=Status.SUCCESS if share <= cfg.max else Status.FAILURE,
            checked_count=rows,
            failed_count=nulls,
            failed_ratio=share,
            sample=tuple(values["sample"] or ()),
            message=f"{pct(share)} of {rows} values of {column} are null (max {pct(cfg.max)})",
        )

    aggs = {"nulls": is_null.sum(), "sample": failing_rows(is_null, ctx.sample_size)}
    return Check(base, aggs, finish)


def unique(cfg: UniqueValidator, base: ValidatorResult, ctx: Context) -> Check:
    for column in cfg.columns:
        column_dtype(ctx, column)
    names = cfg.columns
    key = pl.col(names[0]) if len(names) == 1 else pl.struct(names)
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in names)
    # Every row of a repeated key fails, so a value seen twice fails two rows.
    repeated = key.is_duplicated() & complete
    label = names[0] if len(names) == 1 else f"({', '.join(names)})"
    return row_check(
        base,
        cfg.mostly,
        checked=complete.sum(),
        failed=repeated,
        sample=failing_values(key, repeated, ctx.sample_size, distinct=True),
        describe=lambda bad, n: f"{bad} of {n} rows share their {label} with another row",
    )


def range_(cfg: RangeValidator, base: ValidatorResult, ctx: Context) -> Check:
    dtype = column_of_kind(ctx, cfg.column, "range", is_numeric, "a numeric")
    col = pl.col(cfg.column)
    outside = pl.lit(False)
    if cfg.min is not None:
        outside = outside | (col < cfg.min if cfg.min_inclusive else col <= cfg.min)
    if cfg.max is not None:
        outside = outside | (col > cfg.max if cfg.max_inclusive else col >= cfg.max)
    if dtype.is_float():
        outside = outside | col.is_nan()  # NaN is in no interval
    bounds = interval(cfg.min, cfg.max, cfg.min_inclusive, cfg.max_inclusive)
    return row_check(
        base,
        cfg.mostly,
        checked=col.is_not_null().sum(),
        failed=outside,
        sample=failing_values(col, outside, ctx.sample_size),
        describe=lambda bad, n: f"{bad} of {n} values of {cfg.column} outside {bounds}",
    )


def in_set(cfg: InSetValidator, base: ValidatorResult, ctx: Context) -> Check:
    dtype = column_dtype(ctx, cfg.column)
    col, allowed = _comparable(cfg.column, dtype, [v for v in cfg.values if v is not None])
    outside = ~col.is_in(allowed.implode())
    shown = list_names([num(v) if isinstance(v, float) else str(v) for v in cfg.values])
    return row_check(
        base,
        cfg.mostly,
        checked=col.is_not_null().sum(),
        failed=outside,
        sample=failing_values(pl.col(cfg.column), outside, ctx.sample_size),
        describe=lambda bad, n: f"{bad} of {n} values of {cfg.column} not in {{{shown}}}",
    )


def _comparable(column: str, dtype: pl.DataType, values: list[Any]) -> tuple[pl.Expr, pl.Series]:
    """The column and the allowed values in one dtype (polars 2 ``is_in`` does not coerce)."""
    col = pl.col(column)
    if is_textual(dtype):
        col, dtype = col.cast(pl.String), pl.String()
    try:
        return col, pl.Series(values, dtype=dtype, strict=True)
    except POLARS_FAILURES:
        pass
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if is_numeric(dtype) and numbers:
        return col.cast(pl.Float64), pl.Series(values, dtype=pl.Float64)
    raise ValidatorError(f"in_set values {values!r} cannot be compared with {column!r} ({dtype})")


def regex(cfg: RegexValidator, base: ValidatorResult, ctx: Context) -> Check:
    dtype = column_of_kind(ctx, cfg.column, "regex", is_textual, "a string")
    try:  # the config checked Python syntax; polars uses Rust's, which lacks look-around
        pl.select(pl.lit("").str.contains(cfg.pattern))
    except POLARS_FAILURES as exc:
        raise ValidatorError(f"pattern {cfg.pattern!r} is not valid: {brief_error(exc)}") from None
    col = pl.col(cfg.column)
    text = col if dtype == pl.String else col.cast(pl.String)
    # A search, not a full match: anchor the pattern with ^...$ to match whole values.
    mismatch = ~text.str.contains(cfg.pattern)
    return row_check(
        base,
        cfg.mostly,
        checked=col.is_not_null().sum(),
        failed=mismatch,
        sample=failing_values(col, mismatch, ctx.sample_size),
        describe=lambda bad, n: f"{bad} of {n} values of {cfg.column} do not match {cfg.pattern!r}",
    )


def expression(cfg: ExpressionValidator, base: ValidatorResult, ctx: Context) -> Check:
    try:
        expr = pl.sql_expr(cfg.expr)
        roots = expr.meta.root_names()
    except POLARS_FAILURES as exc:
        raise ValidatorError(f"invalid SQL expression {cfg.expr!r}: {brief_error(exc)}") from None
    for column in roots:
        column_dtype(ctx, column)
    try:
        dtype = pl.LazyFrame(schema=ctx.schema).select(expr.alias("e")).collect_schema()["e"]
    except POLARS_FAILURES as exc:
        raise ValidatorError(f"cannot evaluate {cfg.expr!r}: {brief_error(exc)}") from None
    if dtype != pl.Boolean:
        raise ValidatorError(
            f"expression {cfg.expr!r} must be true or false per row; it is {dtype}"
        )
    violated = ~expr
    sample = (
        failing_values(pl.struct(roots), violated, ctx.sample_size)
        if roots
        else failing_rows(violated, ctx.sample_size)
    )
    return row_check(
        base,
        cfg.mostly,
        checked=expr.is_not_null().sum(),
        failed=violated,
        sample=sample,
        describe=lambda bad, n: f"{bad} of {n} rows do not satisfy {cfg.expr}",
    )


def row_count(cfg: RowCountValidator, base: ValidatorResult, ctx: Context) -> Check:
    def finish(base: ValidatorResult, _values: Values, rows: int) -> ValidatorResult:
        too_few = cfg.min is not None and rows < cfg.min
        too_many = cfg.max is not None and rows > cfg.max
        if cfg.min is not None and cfg.max is not None:
            wanted = f"between {cfg.min} and {cfg.max}"
        else:
            wanted = f"at least {cfg.min}" if cfg.min is not None else f"at most {cfg.max}"
        return stat_result(
            base,
            not (too_few or too_many),
            checked=rows,
            sample=(rows,),
            message=f"{rows} rows, expected {wanted}",
        )

    return Check(base, {}, finish)


def schema(cfg: SchemaValidator, base: ValidatorResult, ctx: Context) -> Check:
    problems: list[str] = []
    for column, name in cfg.columns.items():
        if name is not None:
            try:
                parse_dtype(name)
            except ValueError as exc:
                raise ValidatorError(f"column {column!r}: {exc}") from None
        actual = ctx.schema.get(column)
        if actual is None:
            problems.append(f"{column} (missing)")
        elif name is not None and not dtype_matches(actual, name):
            problems.append(f"{column} (expected {name}, found {actual})")
    extra = [] if cfg.allow_extra else [c for c in ctx.schema if c not in cfg.columns]
    problems.extend(f"{column} (not allowed)" for column in extra)
    checked = len(cfg.columns) + len(extra)

    def finish(base: ValidatorResult, _values: Values, _rows: int) -> ValidatorResult:
        if problems:
            message = (
                f"{len(problems)} of {checked} columns do not match the schema: "
                f"{list_names(problems, limit=5)}"
            )
        else:
            message = f"all {checked} columns match the schema"
        return replace(
            base,
            status=Status.FAILURE if problems else Status.SUCCESS,
            checked_count=checked,
            failed_count=len(problems),
            failed_ratio=ratio(len(problems), checked),
            sample=tuple(problems[: ctx.sample_size]),
            message=message,
        )

    return Check(base, {}, finish)


def freshness(cfg: FreshnessValidator, base: ValidatorResult, ctx: Context) -> Check:
    column_of_kind(
        ctx,
        cfg.column,
        "freshness",
        lambda d: isinstance(d, pl.Datetime | pl.Date),
        "a Datetime or Date",
    )
    col = pl.col(cfg.column)

    def finish(base: ValidatorResult, values: Values, _rows: int) -> ValidatorResult:
        checked, newest = int(values["checked"]), values["newest"]
        if newest is None:
            message = f"no timestamps in {cfg.column} to judge freshness by"
            return stat_result(base, False, checked=checked, sample=(), message=message)
        age = ctx.now - _as_utc(newest)
        ok = age <= cfg.max_age
        message = f"newest {cfg.column} is {newest.isoformat()}, {age} old (max {cfg.max_age})"
        return stat_result(base, ok, checked=checked, sample=(newest,), message=message)

    return Check(base, {"checked": col.is_not_null().sum(), "newest": col.max()}, finish)


def _as_utc(value: datetime | date) -> datetime:
    """Naive timestamps are UTC; a Date counts from its midnight, UTC."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time.min, tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stat_between(
    kind: str, stat: Callable[[pl.Expr], pl.Expr]
) -> Callable[[MeanBetweenValidator | StddevBetweenValidator, ValidatorResult, Context], Check]:
    def build(
        cfg: MeanBetweenValidator | StddevBetweenValidator, base: ValidatorResult, ctx: Context
    ) -> Check:
        column_of_kind(ctx, cfg.column, cfg.type, is_numeric, "a numeric")
        col = pl.col(cfg.column)
        bounds = interval(cfg.min, cfg.max)

        def finish(base: ValidatorResult, values: Values, _rows: int) -> ValidatorResult:
            checked, value = int(values["checked"]), values["value"]
            if value is None:
                message = f"cannot compute the {kind} of {cfg.column} from {checked} values"
                return stat_result(base, False, checked=checked, sample=(), message=message)
            value = float(value)
            ok = (cfg.min is None or value >= cfg.min) and (cfg.max is None or value <= cfg.max)
            message = f"{kind} of {cfg.column} is {num(value)}, expected within {bounds}"
            return stat_result(base, ok, checked=checked, sample=(value,), message=message)

        return Check(base, {"checked": col.is_not_null().sum(), "value": stat(col)}, finish)

    return build


BUILDERS: Mapping[str, Builder] = {
    "not_null": not_null,
    "null_ratio": null_ratio,
    "unique": unique,
    "range": range_,
    "in_set": in_set,
    "regex": regex,
    "expression": expression,
    "row_count": row_count,
    "schema": schema,
    "freshness": freshness,
    "mean_between": _stat_between("mean", lambda c: c.mean()),
    "stddev_between": _stat_between("standard deviation", lambda c: c.std()),
}
"""Validator type -> builder. Every type of ``ValidatorConfig`` has one."""
