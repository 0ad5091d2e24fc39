"""How a checkpoint's actions run: one after another, all at once, or in stages.

Every strategy has the same call::

    results = await strategy.execute(actions, checkpoint_result, context)

and returns one :class:`ActionResult` per action, **in the order of
``actions``**, whatever order they ran in. Sync actions are adapted with
``context.executor``; ``context.timeout`` bounds each action (a hanging one
ends as ``timeout``); ``context.semaphore`` is shared by every action run with
that context, across strategies and checkpoints; with
``context.cancel_on_first_error`` the first action that fails, errors or
times out stops the ones not yet finished, and they end as ``skipped`` with a
message naming the action that failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self

from checkpointd.actions.base import (
    ActionResult,
    ActionStatus,
    AsyncExecutable,
    SyncExecutable,
    adapt_to_async,
)
from checkpointd.checkpoints.result import CheckpointResult
from checkpointd.config.syntax import check_pipeline_stages

__all__ = [
    "AsyncExecutionContext",
    "ConcurrentStrategy",
    "ExecutionStrategy",
    "PipelineStrategy",
    "SequentialStrategy",
    "make_strategy",
]

Action = AsyncExecutable | SyncExecutable


@dataclass(frozen=True, slots=True)
class AsyncExecutionContext:
    """Shared settings for running actions (and, in ``run_checkpoints_parallel``, runs).

    ``executor`` runs sync actions (default: the loop's executor);
    ``semaphore`` caps concurrency across everything sharing this context;
    ``timeout`` is seconds per action; ``cancel_on_first_error`` stops the
    rest after the first failure. ``async with context:`` shuts ``executor``
    down on exit: queued calls are cancelled, running ones finish in the
    background (a thread cannot be interrupted).
    """

    executor: Executor | None = None
    semaphore: asyncio.Semaphore | None = None
    timeout: float | None = None
    cancel_on_first_error: bool = False

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive seconds or None, found {self.timeout}")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


class ExecutionStrategy(Protocol):
    """Runs a list of actions for one checkpoint result."""

    async def execute(
        self,
        actions: Sequence[Action],
        checkpoint_result: CheckpointResult,
        context: AsyncExecutionContext | None = None,
    ) -> list[ActionResult]: ...


_DEFAULT_CONTEXT = AsyncExecutionContext()


async def run_action(
    action: AsyncExecutable,
    checkpoint_result: CheckpointResult,
    context: AsyncExecutionContext,
    failures: list[ActionResult] | None = None,
) -> ActionResult:
    """One action under the context's semaphore and timeout; never raises except cancellation.

    With ``failures``: if it holds a result by the time the action's turn
    comes, the action is skipped; if the action fails, its result is added.
    """
    if context.semaphore is None:
        return await _attempt(action, checkpoint_result, context.timeout, failures)
    async with context.semaphore:
        # The timeout starts once the action holds the semaphore: waiting
        # for a turn is not the action's fault.
        return await _attempt(action, checkpoint_result, context.timeout, failures)


async def _attempt(
    action: AsyncExecutable,
    checkpoint_result: CheckpointResult,
    limit: float | None,
    failures: list[ActionResult] | None,
) -> ActionResult:
    if not failures:
        result = await _bounded(action, checkpoint_result, limit)
        if failures is not None and result.status.is_error:
            failures.append(result)  # before this action's slot is released
        return result
    return _skipped(action, failures[0])


async def _bounded(
    action: AsyncExecutable, checkpoint_result: CheckpointResult, limit: float | None
) -> ActionResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            return await action.execute_async(checkpoint_result)
    except TimeoutError as exc:
        # Either our limit expired or the action's own code gave up.
        message = f"no result within the {limit:g}s action timeout" if limit else f"{exc!r}"
        return ActionResult(
            action.name,
            action.action_type,
            ActionStatus.TIMEOUT,
            message,
            duration_seconds=time.perf_counter() - started,
        )
    except Exception as exc:  # a protocol-only action that raises still yields a result
        return ActionResult(
            action.name,
            action.action_type,
            ActionStatus.ERROR,
            f"{type(exc).__name__}: {exc}",
            duration_seconds=time.perf_counter() - started,
        )


def _skipped(action: AsyncExecutable, cause: ActionResult) -> ActionResult:
    return ActionResult(
        action.name,
        action.action_type,
        ActionStatus.SKIPPED,
        f"not run: {cause.action_name!r} ended with {cause.status.value} "
        "and cancel_on_first_error is set",
    )


def _adapt(actions: Sequence[Action], context: AsyncExecutionContext) -> list[AsyncExecutable]:
    return [adapt_to_async(action, context.executor) for action in actions]


class SequentialStrategy:
    """Actions one at a time, in list order: for actions that depend on each other."""

    name = "sequential"

    def stages_for(self, action_count: int) -> tuple[int, ...]:
        """The delivery stage of each action (the daemon's outbox order): one per action."""
        return tuple(range(action_count))

    async def execute(
        self,
        actions: Sequence[Action],
        checkpoint_result: CheckpointResult,
        context: AsyncExecutionContext | None = None,
    ) -> list[ActionResult]:
        ctx = context or _DEFAULT_CONTEXT
        results: list[ActionResult] = []
        failed: ActionResult | None = None
        for action in _adapt(actions, ctx):
            if failed is not None:
                results.append(_skipped(action, failed))
                continue
            result = await run_action(action, checkpoint_result, ctx)
            results.append(result)
            if ctx.cancel_on_first_error and result.status.is_error:
                failed = result
        return results


class ConcurrentStrategy:
    """All actions at once, at most ``max_concurrency`` at a time (None: no cap)."""

    name = "concurrent"

    def __init__(self, max_concurrency: int | None = None) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, found {max_concurrency}")
        self.max_concurrency = max_concurrency

    def stages_for(self, action_count: int) -> tuple[int, ...]:
        """The delivery stage of each action (the daemon's outbox order): all together."""
        return (0,) * action_count

    async def execute(
        self,
        actions: Sequence[Action],
        checkpoint_result: CheckpointResult,
        context: AsyncExecutionContext | None = None,
    ) -> list[ActionResult]:
        ctx = context or _DEFAULT_CONTEXT
        adapted = _adapt(actions, ctx)
        cap = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
        failures: list[ActionResult] | None = [] if ctx.cancel_on_first_error else None

        async def one(action: AsyncExecutable) -> ActionResult:
            if cap is None:
                return await run_action(action, checkpoint_result, ctx, failures)
            async with cap:
                return await run_action(action, checkpoint_result, ctx, failures)

        if failures is None:
            return list(await asyncio.gather(*(one(a) for a in adapted)))
        return await _until_first_error(adapted, one, failures)


class _RunOne(Protocol):
    async def __call__(self, action: AsyncExecutable, /) -> ActionResult: ...


async def _until_first_error(
    actions: list[AsyncExecutable], run: _RunOne, failures: list[ActionResult]
) -> list[ActionResult]:
    """Run all at once; on the first error cancel the running rest, which end as skipped.

    Actions still waiting for a turn see ``failures`` and skip themselves.
    """
    if not actions:
        return []
    tasks = [asyncio.create_task(run(a), name=f"action:{a.name}") for a in actions]
    try:
        pending: set[asyncio.Task[ActionResult]] = set(tasks)
        while pending and not failures:
            _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        raise
    return [
        _skipped(action, failures[0]) if task.cancelled() else task.result()
        for action, task in zip(actions, tasks, strict=True)
    ]


class PipelineStrategy:
    """Actions in stages: stage after stage, the actions of one stage at once.

    ``stages`` lists action indices, e.g. ``[[0, 1], [2], [3, 4]]``. Every
    action must be in exactly one stage. With ``cancel_on_first_error`` a
    stage with a failed action lets its siblings finish, and the later stages
    are skipped.
    """

    name = "pipeline"

    def __init__(self, stages: Sequence[Sequence[int]]) -> None:
        seen: set[int] = set()
        for number, stage in enumerate(stages):
            if not stage:
                raise ValueError(f"pipeline stage {number} is empty")
            for index in stage:
                if index < 0:
                    raise ValueError(f"pipeline stage {number}: action index {index} is negative")
                if index in seen:
                    raise ValueError(f"pipeline stage {number}: action {index} is in two stages")
                seen.add(index)
        self.stages: tuple[tuple[int, ...], ...] = tuple(tuple(stage) for stage in stages)

    def check(self, action_count: int) -> None:
        """Raise ValueError unless the stages name each of ``action_count`` actions once."""
        check_pipeline_stages(self.stages, action_count)

    def stages_for(self, action_count: int) -> tuple[int, ...]:
        """The delivery stage of each action (the daemon's outbox order): its stage number."""
        self.check(action_count)
        stage_of = {index: number for number, stage in enumerate(self.stages) for index in stage}
        return tuple(stage_of[index] for index in range(action_count))

    async def execute(
        self,
        actions: Sequence[Action],
        checkpoint_result: CheckpointResult,
        context: AsyncExecutionContext | None = None,
    ) -> list[ActionResult]:
        ctx = context or _DEFAULT_CONTEXT
        self.check(len(actions))
        adapted = _adapt(actions, ctx)
        results: dict[int, ActionResult] = {}
        failed: ActionResult | None = None
        for stage in self.stages:
            if failed is not None:
                results.update((i, _skipped(adapted[i], failed)) for i in stage)
                continue
            outcome = await asyncio.gather(
                *(run_action(adapted[i], checkpoint_result, ctx) for i in stage)
            )
            results.update(zip(stage, outcome, strict=True))
            if ctx.cancel_on_first_error:
                failed = next((r for r in outcome if r.status.is_error), None)
        return [results[i] for i in range(len(adapted))]


def make_strategy(
    kind: Literal["sequential", "concurrent", "pipeline"],
    *,
    max_concurrency: int | None = None,
    stages: Sequence[Sequence[int]] | None = None,
) -> SequentialStrategy | ConcurrentStrategy | PipelineStrategy:
    """The strategy an ``actions:`` config section names."""
    if kind == "sequential":
        return SequentialStrategy()
    if kind == "concurrent":
        return ConcurrentStrategy(max_concurrency)
    if stages is None:
        raise ValueError("strategy 'pipeline' needs `stages`, e.g. [[0, 1], [2]]")
    return PipelineStrategy(stages)
