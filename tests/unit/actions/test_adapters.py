"""One action model: a channel runs as a Python API action, and a Python API action delivers
as a channel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkpointd.actions.adapters import ActionChannel, ChannelAction
from checkpointd.actions.base import ActionResult, ActionStatus, AsyncBaseAction
from checkpointd.actions.channel import Channel, Delivery, DeliveryOutcome, Preview
from checkpointd.actions.strategies import SequentialStrategy
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.errors import DeliveryError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESULT = CheckpointResult(
    run_id="0190aaaa-0000-7000-8000-000000000001",
    checkpoint="orders",
    status=Status.FAILURE,
    started_at=T0,
    finished_at=T0,
)


class RecordingChannel:
    """A channel that keeps what it was sent, or fails as told."""

    action_type = "webhook"
    destination = "http://receiver.test/hook"

    def __init__(self, name: str = "hook", fail: DeliveryError | None = None) -> None:
        self.name = name
        self.fail = fail
        self.sent: list[Delivery] = []

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        self.sent.append(delivery)
        if self.fail is not None:
            raise self.fail
        return DeliveryOutcome(202, "accepted")

    def preview(self, delivery: Delivery) -> Preview:
        return Preview(self.destination, "POST")

    async def close(self) -> None:
        return None


def delivery(attempt: int = 1) -> Delivery:
    return Delivery(
        "d-1", RESULT.run_id, "orders", "act", "custom", "notify", None, attempt, RESULT
    )


async def test_a_channel_runs_as_an_action_one_attempt_per_call():
    channel = RecordingChannel()
    assert isinstance(channel, Channel)
    action = ChannelAction(channel, notify_on="always")
    outcome = await action.execute_async(RESULT)
    assert (outcome.action_name, outcome.action_type) == ("hook", "webhook")
    assert (outcome.status, outcome.message) == (ActionStatus.SUCCESS, "accepted")
    assert outcome.details["status_code"] == 202
    [sent] = channel.sent
    assert (sent.run_id, sent.kind, sent.attempt) == (RESULT.run_id, "notify", 1)
    assert outcome.details["delivery_id"] == sent.idempotency_key


async def test_a_failing_channel_is_an_error_result_that_keeps_retry_advice():
    channel = RecordingChannel(fail=DeliveryError("HTTP 503", retryable=True, retry_after=7.0))
    outcome = await ChannelAction(channel).execute_async(RESULT)
    assert outcome.status is ActionStatus.ERROR
    assert "HTTP 503" in outcome.message
    assert outcome.details == {"retryable": True, "retry_after": 7.0}


async def test_the_strategies_run_channels_like_any_action():
    first, second = RecordingChannel("first"), RecordingChannel("second")
    results = await SequentialStrategy().execute(
        [ChannelAction(first), ChannelAction(second)], RESULT
    )
    assert [r.action_name for r in results] == ["first", "second"]
    assert len(first.sent) == len(second.sent) == 1


class Answer(AsyncBaseAction):
    action_type = "custom"

    def __init__(self, status: ActionStatus, **details) -> None:
        super().__init__("answer")
        self.status = status
        self.details = details
        self.seen: list[CheckpointResult] = []

    async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        self.seen.append(checkpoint_result)
        return self.make_result(self.status, "said so", details=self.details)


async def test_an_action_delivers_as_a_channel():
    action = Answer(ActionStatus.SUCCESS)
    channel = ActionChannel(action, destination="python:mod:answer")
    assert isinstance(channel, Channel)
    outcome = await channel.send(delivery())
    assert outcome.detail == "said so"
    assert action.seen == [RESULT]


@pytest.mark.parametrize(
    ("status", "details", "retryable", "retry_after"),
    [
        (ActionStatus.FAILURE, {}, True, None),
        (ActionStatus.ERROR, {"retryable": False}, False, None),
        (ActionStatus.ERROR, {"retry_after": 30}, True, 30.0),
        (ActionStatus.TIMEOUT, {"retryable": False}, True, None),  # a timeout may pass
    ],
)
async def test_an_action_result_that_is_not_ok_fails_the_attempt(
    status, details, retryable, retry_after
):
    channel = ActionChannel(Answer(status, **details), destination="python:mod:answer")
    with pytest.raises(DeliveryError) as caught:
        await channel.send(delivery())
    assert (caught.value.retryable, caught.value.retry_after) == (retryable, retry_after)


async def test_a_sync_action_delivers_from_a_worker_thread():
    import threading

    threads: list[str] = []

    class Sync:
        name = "sync"
        action_type = "custom"

        def execute(self, checkpoint_result: CheckpointResult) -> ActionResult:
            threads.append(threading.current_thread().name)
            return ActionResult("sync", "custom", ActionStatus.SUCCESS, "done")

    outcome = await ActionChannel(Sync(), destination="python:mod:sync").send(delivery())
    assert outcome.detail == "done"
    assert len(threads) == 1
    assert threads[0] != threading.main_thread().name
