"""A kafka trigger of one checkpoint: the daemon's ``TriggerSource`` for ``{type: kafka}``.

It holds no connection: running, it attaches a route (its topic selector, its
filter, the daemon's ``emit`` and, for a ``kafka_batch`` data source, the batch
limits) to the daemon's one consumer, a :class:`RouteHub` (``kafka.KafkaHub``),
and detaches it when cancelled (shutdown, or a reload that changed the trigger).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from checkpointd.config.models import KafkaBatchSource, KafkaTrigger
from checkpointd.errors import ConfigError, ConfigIssue
from checkpointd.protocols import Emit
from checkpointd.triggers.kafka_filter import MessageFilter, TopicSelector
from checkpointd.triggers.kafka_route import Route

__all__ = ["KafkaSource", "RouteHub"]


class RouteHub(Protocol):
    """What a kafka trigger needs of the shared consumer: a place to attach its route."""

    def attach(self, route: Route) -> None:
        """Start handing ``route`` the messages it matches."""
        ...

    def detach(self, route: Route) -> None:
        """Stop handing ``route`` messages (what its open batches held is read again)."""
        ...


class KafkaSource:
    """One kafka trigger of one checkpoint: a ``TriggerSource`` whose work the hub does."""

    def __init__(
        self,
        checkpoint: str,
        index: int,
        spec: KafkaTrigger,
        *,
        hub: RouteHub,
        batch: KafkaBatchSource | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self._name = f"{checkpoint}/kafka[{index}]"
        self._hub = hub
        try:
            self._selector = TopicSelector.of(spec)
            self._filter = MessageFilter(spec.filter)
        except ValueError as exc:
            raise ConfigError(
                [ConfigIssue("config", f"checkpoints.{checkpoint}.triggers[{index}]", str(exc))]
            ) from None
        self._batch = (
            (batch.max_messages, batch.max_wait.total_seconds()) if batch is not None else None
        )

    @property
    def name(self) -> str:
        return self._name

    async def run(self, emit: Emit) -> None:
        """Attach to the shared consumer until cancelled."""
        route = Route(
            name=self._name,
            checkpoint=self.checkpoint,
            selector=self._selector,
            message_filter=self._filter,
            emit=emit,
            batch=self._batch,
        )
        self._hub.attach(route)
        try:
            await asyncio.Event().wait()
        finally:
            self._hub.detach(route)
