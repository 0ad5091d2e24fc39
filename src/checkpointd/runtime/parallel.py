"""Running checkpoints concurrently, bounded: the pool and its two conveniences.

- :class:`CheckpointPool` (in ``workerpool``): ``workers`` worker tasks, a
  bounded backlog, ``submit`` that waits for room, CANCELLED results on cancel.
- :func:`run_checkpoint_async`: one run now, with an optional timeout.
- :func:`run_checkpoints_parallel`: many runs, at most ``max_concurrent`` at
  once, results in input order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from checkpointd.actions.strategies import AsyncExecutionContext
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.protocols import RunnableCheckpoint
from checkpointd.runtime.contained import outcome_result, run_checkpoint_async
from checkpointd.runtime.pool import CheckpointPool, ResultQueue

__all__ = [
    "CheckpointPool",
    "ResultQueue",
    "run_checkpoint_async",
    "run_checkpoints_parallel",
]

_FAILED = frozenset({Status.FAILURE, Status.ERROR, Status.TIMEOUT})


async def run_checkpoints_parallel(
    checkpoints: Iterable[RunnableCheckpoint],
    max_concurrent: int = 8,
    context: AsyncExecutionContext | None = None,
    on_complete: Callable[[CheckpointResult], Any] | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> list[CheckpointResult]:
    """Run checkpoints, at most ``max_concurrent`` at once; results in input order.

    From ``context``: ``timeout`` bounds each run, ``semaphore`` is held
    around each run, and with ``cancel_on_first_error`` the first run that
    fails, errors or times out cancels the rest (running ones end
    ``cancelled``, unstarted ones ``skipped``). ``on_complete`` sees each
    result as it arrives (it may be async). ``context.executor`` is not used:
    checkpoints bring their own worker threads.
    """
    pending = list(checkpoints)
    stop_early = context is not None and context.cancel_on_first_error
    settled = asyncio.Event()
    first_failure: list[CheckpointResult] = []
    remaining = len(pending)

    def completed(result: CheckpointResult) -> Any:
        nonlocal remaining
        remaining -= 1
        if stop_early and not first_failure and result.status in _FAILED:
            first_failure.append(result)
            pool.halt()  # now, before this worker picks up the next run
            settled.set()
        if not remaining:
            settled.set()
        return on_complete(result) if on_complete is not None else None

    pool = CheckpointPool(
        max_concurrent,
        timeout=context.timeout if context else None,
        semaphore=context.semaphore if context else None,
        on_result=completed,
        clock=clock,
    )
    futures: list[asyncio.Future[CheckpointResult]] = []
    async with pool:
        for checkpoint in pending:
            if first_failure:
                break
            futures.append(await pool.submit(checkpoint))
        if stop_early and futures:
            await settled.wait()
            if first_failure:
                await pool.cancel()
    results = [future.result() for future in futures]
    if len(results) < len(pending):
        results.extend(_not_started(pending[len(results) :], first_failure[0], clock))
    return results


def _not_started(
    checkpoints: list[RunnableCheckpoint], cause: CheckpointResult, clock: Clock
) -> list[CheckpointResult]:
    """SKIPPED results for the checkpoints a failure stopped before they started."""
    now = clock.now()
    reason = f"not started: {cause.checkpoint!r} ended with {cause.status.value}"
    return [outcome_result(cp.name, None, Status.SKIPPED, now, now, reason) for cp in checkpoints]
