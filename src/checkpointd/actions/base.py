"""What an action is: the result it reports and the base classes channels build on.

An action (webhook, Slack, PagerDuty, ...) reacts to a finished
``CheckpointResult``. Like a run, it never raises: ``execute_async`` returns
an :class:`ActionResult` whose status says what happened, and re-raises only
``asyncio.CancelledError``.

Two shapes are accepted everywhere actions are run:

- async actions (:class:`AsyncExecutable`), usually subclasses of
  :class:`AsyncBaseAction` that implement ``_execute_async``;
- sync actions (:class:`SyncExecutable`, with ``execute(result)``), wrapped by
  :func:`adapt_to_async` so they run in a worker thread and never block the
  event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, cast, runtime_checkable

from checkpointd.checkpoints.result import CheckpointResult
from checkpointd.config.models import NotifyOn
from checkpointd.errors import DeliveryError

__all__ = [
    "ActionResult",
    "ActionStatus",
    "AsyncBaseAction",
    "AsyncExecutable",
    "SyncActionAdapter",
    "SyncExecutable",
    "adapt_to_async",
]


class ActionStatus(StrEnum):
    """What happened to one action."""

    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"

    @property
    def is_error(self) -> bool:
        """True for outcomes that count as "the action went wrong" (failure, error, timeout)."""
        return self in (ActionStatus.FAILURE, ActionStatus.ERROR, ActionStatus.TIMEOUT)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of one action for one checkpoint result."""

    action_name: str
    action_type: str
    status: ActionStatus
    message: str = ""
    duration_seconds: float = 0.0
    attempts: int = 1
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """False when the action failed, errored or timed out; skipped counts as ok."""
        return not self.status.is_error

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_name": self.action_name,
            "action_type": self.action_type,
            "status": self.status.value,
            "message": self.message,
            "duration_seconds": round(self.duration_seconds, 6),
            "attempts": self.attempts,
            "details": dict(self.details),
        }


@runtime_checkable
class AsyncExecutable(Protocol):
    """An action with an async ``execute_async`` that never raises except on cancellation."""

    @property
    def name(self) -> str: ...

    @property
    def action_type(self) -> str: ...

    async def execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult: ...


@runtime_checkable
class SyncExecutable(Protocol):
    """An action with a blocking ``execute``; run it through :func:`adapt_to_async`."""

    @property
    def name(self) -> str: ...

    @property
    def action_type(self) -> str: ...

    def execute(self, checkpoint_result: CheckpointResult) -> ActionResult: ...


class AsyncBaseAction(ABC):
    """Base class of async actions: subclasses implement :meth:`_execute_async`.

    :meth:`execute_async` times the call and turns every outcome into an
    :class:`ActionResult`: an exception becomes ``error`` (a
    :class:`~checkpointd.errors.DeliveryError` keeps ``retryable`` and
    ``retry_after`` in ``details``), a ``TimeoutError`` becomes ``timeout``.
    Only cancellation propagates. ``notify_on`` says which results the action
    wants; the dispatcher filters on it before calling the action.
    """

    action_type: str = "custom"

    def __init__(
        self, name: str | None = None, *, notify_on: NotifyOn = "failure_or_error"
    ) -> None:
        self.name: str = name or self.action_type
        self.notify_on: NotifyOn = notify_on

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, notify_on={self.notify_on!r})"

    async def execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        """Run the action once; never raises except ``asyncio.CancelledError``."""
        started = time.perf_counter()
        try:
            outcome: object = await self._execute_async(checkpoint_result)
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            return self.make_result(
                ActionStatus.TIMEOUT,
                _describe(exc, "timed out"),
                duration_seconds=time.perf_counter() - started,
            )
        except DeliveryError as exc:
            return self.make_result(
                ActionStatus.ERROR,
                _describe(exc, "delivery failed"),
                duration_seconds=time.perf_counter() - started,
                details={"retryable": exc.retryable, "retry_after": exc.retry_after},
            )
        except Exception as exc:  # an action never raises: errors become results
            return self.make_result(
                ActionStatus.ERROR,
                f"{type(exc).__name__}: {exc}",
                duration_seconds=time.perf_counter() - started,
            )
        elapsed = time.perf_counter() - started
        if not isinstance(outcome, ActionResult):
            return self.make_result(
                ActionStatus.ERROR,
                f"{type(self).__name__} returned {type(outcome).__name__}, expected ActionResult",
                duration_seconds=elapsed,
            )
        if outcome.duration_seconds == 0.0:
            return dataclasses.replace(outcome, duration_seconds=elapsed)
        return outcome

    @abstractmethod
    async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        """Do the work; raising is fine, :meth:`execute_async` turns errors into results."""

    def make_result(
        self,
        status: ActionStatus,
        message: str = "",
        *,
        duration_seconds: float = 0.0,
        attempts: int = 1,
        details: Mapping[str, Any] | None = None,
    ) -> ActionResult:
        """An :class:`ActionResult` already carrying this action's name and type."""
        return ActionResult(
            action_name=self.name,
            action_type=self.action_type,
            status=status,
            message=message,
            duration_seconds=duration_seconds,
            attempts=attempts,
            details=dict(details or {}),
        )


class SyncActionAdapter(AsyncBaseAction):
    """Runs a sync action's ``execute`` in a worker thread (``executor``, or the
    loop's default one), so a blocking HTTP client never stalls the loop.

    Cancelling ``execute_async`` stops waiting, but a thread cannot be
    interrupted: the sync call finishes in the background.
    """

    def __init__(self, sync_action: SyncExecutable, executor: Executor | None = None) -> None:
        execute = getattr(sync_action, "execute", None)
        if not callable(execute):
            raise TypeError(f"{type(sync_action).__name__} has no execute(result) method")
        notify_on: NotifyOn = getattr(sync_action, "notify_on", "failure_or_error")
        name = getattr(sync_action, "name", None) or type(sync_action).__name__
        super().__init__(name, notify_on=notify_on)
        self.action_type = getattr(sync_action, "action_type", None) or self.action_type
        self.wrapped = sync_action
        self._executor = executor

    async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # structlog's bound run_id follows into the thread
        return await loop.run_in_executor(
            self._executor, context.run, self.wrapped.execute, checkpoint_result
        )


def adapt_to_async(
    action: AsyncExecutable | SyncExecutable, executor: Executor | None = None
) -> AsyncExecutable:
    """``action`` itself when it is already async, else a :class:`SyncActionAdapter`."""
    execute_async = getattr(action, "execute_async", None)
    if execute_async is not None and inspect.iscoroutinefunction(execute_async):
        return cast(AsyncExecutable, action)
    if callable(getattr(action, "execute", None)):
        return SyncActionAdapter(cast(SyncExecutable, action), executor)
    raise TypeError(
        f"{type(action).__name__} is not an action: it needs "
        "`async def execute_async(result)` or `def execute(result)`"
    )


def _describe(exc: BaseException, fallback: str) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__}: {fallback}"
