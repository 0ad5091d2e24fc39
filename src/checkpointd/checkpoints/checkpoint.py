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
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

from checkpointd.asyncutils import backoff_delay, run_async_in_sync
from checkpointd.checkpoints.result import CheckpointResult, Status, overall_status
from checkpointd.checkpoints.sources import describe_source, fill_placeholders, load_frame
from checkpointd.checkpoints.validators import Engine, Evaluation, PlanCache, evaluate
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import CheckpointConfig, InlineSource, KafkaBatchSource
from checkpointd.errors import CheckpointdError
from checkpointd.ids import uuid7
from checkpointd.triggers.event import TriggerEvent

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
        self._rng = rng or random.Random()
        self._sleep = sleep
        # The validators never change, so whether each check resolves on a schema is
        # worked out once per schema, not once per run.
        self._plans = PlanCache()
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
