"""One action model: the daemon's :class:`~checkpointd.actions.channel.Channel`, and the two
adapters that make the Python API's actions and the daemon's channels one thing.

- :class:`ActionChannel` sends deliveries through a Python API action (an
  ``AsyncBaseAction``, or anything with ``execute_async(result)`` / ``execute(result)``):
  the ``python`` channel uses it, so a user's action is delivered from the durable
  outbox with the retries, breaker and dead letters of every channel. An
  ``ActionResult`` that is not ok fails the attempt.
- :class:`ChannelAction` is a channel as a Python API action: the strategies
  (``SequentialStrategy``, ``ConcurrentStrategy``, ``PipelineStrategy``) run the
  daemon's webhook, Slack, PagerDuty and Kafka channels as they run any action.
"""

from __future__ import annotations

from concurrent.futures import Executor

from checkpointd.actions.base import (
    ActionResult,
    ActionStatus,
    AsyncBaseAction,
    AsyncExecutable,
    SyncExecutable,
    adapt_to_async,
)
from checkpointd.actions.channel import Channel, Delivery, DeliveryOutcome, Preview
from checkpointd.checkpoints.result import CheckpointResult
from checkpointd.config.models import NotifyOn
from checkpointd.errors import DeliveryError
from checkpointd.ids import uuid7

__all__ = ["ActionChannel", "ChannelAction", "raise_for_result"]


class ActionChannel:
    """A :class:`Channel` that delivers by running a Python API action once per attempt."""

    def __init__(
        self,
        action: AsyncExecutable | SyncExecutable,
        *,
        destination: str,
        executor: Executor | None = None,
    ) -> None:
        self.action = adapt_to_async(action, executor)
        self.destination = destination

    @property
    def name(self) -> str:
        return self.action.name

    @property
    def action_type(self) -> str:
        return self.action.action_type

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        outcome = await self.action.execute_async(delivery.result)
        raise_for_result(outcome)
        return DeliveryOutcome(None, outcome.message or outcome.status.value)

    def preview(self, delivery: Delivery) -> Preview:
        return Preview(self.destination, "call", {}, f"{self.name}(result)")

    async def close(self) -> None:
        return None


def raise_for_result(result: ActionResult) -> None:
    """Raise DeliveryError for an ``ActionResult`` that is not ok (a timeout is retryable;
    otherwise ``details["retryable"]`` and ``details["retry_after"]`` say)."""
    if result.ok:
        return
    retryable = bool(result.details.get("retryable", True))
    retry_after = result.details.get("retry_after")
    if result.status is ActionStatus.TIMEOUT:
        retryable = True
    raise DeliveryError(
        f"action returned {result.status.value}: {result.message}",
        retryable=retryable,
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
    )


class ChannelAction(AsyncBaseAction):
    """A channel as a Python API action: each ``execute_async`` is one delivery attempt.

    Without the outbox there is no stored delivery: each call makes one with a fresh
    id (its idempotency key), kind ``notify``, attempt 1. A ``DeliveryError`` becomes an
    ``error`` result that keeps ``retryable`` and ``retry_after``, as for any action.
    """

    def __init__(self, channel: Channel, *, notify_on: NotifyOn = "failure_or_error") -> None:
        super().__init__(channel.name, notify_on=notify_on)
        self.action_type = channel.action_type
        self.channel = channel

    async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        delivery = Delivery(
            id=uuid7(),
            run_id=checkpoint_result.run_id,
            checkpoint=checkpoint_result.checkpoint,
            action=self.name,
            action_type=self.action_type,
            kind="notify",
            previous_status=None,
            attempt=1,
            result=checkpoint_result,
        )
        outcome = await self.channel.send(delivery)
        details = {"status_code": outcome.status_code, "delivery_id": delivery.id}
        return self.make_result(ActionStatus.SUCCESS, outcome.detail, details=details)
