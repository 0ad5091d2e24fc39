"""A circuit breaker per destination, as plain state driven by a clock.

::

    closed ──(N consecutive retryable failures)──▶ open
    open ──(reset_after elapsed)──▶ half-open: one probe may go
    half-open ──probe succeeds──▶ closed      half-open ──probe fails──▶ open

While a breaker is open, deliveries to its destination wait in the outbox
without spending attempts: a receiver that is down for an hour does not turn
every pending delivery into a dead letter, and it is not hammered either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from checkpointd.clock import SYSTEM_CLOCK, Clock

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    """Open after ``failures`` consecutive failures; probe again after ``reset_after`` s."""

    failures: int = 5
    reset_after: float = 30.0
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False)
    consecutive: int = 0
    opened_at: float | None = None
    probing: bool = False

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError(f"failures must be at least 1, found {self.failures}")
        if self.reset_after < 0:
            raise ValueError(f"reset_after cannot be negative, found {self.reset_after}")

    @property
    def state(self) -> BreakerState:
        """Closed, open, or half-open (the reset time has passed: a probe may go)."""
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock.monotonic() - self.opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def is_open(self) -> bool:
        """True unless closed (for the ``circuit_open`` gauge)."""
        return self.opened_at is not None

    def allows(self) -> bool:
        """Whether a delivery may be attempted now (in half-open: only while no probe is out)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self.probing

    def seconds_until_probe(self) -> float:
        """Seconds until a probe may go (0 when closed or half-open)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.reset_after - self.clock.monotonic())

    def started(self) -> None:
        """A delivery was started; in half-open it is the one probe."""
        if self.state is BreakerState.HALF_OPEN:
            self.probing = True

    def succeeded(self) -> None:
        """The destination accepted a delivery: close."""
        self.consecutive = 0
        self.opened_at = None
        self.probing = False

    def failed(self) -> None:
        """A retryable failure: count it; open at the threshold, re-open after a failed probe."""
        self.consecutive += 1
        if self.opened_at is not None or self.consecutive >= self.failures:
            self.opened_at = self.clock.monotonic()
        self.probing = False

    def abandoned(self) -> None:
        """A started delivery ended without a verdict on the destination (cancelled, refused)."""
        self.probing = False
