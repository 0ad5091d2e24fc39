"""The plan cache and the engine choice: faster runs that give the very same answers.

A checkpoint's validators never change, so whether each check resolves on a
schema (the dry run) is worked out once per schema; and rows already in memory
are collected with polars' in-memory engine. Neither may change a result.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest

from checkpointd.checkpoints import validators as validators_module
from checkpointd.checkpoints._checks import Check, as_error
from checkpointd.checkpoints.checkpoint import Checkpoint
from checkpointd.checkpoints.result import Status
from checkpointd.checkpoints.validators import PlanCache, evaluate

from .conftest import NOW, orders_frame, validators

EVERY_KIND: tuple[dict[str, Any], ...] = (
    {"type": "not_null", "columns": ["id", "email"]},
    {"type": "range", "column": "amount", "min": 0},
    {"type": "unique", "columns": ["id"]},
    {"type": "regex", "column": "email", "pattern": r"^[a-z0-9]+@example\.com$"},
    {"type": "in_set", "column": "status", "values": ["new", "paid", "shipped"]},
    {"type": "row_count", "min": 1},
    {"type": "not_null", "columns": ["no_such_column"]},
)


@pytest.fixture
def dry_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the dry run (one entry per call)."""
    calls: list[int] = []
    real = validators_module._dry_run

    def counting(planned: Any, ctx: Any) -> Any:
        calls.append(1)
        return real(planned, ctx)

    monkeypatch.setattr(validators_module, "_dry_run", counting)
    return calls


def test_a_cached_plan_gives_the_same_results_as_a_fresh_one(dry_runs):
    specs = validators(*EVERY_KIND)
    fresh = evaluate(orders_frame().lazy(), specs, now=NOW)
    cache = PlanCache()

    first = evaluate(orders_frame().lazy(), specs, now=NOW, plan_cache=cache)
    second = evaluate(orders_frame().lazy(), specs, now=NOW, plan_cache=cache)

    assert first == fresh
    assert second == fresh
    assert len(dry_runs) == 2  # the uncached call and the first cached one; not the second


def test_a_check_that_failed_the_dry_run_fails_the_same_way_from_the_cache(monkeypatch):
    real = validators_module._dry_run

    def first_check_breaks(planned: Any, ctx: Any) -> Any:
        out = real(planned, ctx)
        assert isinstance(out[0], Check)
        return [as_error(out[0].base, "cannot evaluate: broken"), *out[1:]]

    monkeypatch.setattr(validators_module, "_dry_run", first_check_breaks)
    specs = validators(*EVERY_KIND[:2])
    cache = PlanCache()

    first = evaluate(orders_frame().lazy(), specs, now=NOW, plan_cache=cache)
    monkeypatch.setattr(validators_module, "_dry_run", real)  # a hit must not call it at all
    second = evaluate(orders_frame().lazy(), specs, now=NOW, plan_cache=cache)

    assert first == second
    assert (second.results[0].status, second.results[0].message) == (
        Status.ERROR,
        "cannot evaluate: broken",
    )
    assert second.results[2].status is Status.FAILURE  # the range check still ran


def test_another_schema_gets_its_own_dry_run(dry_runs):
    specs = validators({"type": "range", "column": "amount", "min": 0})
    cache = PlanCache()
    numbers = pl.LazyFrame({"amount": [1.0, -2.0]})
    text = pl.LazyFrame({"amount": ["1", "-2"]})

    on_numbers = evaluate(numbers, specs, now=NOW, plan_cache=cache)
    on_text = evaluate(text, specs, now=NOW, plan_cache=cache)
    again = evaluate(numbers, specs, now=NOW, plan_cache=cache)

    assert on_numbers.results[0].failed_count == 1
    assert on_text.results[0].status is Status.ERROR
    assert again == on_numbers
    assert len(dry_runs) == 2


def test_a_full_cache_starts_over_and_still_answers(dry_runs):
    specs = validators({"type": "not_null", "columns": ["a"]})
    cache = PlanCache(size=2)
    frames = [
        pl.LazyFrame({"a": [1, None]}, schema={"a": dtype})
        for dtype in (pl.Int8, pl.Int16, pl.Int32)
    ]

    results = [evaluate(f, specs, now=NOW, plan_cache=cache).results[0] for f in frames]
    first_again = evaluate(frames[0], specs, now=NOW, plan_cache=cache).results[0]

    assert [r.failed_count for r in results] == [1, 1, 1]
    assert first_again == results[0]
    assert len(dry_runs) == 4  # three schemas, then the first again after the cache started over


@pytest.mark.parametrize("engine", ["in-memory", "streaming"])
def test_every_engine_gives_the_same_results(engine):
    specs = validators(*EVERY_KIND)

    chosen = evaluate(orders_frame().lazy(), specs, now=NOW, engine=engine)

    assert chosen == evaluate(orders_frame().lazy(), specs, now=NOW)


async def test_an_inline_checkpoint_dry_runs_once_across_runs(dry_runs):
    checkpoint = Checkpoint.from_dict(
        {
            "name": "tiny",
            "data_source": {"type": "inline", "rows": [{"id": 1}, {"id": None}]},
            "validators": [{"type": "not_null", "columns": ["id"]}],
        }
    )

    results = [await checkpoint.run_async() for _ in range(3)]

    assert [r.validators[0].failed_count for r in results] == [1, 1, 1]
    assert len(dry_runs) == 1


def test_a_freshness_check_is_judged_against_each_runs_own_now():
    frame = pl.LazyFrame({"ts": [NOW - timedelta(hours=2)]})
    specs = validators({"type": "freshness", "column": "ts", "max_age": "3h"})
    cache = PlanCache()

    fresh = evaluate(frame, specs, now=NOW, plan_cache=cache).results[0]
    stale = evaluate(frame, specs, now=NOW + timedelta(hours=2), plan_cache=cache).results[0]

    assert (fresh.status, stale.status) == (Status.SUCCESS, Status.FAILURE)
