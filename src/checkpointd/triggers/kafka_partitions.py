"""Which partitions the consumer reads: paused for backpressure, held for a rewind.

- The poll loop never waits for a run. Emits run in tasks; when more than
  ``max_in_flight`` are outstanding (the pool and result queue are full) every
  assigned partition is paused and the loop keeps polling, so
  ``max_poll_interval_ms`` is never exceeded and the group sees a live member;
  they resume once three quarters of the emits are done (``kafka_flow``).
  Overload shows as lag, not memory.
- A partition is held (paused, its messages not dispatched) when an emit failed
  or a detached trigger dropped its open batches. After a delay its in-flight
  emits settle and it is sought back to its commit position: read again, the
  journal refuses what already ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from checkpointd.triggers.kafka_dispatch import Dispatcher
from checkpointd.triggers.kafka_flow import Backpressure, partitions_to_pause, poll_timeout_ms
from checkpointd.triggers.kafka_metrics import KafkaMetrics
from checkpointd.triggers.kafka_route import TP, partition_names

__all__ = ["PartitionControl"]

log = structlog.get_logger("checkpointd.trigger.kafka")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]
"""Runs a helper task of the hub's, cancelled when the consumer disconnects."""


class PartitionControl:
    """Pauses, resumes and rewinds the partitions of the live consumer.

    ``live`` returns the hub's consumer while it is connected (None once it lets go);
    ``spawn`` runs the rewinds as the hub's helper tasks, cancelled when it disconnects.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        metrics: KafkaMetrics,
        *,
        max_in_flight: int,
        live: Callable[[], Any],
        spawn: Spawn,
    ) -> None:
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._flow = Backpressure(max_in_flight)
        self._live = live
        self._spawn = spawn
        self._pausing = False
        """Whether the last flow check left partitions paused."""
        self._rewinding: set[TP] = set()

    @property
    def overloaded(self) -> bool:
        """Whether backpressure has paused consumption right now."""
        return self._flow.overloaded

    def room(self, batch: int) -> int:
        """How many records the next poll may take: never more than there is room for."""
        return self._flow.room(self._dispatcher.in_flight, batch)

    def poll_timeout(self) -> int:
        """How long the next poll may wait, in milliseconds."""
        return poll_timeout_ms(
            self._flow.overloaded, self._dispatcher.next_deadline(), time.monotonic()
        )

    def apply(self, consumer: Any) -> None:
        """Pause and resume partitions as the emits in flight and the held partitions say."""
        in_flight = self._dispatcher.in_flight
        if self._flow.update(in_flight):
            state = "paused: runs cannot keep up" if self._flow.overloaded else "resumed"
            log.debug(f"kafka consumption {state}", in_flight=in_flight)
        held = self._dispatcher.held
        if not (self._flow.overloaded or held or self._pausing):
            return  # the common case, once per poll: nothing is or should be paused
        from aiokafka.structs import TopicPartition

        assigned = set(consumer.assignment())
        wanted = partitions_to_pause(
            assigned, {TopicPartition(*tp) for tp in held}, self._flow.overloaded
        )
        current = set(consumer.paused()) & assigned
        if wanted - current:
            consumer.pause(*(wanted - current))
        if current - wanted:
            consumer.resume(*(current - wanted))
        self._pausing = bool(wanted)
        self._metrics.set_paused(len(wanted))

    def reset(self) -> None:
        """The consumer is gone: nothing is paused any more."""
        self._flow.overloaded = False
        self._pausing = False
        self._metrics.set_paused(0)

    def rewind_later(self, tp: TP, delay: float) -> None:
        """Hold ``tp`` now; in ``delay`` seconds read it again from its commit position."""
        consumer = self._live()
        if tp in self._rewinding or consumer is None:
            return
        self._rewinding.add(tp)
        self._dispatcher.hold(tp)
        self._spawn(self._rewind(tp, delay, consumer), f"kafka-rewind:{tp[0]}:{tp[1]}")

    async def _rewind(self, tp: TP, delay: float, consumer: Any) -> None:
        """Read ``tp`` again from its commit position (after a failed emit or a dropped batch)."""
        from aiokafka.structs import TopicPartition

        dispatcher = self._dispatcher
        try:
            await asyncio.sleep(delay)
            state = dispatcher.tracker.get(tp)
            await dispatcher.settle([tp])
            if consumer is not self._live() or state is None or state.dropped:
                return  # revoked or reconnected meanwhile: that path re-reads anyway
            point = state.rewind_point
            if point is not None:
                consumer.seek(TopicPartition(*tp), point)
            dispatcher.rewound(tp, state.position)
            log.info("kafka partition rewound", partition=partition_names([tp])[0], offset=point)
        finally:
            self._rewinding.discard(tp)
