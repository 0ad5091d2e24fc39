"""The pieces every validator builder is made of.

A builder turns one validator config into one ``Check`` per result it will
report: a few named aggregate expressions (each reduces the frame to a single
value) and a pure ``finish`` that turns the collected values into a
``ValidatorResult``. ``validators.evaluate`` puts the aggregates of every
check into one ``select``, so the data is read once however many validators
a checkpoint has.

A builder raises ``ValidatorError`` when it cannot apply to this data (a
missing column, a dtype it cannot handle); that validator then reports
status error and the others still run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import polars as pl

from checkpointd.checkpoints._polars import list_names
from checkpointd.checkpoints.result import Status, ValidatorResult
from checkpointd.errors import ValidatorError

Values = Mapping[str, Any]
Finish = Callable[[ValidatorResult, Values, int], ValidatorResult]


@dataclass(frozen=True, slots=True)
class Context:
    """What a builder may know besides its config: the frame's schema, the time, the sample size."""

    schema: Mapping[str, pl.DataType]
    now: datetime
    sample_size: int


@dataclass(frozen=True, slots=True)
class Check:
    """One future ValidatorResult: aggregates to collect, and how to judge them.

    ``finish(base, values, row_count)`` receives the collected value of each
    aggregate under its name in ``aggs``.
    """

    base: ValidatorResult
    aggs: Mapping[str, pl.Expr]
    finish: Finish

    def complete(self, values: Values, row_count: int) -> ValidatorResult:
        return self.finish(self.base, values, row_count)


def as_error(base: ValidatorResult, message: str) -> ValidatorResult:
    """The result of a validator that could not be evaluated."""
    return replace(base, status=Status.ERROR, message=message)


def judge(failed: int, checked: int, mostly: float | None) -> Status:
    """Pass when nothing failed or, with ``mostly``, when that share of checked rows passed."""
    if checked == 0 or failed == 0:
        return Status.SUCCESS
    if mostly is None:
        return Status.FAILURE
    return Status.SUCCESS if (checked - failed) / checked >= mostly else Status.FAILURE


def ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def row_check(
    base: ValidatorResult,
    mostly: float | None,
    *,
    checked: pl.Expr,
    failed: pl.Expr,
    sample: pl.Expr,
    describe: Callable[[int, int], str],
) -> Check:
    """A check that counts failing rows.

    ``checked`` aggregates to the number of rows considered, ``failed`` is the
    per-row failure mask (null counts as passing) and ``sample`` aggregates to
    a list of failing values. ``describe(failed, checked)`` words the result.
    """
    mask = failed.fill_null(False)

    def finish(base: ValidatorResult, values: Values, _rows: int) -> ValidatorResult:
        n_checked, n_failed = int(values["checked"]), int(values["failed"])
        message = describe(n_failed, n_checked)
        if mostly is not None and n_checked:
            message += f" ({pct(ratio(n_checked - n_failed, n_checked))} pass, need {pct(mostly)})"
        return replace(
            base,
            status=judge(n_failed, n_checked, mostly),
            checked_count=n_checked,
            failed_count=n_failed,
            failed_ratio=ratio(n_failed, n_checked),
            sample=tuple(values["sample"] or ()),
            message=message,
        )

    return Check(base, {"checked": checked, "failed": mask.sum(), "sample": sample}, finish)


def stat_result(
    base: ValidatorResult, ok: bool, *, checked: int, sample: tuple[Any, ...], message: str
) -> ValidatorResult:
    """A data-set level verdict (row count, freshness, a statistic): one check that held or not.

    ``failed_count`` is 1 and ``failed_ratio`` 1.0 when it did not hold, else 0.
    """
    return replace(
        base,
        status=Status.SUCCESS if ok else Status.FAILURE,
        checked_count=checked,
        failed_count=0 if ok else 1,
        failed_ratio=0.0 if ok else 1.0,
        sample=sample,
        message=message,
    )


# ---------------------------------------------------------------- samples


def failing_values(values: pl.Expr, failed: pl.Expr, n: int, *, distinct: bool = False) -> pl.Expr:
    """The first ``n`` failing values in row order (distinct ones when asked), as a list."""
    picked = values.filter(failed.fill_null(False))
    if distinct:
        picked = picked.unique(maintain_order=True)
    return picked.head(n).implode()


def failing_rows(failed: pl.Expr, n: int) -> pl.Expr:
    """The 0-based positions of the first ``n`` failing rows, as a list."""
    return failed.fill_null(False).arg_true().head(n).implode()


# ---------------------------------------------------------------- columns


def column_dtype(ctx: Context, column: str) -> pl.DataType:
    """The dtype of a column the validator needs; ``ValidatorError`` naming it when absent."""
    dtype = ctx.schema.get(column)
    if dtype is None:
        raise ValidatorError(
            f"column {column!r} not found in the data (columns: {list_names(ctx.schema)})"
        )
    return dtype


def column_of_kind(
    ctx: Context, column: str, what: str, accepts: Callable[[pl.DataType], bool], wanted: str
) -> pl.DataType:
    """Like ``column_dtype``, and the dtype must be one ``what`` can handle."""
    dtype = column_dtype(ctx, column)
    if not accepts(dtype):
        raise ValidatorError(f"{what} needs {wanted} column; {column!r} is {dtype}")
    return dtype


def is_numeric(dtype: pl.DataType) -> bool:
    return bool(dtype.is_numeric())


def is_textual(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.String | pl.Categorical | pl.Enum)


# ---------------------------------------------------------------- wording


def num(value: float) -> str:
    """A number as people write it: ``100000`` rather than ``100000.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def pct(share: float) -> str:
    return f"{share * 100:.4g}%"


def interval(
    low: float | None, high: float | None, low_closed: bool = True, high_closed: bool = True
) -> str:
    """``[0, 100)``-style bounds; a missing bound is infinite."""
    left = ("[" if low_closed else "(") if low is not None else "("
    right = ("]" if high_closed else ")") if high is not None else ")"
    lo = num(low) if low is not None else "-inf"
    hi = num(high) if high is not None else "inf"
    return f"{left}{lo}, {hi}{right}"
