"""One contained run: the never-raise contract enforced from the outside.

``run_contained`` is what every worker awaits. A checkpoint already returns a
result for its own timeouts and errors; this adds the pool's timeout and
turns a broken contract (a run that raised) into an ``error`` result, so a
bad plug-in cannot take a worker down. Only cancellation propagates, and the
caller records it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7
from checkpointd.protocols import RunnableCheckpoint

__all__ = ["ResultItem", "outcome_result", "run_checkpoint_async", "run_contained"]

ResultItem = tuple[CheckpointResult, TriggerEvent | None]
"""What travels through the result queue: a result and the event that caused it."""


def outcome_result(
    checkpoint: str,
    event: TriggerEvent | None,
    status: Status,
    started_at: datetime,
    finished_at: datetime,
    error: str,
) -> CheckpointResult:
    """A result for a run that produced none of its own (timed out, raised, cancelled, skipped)."""
    return CheckpointResult(
        run_id=event.run_id if event is not None and event.run_id else uuid7(),
        checkpoint=checkpoint,
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        trigger=event.info() if event is not None else None,
        error=error,
    )


async def run_contained(
    checkpoint: RunnableCheckpoint,
    event: TriggerEvent | None,
    limit: float | None,
    started_at: datetime,
    clock: Clock,
) -> CheckpointResult:
    """``checkpoint.run_async(event)`` within ``limit`` seconds; raises only CancelledError."""
    try:
        if limit is None:
            return await checkpoint.run_async(event)
        async with asyncio.timeout(limit):
            return await checkpoint.run_async(event)
    except TimeoutError:
        if limit is None:  # the run raised TimeoutError itself instead of returning a result
            message = "the run raised TimeoutError instead of returning a result"
        else:
            message = f"run exceeded the pool's timeout of {limit:g}s"
        return outcome_result(
            checkpoint.name, event, Status.TIMEOUT, started_at, clock.now(), message
        )
    except Exception as exc:  # a run must never raise; if one does, it is an error result
        return outcome_result(
            checkpoint.name,
            event,
            Status.ERROR,
            started_at,
            clock.now(),
            f"run raised {type(exc).__name__}: {exc}",
        )


async def run_checkpoint_async(
    checkpoint: RunnableCheckpoint,
    event: TriggerEvent | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - part of the documented API; enforced below
    clock: Clock = SYSTEM_CLOCK,
) -> CheckpointResult:
    """Run one checkpoint now and return its result; never raises except on cancellation.

    ``timeout`` (seconds) bounds the run: past it the run is cancelled and
    the result has status ``timeout``.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive seconds or None, found {timeout}")
    return await run_contained(checkpoint, event, timeout, clock.now(), clock)
