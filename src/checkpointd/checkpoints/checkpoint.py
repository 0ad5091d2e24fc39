"""Checkpoint: a data source, its validators and the policy of one run.

``run_async`` is the one path every run takes: fill ``{trigger.*}``
placeholders, load and validate in a worker thread (polars releases the GIL,
the event loop never blocks), enforce the timeout with ``asyncio.timeout``,
retry errors and timeouts with exponential backoff and jitter (validation
failures are answers, not errors, and are never retried). It never raises: the
result's status says what happened. Cancellation is the one exception, and it
is re-raised after the attempt is abandoned, so whoever cancelled can record it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from checkpointd.asyncutils import backoff_delay, run_async_in_sync
from checkpointd.checkpoints.result import CheckpointResult, Status, overall_status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import (
    CheckpointConfig,
    DataSourceConfig,
    InlineSource,
    KafkaBatchSource,
    ValidatorConfig,
)
from checkpointd.errors import CheckpointdError
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7

if TYPE_CHECKING:
    import polars as pl

    from checkpointd.checkpoints.validators import Engine, Evaluation, PlanCache

Sleep = Callable[[float], Awaitable[None]]


class Checkpoint:
    """One configured checkpoint, runnable from async (``run_async``) or sync code (``run``)."""

    def __init__(
        self,
        config: CheckpointConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        executor: Executor | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self._clock = clock
        self._executor = executor
        # Made at the first retry: seeding a Random from os.urandom costs tens of
        # microseconds, which adds up at start-up with thousands of checkpoints.
        self._rng = rng
        self._sleep = sleep
        # The validators never change, so whether each check resolves on a schema is
        # worked out once per schema, not once per run (the cache comes with the first run).
        self._plans: PlanCache | None = None
        # Rows already in memory: polars' streaming engine only adds a fixed cost per
        # query (it dominates a small frame's run); files keep the default, which
        # streams large scans in bounded memory.
        in_memory = isinstance(config.data_source, InlineSource | KafkaBatchSource)
        self._engine: Engine = "in-memory" if in_memory else "auto"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> Checkpoint:
        """Build a checkpoint from the same mapping a config file holds under ``checkpoints:``."""
        return cls(CheckpointConfig.model_validate(data), **kwargs)

    @property
    def name(self) -> str:
        return self.config.name

    def __repr__(self) -> str:
        return f"Checkpoint({self.name!r})"

    def run(self, event: TriggerEvent | None = None) -> CheckpointResult:
        """Run from synchronous code (works inside a running loop too, e.g. a notebook)."""
        return run_async_in_sync(self.run_async, event)

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult:
        """Run once, with timeout and retries; never raises except ``CancelledError``."""
        run_id = event.run_id if event is not None and event.run_id else uuid7()
        retries = self.config.retries
        attempt = 1
        while True:
            result = await self._attempt(run_id, attempt, event)
            if result.status not in (Status.ERROR, Status.TIMEOUT) or attempt > retries.max_retries:
                return result
            if self._rng is None:
                self._rng = random.Random()
            delay = backoff_delay(
                attempt,
                delay=retries.delay.total_seconds(),
                backoff=retries.backoff,
                max_delay=retries.max_delay.total_seconds(),
                jitter=retries.jitter,
                rng=self._rng,
            )
            await self._sleep(delay)
            attempt += 1

    async def _attempt(
        self, run_id: str, attempt: int, event: TriggerEvent | None
    ) -> CheckpointResult:
        started = self._clock.now()
        timeout = self.config.timeout
        seconds = timeout.total_seconds() if timeout else None
        deadline = asyncio.timeout(seconds)
        loop = asyncio.get_running_loop()
        try:
            async with deadline:
                evaluation = await loop.run_in_executor(
                    self._executor, self._evaluate, event, started
                )
        except TimeoutError as exc:
            # Only our deadline is a timeout; a TimeoutError from the reading itself (a
            # network filesystem, say) is an error like any other OSError.
            status = Status.TIMEOUT if deadline.expired() else Status.ERROR
            error = (
                f"run exceeded its timeout of {seconds:g}s"
                if status is Status.TIMEOUT
                else f"TimeoutError: {exc}"
            )
            return self._result(run_id, attempt, event, started, status, error=error)
        except CheckpointdError as exc:
            return self._result(run_id, attempt, event, started, Status.ERROR, error=str(exc))
        except Exception as exc:  # a run never raises: unexpected errors become results
            error = f"{type(exc).__name__}: {exc}"
            return self._result(run_id, attempt, event, started, Status.ERROR, error=error)
        return CheckpointResult(
            run_id=run_id,
            checkpoint=self.name,
            status=overall_status(evaluation.results),
            started_at=started,
            finished_at=self._clock.now(),
            attempt=attempt,
            trigger=event.info() if event else None,
            validators=evaluation.results,
            row_count=evaluation.row_count,
        )

    def _evaluate(self, event: TriggerEvent | None, now: datetime) -> Evaluation:
        """Runs in a worker thread: load lazily, then every validator in one query plan."""
        if self._plans is None:
            # Two first runs at once may each make one; the loser's is dropped, which costs
            # only a repeated dry run.
            self._plans = _plan_cache()
        source = fill_placeholders(self.config.data_source, event)
        frame = load_frame(source, event)
        return evaluate(
            frame,
            self.config.validators,
            now=now,
            source=describe_source(source),
            engine=self._engine,
            plan_cache=self._plans,
        )

    def _result(
        self,
        run_id: str,
        attempt: int,
        event: TriggerEvent | None,
        started: datetime,
        status: Status,
        *,
        error: str,
    ) -> CheckpointResult:
        return CheckpointResult(
            run_id=run_id,
            checkpoint=self.name,
            status=status,
            started_at=started,
            finished_at=self._clock.now(),
            attempt=attempt,
            trigger=event.info() if event else None,
            error=error,
        )


# ---------------------------------------------------------------- polars, on first use
# ``sources`` and ``validators`` import polars (~25 MiB of RSS, a thread pool): a daemon
# that has not run anything yet does without it. These stand-ins import them on their
# first call, in the first run's worker thread.


def fill_placeholders(cfg: DataSourceConfig, event: TriggerEvent | None) -> DataSourceConfig:
    """:func:`checkpointd.checkpoints.sources.fill_placeholders`."""
    from checkpointd.checkpoints import sources

    return sources.fill_placeholders(cfg, event)


def describe_source(cfg: DataSourceConfig) -> str:
    """:func:`checkpointd.checkpoints.sources.describe_source`."""
    from checkpointd.checkpoints import sources

    return sources.describe_source(cfg)


def load_frame(cfg: DataSourceConfig, event: TriggerEvent | None) -> pl.LazyFrame:
    """:func:`checkpointd.checkpoints.sources.load_frame`."""
    from checkpointd.checkpoints import sources

    return sources.load_frame(cfg, event)


def evaluate(
    frame: pl.LazyFrame,
    validators: Sequence[ValidatorConfig],
    *,
    now: datetime,
    source: str,
    engine: Engine,
    plan_cache: PlanCache,
) -> Evaluation:
    """:func:`checkpointd.checkpoints.validators.evaluate`."""
    from checkpointd.checkpoints import validators as checks

    return checks.evaluate(
        frame, validators, now=now, source=source, engine=engine, plan_cache=plan_cache
    )


def _plan_cache() -> PlanCache:
    from checkpointd.checkpoints.validators import PlanCache

    return PlanCache()
