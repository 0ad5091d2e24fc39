"""The pace of the Kafka consume loop: backpressure with hysteresis, poll timeouts (pure).

Emits wait while the daemon's run pool and result queue are full; the consumer
counts the emits outstanding and, at ``limit``, pauses every assigned partition
(and keeps polling, so the group sees a live member). It resumes only once the
count is down to a quarter of the limit: pausing makes aiokafka discard the
partitions' prefetched data, so each pause/resume cycle should carry many
messages, not flap around the limit.

Each poll waits for records at most until the first open ``kafka_batch`` batch
falls due (:func:`poll_timeout_ms`), so a batch is handed over at its
``max_wait``, not at the next poll's end.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import TypeVar

__all__ = ["IDLE_POLL", "OVERLOADED_POLL", "Backpressure", "partitions_to_pause", "poll_timeout_ms"]

IDLE_POLL = 0.2
"""Seconds a poll may wait for records when no batch is open (the loop's heartbeat)."""

OVERLOADED_POLL = 0.05
"""The same while paused: paused partitions return nothing, so check for room more often."""

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


def poll_timeout_ms(overloaded: bool, deadline: float | None, now: float) -> int:
    """How long the next poll may wait for records, in whole milliseconds.

    No longer than the open batch that falls due first (``deadline``, monotonic
    seconds; None when no batch is open) has left: a poll that waits past it makes
    that batch late by as much. Rounded up: rounded down, the poll would end just
    before the batch is due and the loop would spin through empty polls until it is.
    """
    timeout = OVERLOADED_POLL if overloaded else IDLE_POLL
    if deadline is not None:
        timeout = min(timeout, max(0.0, deadline - now))
    return math.ceil(timeout * 1000)
