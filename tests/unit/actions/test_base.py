"""ActionResult, AsyncBaseAction, SyncActionAdapter and adapt_to_async."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from checkpointd.actions.base import (
    ActionResult,
    ActionStatus,
    AsyncBaseAction,
    SyncActionAdapter,
    adapt_to_async,
)
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.errors import DeliveryError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESULT = CheckpointResult(
    run_id="r1", checkpoint="orders", status=Status.FAILURE, started_at=T0, finished_at=T0
)


class Scripted(AsyncBaseAction):
    """An async action whose _execute_async does what the test says."""

    action_type = "scripted"

    def __init__(self, outcome: object = None, *, name: str | None = None) -> None:
        super().__init__(name, notify_on="always")
        self.outcome = outcome
        self.seen: list[CheckpointResult] = []

    async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        self.seen.append(checkpoint_result)
        await asyncio.sleep(0.001)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.outcome is None:
            return self.make_result(ActionStatus.SUCCESS, "sent")
        return self.outcome  # type: ignore[return-value]


class SyncNotify:
    """A sync action (no base class), as a user might write one."""

    name = "notify"
    action_type = "sync_notify"
    notify_on = "failure"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.threads: list[str] = []

    def execute(self, checkpoint_result: CheckpointResult) -> ActionResult:
        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise ConnectionError("smtp down")
        return ActionResult(self.name, self.action_type, ActionStatus.SUCCESS, "mailed")


@pytest.mark.parametrize(
    ("status", "is_error"),
    [
        (ActionStatus.SUCCESS, False),
        (ActionStatus.SKIPPED, False),
        (ActionStatus.FAILURE, True),
        (ActionStatus.ERROR, True),
        (ActionStatus.TIMEOUT, True),
    ],
)
def test_which_statuses_count_as_errors(status: ActionStatus, is_error: bool) -> None:
    assert status.is_error is is_error
    assert ActionResult("a", "t", status).ok is not is_error


def test_action_result_as_json() -> None:
    result = ActionResult("hook", "webhook", ActionStatus.ERROR, "503", 0.1234567, 3, {"code": 503})
    assert result.to_dict() == {
        "action_name": "hook",
        "action_type": "webhook",
        "status": "error",
        "message": "503",
        "duration_seconds": 0.123457,
        "attempts": 3,
        "details": {"code": 503},
    }


async def test_a_successful_action_reports_its_duration_and_identity() -> None:
    action = Scripted(name="pager")
    result = await action.execute_async(RESULT)
    assert (result.action_name, result.action_type, result.status) == (
        "pager",
        "scripted",
        ActionStatus.SUCCESS,
    )
    assert result.duration_seconds > 0
    assert action.seen == [RESULT]
    assert Scripted().name == "scripted"  # the type names an unnamed action


@pytest.mark.parametrize(
    ("raised", "status", "message", "details"),
    [
        (ValueError("bad template"), ActionStatus.ERROR, "ValueError: bad template", {}),
        (TimeoutError(), ActionStatus.TIMEOUT, "TimeoutError: timed out", {}),
        (
            DeliveryError("HTTP 429", retryable=True, retry_after=7.0),
            ActionStatus.ERROR,
            "DeliveryError: HTTP 429",
            {"retryable": True, "retry_after": 7.0},
        ),
    ],
)
async def test_an_exception_becomes_a_result(
    raised: Exception, status: ActionStatus, message: str, details: dict[str, object]
) -> None:
    result = await Scripted(raised).execute_async(RESULT)
    assert (result.status, result.message, dict(result.details)) == (status, message, details)


async def test_returning_something_else_than_a_result_is_an_error() -> None:
    result = await Scripted("ok").execute_async(RESULT)
    assert result.status is ActionStatus.ERROR
    assert result.message == "Scripted returned str, expected ActionResult"


async def test_cancellation_is_not_turned_into_a_result() -> None:
    class Hangs(AsyncBaseAction):
        async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    task = asyncio.create_task(Hangs().execute_async(RESULT))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_sync_action_runs_in_a_worker_thread_with_its_identity() -> None:
    sync = SyncNotify()
    adapted = SyncActionAdapter(sync)
    result = await adapted.execute_async(RESULT)
    assert result.status is ActionStatus.SUCCESS
    assert (adapted.name, adapted.action_type, adapted.notify_on) == (
        "notify",
        "sync_notify",
        "failure",
    )
    assert sync.threads
    assert sync.threads[0] != threading.current_thread().name
    assert adapted.wrapped is sync


async def test_a_sync_action_uses_the_given_executor_and_its_errors_become_results() -> None:
    sync = SyncNotify(fail=True)
    with ThreadPoolExecutor(1, thread_name_prefix="actions") as executor:
        result = await SyncActionAdapter(sync, executor).execute_async(RESULT)
    assert sync.threads[0].startswith("actions")
    assert (result.status, result.message) == (ActionStatus.ERROR, "ConnectionError: smtp down")


def test_adapt_to_async_keeps_async_actions_and_wraps_sync_ones() -> None:
    native = Scripted()
    assert adapt_to_async(native) is native
    wrapped = adapt_to_async(SyncNotify())
    assert isinstance(wrapped, SyncActionAdapter)
    with pytest.raises(TypeError, match="is not an action"):
        adapt_to_async(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no execute"):
        SyncActionAdapter(object())  # type: ignore[arg-type]
