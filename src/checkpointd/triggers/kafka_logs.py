"""Keep aiokafka's own logging readable while a broker is down.

aiokafka retries every ~100 ms and logs each failed attempt at ERROR level: a
20-second outage writes thousands of identical lines ("Unable connect to node
with id 1"), drowning everything else. :class:`RepeatFilter` lets the first line
of each distinct message through, drops its repeats for ``every`` seconds, and
then lets one through again saying how many were dropped. Nothing else about
the records changes: they still flow through the daemon's logging setup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["AIOKAFKA_LOGGERS", "RepeatFilter", "quiet_aiokafka_repeats"]

AIOKAFKA_LOGGERS: tuple[str, ...] = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)
"""aiokafka's loggers: filters on a logger do not apply to its children, so each is named."""

_MAX_TRACKED = 1000


class RepeatFilter(logging.Filter):
    """Pass each distinct message at most once per ``every`` seconds."""

    def __init__(self, every: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.every:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= _MAX_TRACKED:
            self._seen.clear()  # messages that vary without end: forget rather than grow
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} (and {last[1]} more like it in {self.every:g}s)"
            record.args = None
        return True


def quiet_aiokafka_repeats(every: float = 30.0) -> None:
    """Install one :class:`RepeatFilter` on each aiokafka logger (once per process)."""
    for name in AIOKAFKA_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(every))
