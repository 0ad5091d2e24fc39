"""When the Kafka consumer pauses and resumes: backpressure with hysteresis (pure).

Emits wait while the daemon's run pool and result queue are full; the consumer
counts the emits outstanding and, at ``limit``, pauses every assigned partition
(and keeps polling, so the group sees a live member). It resumes only once the
count is down to a quarter of the limit: pausing makes aiokafka discard the
partitions' prefetched data, so each pause/resume cycle should carry many
messages, not flap around the limit.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

__all__ = ["Backpressure", "partitions_to_pause"]

P = TypeVar("P", bound=Hashable)


class Backpressure:
    """Overloaded from ``limit`` outstanding emits until they drop to ``limit // 4``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight limit must be at least 1, found {limit}")
        self.limit = limit
        self.resume_at = limit // 4
        self.overloaded = False

    def update(self, in_flight: int) -> bool:
        """Record the outstanding count; True when the overloaded state changed."""
        if not self.overloaded and in_flight >= self.limit:
            self.overloaded = True
            return True
        if self.overloaded and in_flight <= self.resume_at:
            self.overloaded = False
            return True
        return False

    def room(self, in_flight: int, batch: int) -> int:
        """How many messages the next poll may take (at least 1: polling must go on)."""
        return max(1, min(batch, self.limit - in_flight))


def partitions_to_pause(assigned: Iterable[P], held: Iterable[P], overloaded: bool) -> set[P]:
    """All assigned partitions while overloaded, else only those held for a rewind."""
    assigned = set(assigned)
    return assigned if overloaded else assigned & set(held)
