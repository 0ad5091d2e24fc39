"""Whether the broker answers, and how far behind the consumer is: readiness and lag.

Every ``probe_interval`` while connected, :meth:`BrokerHealth.run` asks for the
end offsets of the assigned partitions: they set the lag gauges (log end offset
minus the next offset not yet journaled), and an answer shows the broker is
there. With nothing assigned, or while the broker is away, a plain metadata
request decides. ``KafkaHub.ready`` is False while the broker does not answer;
the consumer reconnects by itself, and records arriving also show it is back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from checkpointd.triggers.kafka_metrics import KafkaMetrics
from checkpointd.triggers.kafka_offsets import OffsetTracker
from checkpointd.triggers.kafka_route import TP

__all__ = ["BrokerHealth"]

log = structlog.get_logger("checkpointd.trigger.kafka")


class BrokerHealth:
    """The ``connected`` state (and its gauge), kept by probing the live consumer."""

    def __init__(
        self,
        tracker: OffsetTracker[TP],
        metrics: KafkaMetrics,
        *,
        request_timeout: float,
    ) -> None:
        self._tracker = tracker
        self._metrics = metrics
        self._request_timeout = request_timeout
        self._connected = False

    @property
    def connected(self) -> bool:
        """Whether the broker answered the last probe (or sent records since)."""
        return self._connected

    def set_connected(self, connected: bool) -> None:
        self._connected = connected
        self._metrics.set_connected(connected)

    async def run(self, consumer: Any, *, every: float) -> None:
        """Probe each ``every`` seconds until cancelled (the hub runs it per connection)."""
        while True:
            # While the broker is away, the offsets request would only wait out its timeout.
            answered = await self._refresh_lag(consumer) if self._connected else False
            if not answered:
                # No lag this round (nothing assigned, or the offsets request failed):
                # a plain metadata request decides whether the broker is there.
                try:
                    async with asyncio.timeout(self._request_timeout):
                        await consumer.topics()
                    answered = True
                except Exception as exc:  # any failure to get an answer means "not ready"
                    if self._connected:
                        log.warning("kafka broker not answering", error=repr(exc))
            if answered and not self._connected:
                log.info("kafka broker answering again")
            self.set_connected(answered)
            await asyncio.sleep(every)

    async def _refresh_lag(self, consumer: Any) -> bool:
        """Update the lag gauges from the partitions' end offsets; False when not possible."""
        assigned = list(consumer.assignment())
        if not assigned:
            self._metrics.set_lag({})
            return False
        try:
            async with asyncio.timeout(self._request_timeout):
                ends = await consumer.end_offsets(assigned)
        except Exception as exc:
            log.debug("kafka end offsets not available", error=repr(exc))
            return False
        tracker = self._tracker
        lags = {(tp.topic, tp.partition): tracker.lag((tp.topic, tp.partition), end)
                for tp, end in ends.items()}  # fmt: skip
        self._metrics.set_lag({tp: lag for tp, lag in lags.items() if lag is not None})
        return True
