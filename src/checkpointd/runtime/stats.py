"""RunnerStats: a snapshot of the runner's counters, for /healthz, metrics and tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunnerStats"]


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """What the runner has done and how loaded it is, at one instant.

    Counters only grow (``*_total`` metrics are built from them); gauges
    (``running``, ``backlog``, ``queue_depth``, ...) describe the moment.
    ``backpressure_wait_seconds`` adds up the time submitters waited for pool
    room and runs waited for result-queue room: when it climbs, the daemon is
    overloaded and the load shows as lag, not memory.
    """

    state: str
    started: bool
    stopped: bool
    stop_reason: str | None
    submitted: int
    completed: int
    running: int
    by_status: Mapping[str, int] = field(default_factory=dict)
    consecutive_failures: int = 0
    backlog: int = 0
    backlog_capacity: int = 0
    waiting_submitters: int = 0
    queue_depth: int = 0
    queue_capacity: int = 0
    backpressure_wait_seconds: float = 0.0
    duplicates: int = 0
    trigger_errors: int = 0
    delivered: int = 0
    delivery_errors: int = 0
    overflowed: int = 0
    undelivered: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["by_status"] = dict(self.by_status)
        return data
