"""Gathering Kafka messages into batches for a ``kafka_batch`` data source (pure).

A batch holds the decoded messages of *one partition* for *one trigger*, in
offset order, and is handed over when it reaches ``max_messages`` or when its
first message has waited ``max_wait`` seconds, whichever comes first. One
partition per batch keeps the batch's idempotency key a simple offset range
(``kafka:{topic}:{partition}:{first}-{last}``) and its commit a single position.

Batch boundaries are not needed for correctness after a crash: when a partition
is assigned, the trigger asks the journal for the last offset any batch of the
checkpoint covered on that partition, and skips messages up to it (see
``triggers/kafka.py``), so a replay never checks a message twice even if it
cuts the batches differently.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Batch", "BatchBuffer"]

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class Batch(Generic[P]):
    """Messages of one partition, oldest first."""

    partition: P
    started_at: float
    offsets: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.offsets[0]

    @property
    def last(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.offsets)


class BatchBuffer(Generic[P]):
    """Open batches of one trigger, one per partition; ``now`` is monotonic seconds."""

    def __init__(self, max_messages: int, max_wait: float) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, found {max_messages}")
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, found {max_wait}")
        self.max_messages = max_messages
        self.max_wait = max_wait
        self._open: dict[P, Batch[P]] = {}

    def add(self, partition: P, offset: int, record: dict[str, Any], now: float) -> Batch[P] | None:
        """Add one message; returns the batch when this message filled it."""
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = Batch(partition, now)
        batch.offsets.append(offset)
        batch.records.append(record)
        if len(batch) >= self.max_messages:
            del self._open[partition]
            return batch
        return None

    def due(self, now: float) -> list[Batch[P]]:
        """Take every batch whose first message has waited ``max_wait``."""
        ready = [b for b in self._open.values() if now - b.started_at >= self.max_wait]
        for batch in ready:
            del self._open[batch.partition]
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest open batch falls due (None when nothing is open)."""
        if not self._open:
            return None
        return min(b.started_at for b in self._open.values()) + self.max_wait

    def drop(self, partition: P) -> Batch[P] | None:
        """Discard the open batch of ``partition`` (revoked or rewound); returns it."""
        return self._open.pop(partition, None)

    def partitions(self) -> list[P]:
        """Partitions with an open batch."""
        return list(self._open)

    def buffered(self) -> int:
        return sum(len(b) for b in self._open.values())
