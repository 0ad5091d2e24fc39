"""What passes between the Kafka trigger's parts: partitions, messages, routes.

A :class:`Route` is one kafka trigger of one checkpoint as the shared consumer
sees it: built by ``kafka_source.KafkaSource``, attached to the hub
(``kafka.KafkaHub``) while the trigger runs, and followed by the dispatcher
(``kafka_dispatch``) for every :class:`KafkaMessage` the consumer polls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from checkpointd.protocols import Emit
from checkpointd.triggers.kafka_batch import BatchBuffer
from checkpointd.triggers.kafka_filter import MessageFilter, TopicSelector

__all__ = ["TP", "KafkaMessage", "Route", "partition_names"]

TP = tuple[str, int]
"""A partition: (topic, partition). aiokafka's ``TopicPartition`` is such a tuple."""


class KafkaMessage(NamedTuple):
    """One consumed record, as plain values (a tuple: one is made per consumed record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()
    timestamp_ms: int | None = None


class Route:
    """One kafka trigger of one checkpoint, attached to the shared consumer."""

    def __init__(
        self,
        *,
        name: str,
        checkpoint: str,
        selector: TopicSelector,
        message_filter: MessageFilter,
        emit: Emit,
        batch: tuple[int, float] | None = None,
    ) -> None:
        self.name = name
        self.checkpoint = checkpoint
        self.selector = selector
        self.filter = message_filter
        self.emit = emit
        self.buffer: BatchBuffer[TP] | None = BatchBuffer(*batch) if batch is not None else None

    def __repr__(self) -> str:
        return f"Route({self.name!r}, {self.selector.describe()})"


def partition_names(tps: Iterable[TP]) -> list[str]:
    """``topic:partition`` of each partition, sorted: how logs name them."""
    return sorted(f"{topic}:{partition}" for topic, partition in tps)
