"""Validators: judge a LazyFrame against a checkpoint's validator configs in one pass.

``evaluate`` asks every validator's builder (``_builders.BUILDERS``) for
aggregate expressions, checks them against the frame's schema, and collects
them all in a single ``frame.select(...)``: the data is read once, whatever
the number of validators. Samples of failing values come from that same pass.

Semantics, one ``ValidatorResult`` each unless said otherwise:

- Nulls are ignored (not checked, never failing) by every validator except
  ``not_null`` and ``null_ratio``, whose ``checked_count`` is every row.
- ``not_null`` and ``null_ratio`` report one result per column, so counts are
  exact per column. Their failing values are all null, so their ``sample``
  holds the 0-based positions of the first null rows instead.
- ``unique`` fails every row whose key occurs more than once (a value seen
  twice fails two rows); rows with a null in the key are not checked. Its
  sample lists distinct repeated keys (dicts for several columns).
- ``range`` bounds are inclusive unless ``min_inclusive``/``max_inclusive``
  say otherwise; NaN is outside every range.
- ``regex`` searches (``str.contains``, Rust regex syntax): anchor the pattern
  with ``^...$`` to demand a full match. Categorical columns are read as text.
- ``expression`` is a polars SQL boolean expression that must hold per row; a
  row where it is null is not checked. Its sample holds the referenced columns
  of failing rows.
- ``failed_ratio`` is ``failed_count / checked_count`` (0 when nothing was
  checked). ``mostly: 0.99`` passes when at least 99% of checked rows pass.
- Data-set level validators (``row_count``, ``freshness``, ``mean_between``,
  ``stddev_between``) make one check: ``checked_count`` is the rows (non-null
  values) it looked at, ``failed_count``/``failed_ratio`` are 1/1.0 when it
  failed and 0/0.0 otherwise, the sample holds the measured value, and
  ``mostly`` does not apply. ``freshness`` reads naive timestamps (and Dates,
  from midnight) as UTC; with no timestamp at all it fails. A mean or standard
  deviation that cannot be computed (no values; one value for stddev) fails.
- ``null_ratio`` counts nulls as failed rows and fails when their share
  exceeds ``max``. ``schema`` checks each required column (plus each extra
  column when ``allow_extra`` is false) and fails on every missing, mistyped
  or unexpected one.
- A validator on a column the data lacks, or on a dtype it cannot handle, has
  status error and a message naming the column; the others still run.
- ``status`` is success or failure whatever the severity; ``severity: warning``
  is copied along and ``overall_status`` turns such a failure into a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import polars as pl

from checkpointd.checkpoints._builders import BUILDERS
from checkpointd.checkpoints._checks import Check, Context, as_error
from checkpointd.checkpoints._polars import POLARS_FAILURES, brief_error
from checkpointd.checkpoints.result import Status, ValidatorResult
from checkpointd.config.models import (
    FreshnessValidator,
    NotNullValidator,
    NullRatioValidator,
    UniqueValidator,
    ValidatorConfig,
)
from checkpointd.errors import DataSourceError, ValidatorError

__all__ = ["Engine", "Evaluation", "PlanCache", "evaluate"]

_ROWS = "__rows__"

Planned = Check | ValidatorResult
Engine = Literal["auto", "in-memory", "streaming"]
"""Which polars engine collects: ``auto`` is polars' default (streaming, which keeps
large scans memory-bounded); ``in-memory`` avoids the streaming engine's fixed cost of a
few hundred microseconds per query, which dominates on small in-memory frames."""

_PlanKey = tuple[int, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class _QueryPlan:
    errors: dict[int, ValidatorResult]  # checks that failed the dry run, by position
    planned: tuple[Planned, ...] | None  # the whole plan, when it does not depend on ``now``


class PlanCache:
    """Remembers one validator list's plan per schema, so a repeat run skips planning.

    Which checks resolve depends only on the schema and the validator configs, so a
    checkpoint (whose validators are fixed) that sees the same schema again skips the
    dry run: the checks that failed it get the same error results as the first time.
    The checks themselves (polars expressions and a pure ``finish``) are reused too,
    unless a validator judges against ``now`` (``freshness``), whose checks are rebuilt
    each run. Give each validator list its own cache. At most ``size`` schemas are kept;
    when full it starts over (a source whose schema keeps changing is rare). Safe across
    threads: entries are immutable and concurrent misses only repeat the work.
    """

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._plans: dict[_PlanKey, _QueryPlan] = {}

    def get(self, key: _PlanKey) -> _QueryPlan | None:
        return self._plans.get(key)

    def put(self, key: _PlanKey, plan: _QueryPlan) -> None:
        if len(self._plans) >= self._size:
            self._plans.clear()
        self._plans[key] = plan


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What ``evaluate`` found: the number of rows and one result per check, in config order."""

    row_count: int
    results: tuple[ValidatorResult, ...]


