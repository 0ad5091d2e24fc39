"""Event-loop lag: how late the loop wakes a timer, the daemon's own health signal.

Everything slow in checkpointd (loading data, validating) belongs in worker
threads; when something blocks the loop anyway, every trigger, HTTP request
and watchdog ping waits behind it. :class:`LoopLagMonitor` sleeps a fixed
interval over and over and measures the overshoot. ``/healthz`` asks
:meth:`LoopLagMonitor.responsive`, and a ``Metrics.set_event_loop_lag``
callback exports each sample.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DEFAULT_INTERVAL = 0.25
"""Seconds between samples: cheap, yet a 1 s stall is always seen."""


class LoopLagMonitor:
    """Samples event-loop lag every ``interval`` seconds while :meth:`run` runs.

    ``on_sample`` receives each lag in seconds (e.g.
    ``Metrics.set_event_loop_lag``); an exception from it is not the
    monitor's concern and propagates, so a supervising TaskGroup sees it.
    ``time`` defaults to the running loop's clock.
    """

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        on_sample: Callable[[float], None] | None = None,
        *,
        time: Callable[[], float] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"loop lag interval must be positive, found {interval!r}")
        self._interval = interval
        self._on_sample = on_sample
        self._time = time
        self._last = 0.0
        self._max = 0.0
        self._due: float | None = None  # when the pending sleep should end

    @property
    def interval(self) -> float:
        """Seconds between samples."""
        return self._interval

    @property
    def last_lag(self) -> float:
        """The latest completed sample, in seconds (0.0 before the first)."""
        return self._last

    @property
    def max_lag(self) -> float:
        """The largest sample seen since the monitor was created."""
        return self._max

    def _now(self) -> float:
        return self._time() if self._time is not None else asyncio.get_running_loop().time()

    def current_lag(self) -> float:
        """The lag as of now: the last sample, or the pending sleep's overshoot if larger.

        While the loop is blocked the monitor cannot record a sample, but the
        first code to run afterwards (say, a ``/healthz`` handler) sees that
        the pending timer is overdue.
        """
        if self._due is None:
            return self._last
        return max(self._last, self._now() - self._due)

    def responsive(self, threshold: float) -> bool:
        """True while the loop's lag is at most ``threshold`` seconds."""
        return self.current_lag() <= threshold

    def record(self, lag: float) -> None:
        """Store one sample (clamped at zero) and hand it to ``on_sample``."""
        lag = max(0.0, lag)
        self._last = lag
        self._max = max(self._max, lag)
        if self._on_sample is not None:
            self._on_sample(lag)

    async def run(self) -> None:
        """Sample until cancelled."""
        try:
            while True:
                start = self._now()
                self._due = start + self._interval
                await asyncio.sleep(self._interval)
                woke = self._now()
                self._due = None
                self.record(woke - start - self._interval)
        finally:
            self._due = None
