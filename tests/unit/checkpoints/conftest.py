"""Shared data for the data source and validator tests.

``orders`` is 1000 generated rows with defects planted at known rows, so every
validator test can state its exact failing count (see ``Planted``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from pydantic import TypeAdapter

from checkpointd.checkpoints.result import ValidatorResult
from checkpointd.checkpoints.validators import Evaluation, evaluate
from checkpointd.config.models import ValidatorConfig

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FIRST_TS = datetime(2026, 3, 1)  # naive on purpose: read as UTC

_VALIDATORS = TypeAdapter(list[ValidatorConfig])


class Planted:
    """The defects of ``orders_frame()``, counted by hand from its definition."""

    rows = 1000
    # id: i, null where i % 100 == 0 (10 rows); rows 11 and 12 repeat id 501, row 21 repeats 601.
    id_nulls = 10
    id_repeated_rows = 5  # 501 at rows 11, 12, 501; 601 at rows 21, 601
    id_checked = 990
    # amount: 10 * i, -1.0 where i % 50 == 7 (20 rows), null where i % 200 == 3 (5 rows).
    amount_negative = 20
    amount_nulls = 5
    amount_checked = 995
    # status: new/paid/shipped, "lost" where i % 125 == 1 (8 rows), null where i % 333 == 2 (3).
    status_lost = 8
    status_nulls = 3
    status_checked = 997
    # email: user{i}@example.com, "broken" where i % 40 == 5 (25 rows), null where i % 250 == 9.
    email_broken = 25
    email_nulls = 4
    email_checked = 996
    # ts: FIRST_TS + i minutes; the newest is row 999.
    newest_ts = FIRST_TS + timedelta(minutes=999)


def orders_frame() -> pl.DataFrame:
    """1000 orders with the defects ``Planted`` describes."""
    rows: list[dict[str, Any]] = []
    for i in range(Planted.rows):
        order_id: int | None = None if i % 100 == 0 else i
        if i in (11, 12):
            order_id = 501
        elif i == 21:
            order_id = 601
        amount: float | None = -1.0 if i % 50 == 7 else 10.0 * i
        if i % 200 == 3:
            amount = None
        status: str | None = "lost" if i % 125 == 1 else ("new", "paid", "shipped")[i % 3]
        if i % 333 == 2:
            status = None
        email: str | None = "broken" if i % 40 == 5 else f"user{i}@example.com"
        if i % 250 == 9:
            email = None
        ts = FIRST_TS + timedelta(minutes=i)
        rows.append({"id": order_id, "amount": amount, "status": status, "email": email, "ts": ts})
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.Int64,
            "amount": pl.Float64,
            "status": pl.String,
            "email": pl.String,
            "ts": pl.Datetime("us"),
        },
    )


def validators(*specs: dict[str, Any]) -> list[ValidatorConfig]:
    """Validator configs from the mappings a config file would hold."""
    return _VALIDATORS.validate_python(list(specs))


Run = Callable[..., Evaluation]


@pytest.fixture
def orders() -> pl.LazyFrame:
    return orders_frame().lazy()


@pytest.fixture
def run() -> Run:
    """``run(frame, *specs, now=NOW, sample_size=5) -> Evaluation``."""

    def _run(
        frame: pl.LazyFrame | pl.DataFrame,
        *specs: dict[str, Any],
        now: datetime = NOW,
        sample_size: int = 5,
    ) -> Evaluation:
        lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
        return evaluate(lazy, validators(*specs), now=now, sample_size=sample_size)

    return _run


@pytest.fixture
def one(run: Run) -> Callable[..., ValidatorResult]:
    """``one(frame, spec, **kw)``: the single result of a single validator."""

    def _one(
        frame: pl.LazyFrame | pl.DataFrame, spec: dict[str, Any], **kw: Any
    ) -> ValidatorResult:
        results: Sequence[ValidatorResult] = run(frame, spec, **kw).results
        assert len(results) == 1, results
        return results[0]

    return _one