def evaluate(
    frame: pl.LazyFrame,
    validators: Sequence[ValidatorConfig],
    *,
    now: datetime,
    sample_size: int = 5,
    source: str | None = None,
    engine: Engine = "auto",
    plan_cache: PlanCache | None = None,
) -> Evaluation:
    """Evaluate every validator against ``frame`` in one query plan (one pass over the data).

    ``now`` is the reference time of ``freshness`` (naive means UTC).
    ``source`` names the data in error messages (``sources.describe_source``).
    ``engine`` is the polars engine of the pass over the data. ``plan_cache``, kept by
    the caller for this validator list, spares the dry run on a schema seen before.
    Raises ``DataSourceError`` when the data itself cannot be read, including
    errors a lazy scan deferred until now; a validator that cannot run on this
    data gets status error instead.
    """
    what = source or "the data"
    try:
        schema = frame.collect_schema()
    except POLARS_FAILURES as exc:
        raise DataSourceError(f"cannot read {what}: {brief_error(exc)}") from exc
    ctx = Context(schema=schema, now=_utc(now), sample_size=sample_size)
    if plan_cache is None:
        planned = _dry_run([p for cfg in validators for p in _plan(cfg, ctx)], ctx)
    else:
        planned = _cached_plan(plan_cache, validators, ctx)
    checks = {i: p for i, p in enumerate(planned) if isinstance(p, Check)}
    exprs = [pl.len().alias(_ROWS)]
    exprs += [e.alias(f"{i}:{name}") for i, c in checks.items() for name, e in c.aggs.items()]
    try:
        row = frame.select(exprs).collect(engine=engine).row(0, named=True)
    except POLARS_FAILURES as exc:
        return _isolate(frame, planned, ctx, what, exc)
    rows = int(row[_ROWS])
    results = [
        p.complete({name: row[f"{i}:{name}"] for name in p.aggs}, rows)
        if isinstance(p, Check)
        else p
        for i, p in enumerate(planned)
    ]
    return Evaluation(row_count=rows, results=tuple(results))


def _cached_plan(
    cache: PlanCache, validators: Sequence[ValidatorConfig], ctx: Context
) -> list[Planned]:
    key = (ctx.sample_size, tuple((name, repr(dtype)) for name, dtype in ctx.schema.items()))
    cached = cache.get(key)
    if cached is not None and cached.planned is not None:
        return list(cached.planned)
    planned = [p for cfg in validators for p in _plan(cfg, ctx)]
    if cached is not None:
        return [cached.errors.get(i, p) for i, p in enumerate(planned)]
    tried = _dry_run(planned, ctx)
    errors = {
        i: after
        for i, (before, after) in enumerate(zip(planned, tried, strict=True))
        if isinstance(before, Check) and isinstance(after, ValidatorResult)
    }
    timeless = not any(isinstance(cfg, FreshnessValidator) for cfg in validators)
    cache.put(key, _QueryPlan(errors, tuple(tried) if timeless else None))
    return tried


def _plan(cfg: ValidatorConfig, ctx: Context) -> list[Planned]:
    """The checks of one validator config, or error results for those that cannot run."""
    builder = BUILDERS[cfg.type]
    planned: list[Planned] = []
    for base in _bases(cfg):
        try:
            planned.append(builder(cfg, base, ctx))
        except ValidatorError as exc:
            planned.append(as_error(base, str(exc)))
    return planned


def _bases(cfg: ValidatorConfig) -> list[ValidatorResult]:
    """The identity of each result a config yields (status is set when it is judged)."""

    def base(column: str | None = None, columns: Sequence[str] = ()) -> ValidatorResult:
        return ValidatorResult(
            type=cfg.type,
            status=Status.ERROR,
            severity=cfg.severity,
            column=column,
            columns=tuple(columns),
            name=cfg.name,
        )

    if isinstance(cfg, NotNullValidator | NullRatioValidator):
        return [base(column) for column in cfg.columns]
    if isinstance(cfg, UniqueValidator):
        cols = cfg.columns
        return [base(cols[0]) if len(cols) == 1 else base(columns=cols)]
    return [base(getattr(cfg, "column", None))]


def _dry_run(planned: list[Planned], ctx: Context) -> list[Planned]:
    """Try the plan on an empty frame of the same schema, so a bad expression fails alone.

    Usually everything resolves together and this costs one tiny query; when
    it does not, each check is tried alone and those that fail become errors.
    """
    empty = pl.LazyFrame(schema=ctx.schema)

    def resolves(checks: Sequence[Check]) -> BaseException | None:
        exprs = [e.alias(f"{i}:{n}") for i, c in enumerate(checks) for n, e in c.aggs.items()]
        try:
            empty.select(pl.len().alias(_ROWS), *exprs).collect(engine="in-memory")
        except POLARS_FAILURES as exc:
            return exc
        return None

    if resolves([p for p in planned if isinstance(p, Check)]) is None:
        return planned
    out: list[Planned] = []
    for p in planned:
        error = resolves([p]) if isinstance(p, Check) else None
        if isinstance(p, Check) and error is not None:
            out.append(as_error(p.base, f"cannot evaluate: {brief_error(error)}"))
        else:
            out.append(p)
    return out


def _isolate(
    frame: pl.LazyFrame, planned: list[Planned], ctx: Context, what: str, cause: BaseException
) -> Evaluation:
    """The single pass failed: tell unreadable data from a validator that fails on this data.

    Only on this error path is the data read more than once: first every
    column (a failure there is the source's), then each check on its own.
    """
    try:
        probe = frame.select(pl.len(), *(pl.col(c).is_null().sum() for c in ctx.schema))
        rows = int(probe.collect().item(0, 0))
    except POLARS_FAILURES as exc:
        raise DataSourceError(f"cannot read {what}: {brief_error(exc)}") from cause
    results: list[ValidatorResult] = []
    for p in planned:
        if not isinstance(p, Check):
            results.append(p)
            continue
        try:
            exprs = [pl.len().alias(_ROWS), *(e.alias(n) for n, e in p.aggs.items())]
            row = frame.select(exprs).collect().row(0, named=True)
        except POLARS_FAILURES as exc:
            results.append(as_error(p.base, f"failed on the data: {brief_error(exc)}"))
            continue
        results.append(p.complete(row, rows))
    return Evaluation(row_count=rows, results=tuple(results))


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
