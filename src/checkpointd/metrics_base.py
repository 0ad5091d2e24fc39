"""Metric naming shared by every layer: the prefix and the histogram buckets.

The daemon's metrics (``daemon.metrics``), the action metrics
(``actions.metrics``) and the Kafka metrics (``triggers.kafka_metrics``) are
created on one injected ``CollectorRegistry`` with these names, so one scrape
shows them all; this module holds only what they share and imports nothing.
"""

from __future__ import annotations

NAMESPACE = "checkpointd"
"""The prefix of every checkpointd metric; other metric groups use it too."""

RUN_DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Run durations from 1 ms (a tiny in-memory check) to 10 min (a large scan)."""

TRIGGER_LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
    60.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
"""Trigger lag from 1 ms (a manual call) to 1 h (a Kafka backlog after an outage)."""
