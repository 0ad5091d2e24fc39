"""The Kafka trigger's Prometheus metrics, on the daemon's injected registry.

Created once per daemon on ``Metrics.registry`` (see ``daemon/metrics.py``: Kafka
metrics live with the Kafka code but share the ``checkpointd_`` prefix and the
one registry, so a single scrape shows everything). Label sets stay small: a
topic, a partition number, a short fixed rejection reason.

================================================  =====================================
``checkpointd_kafka_messages_total{topic}``         messages consumed (good and bad)
``checkpointd_kafka_messages_rejected_total{reason}`` malformed messages, by reason
``checkpointd_kafka_dead_letters_total{outcome}``    dead-letter sends: sent or failed
``checkpointd_kafka_consumer_lag{topic,partition}``  log end offset minus the next offset
                                                     not yet journaled
``checkpointd_kafka_commits_total``                  offset commits the broker accepted
``checkpointd_kafka_commit_failures_total``          offset commits that failed
``checkpointd_kafka_rebalances_total``               partition assignments received
``checkpointd_kafka_paused_partitions``              partitions paused by backpressure
``checkpointd_kafka_connected``                      1 while the broker answers
================================================  =====================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from checkpointd.metrics_base import NAMESPACE

__all__ = ["REJECT_REASONS", "KafkaMetrics"]

REJECT_REASONS: tuple[str, ...] = ("too_large", "not_json", "not_object", "no_value")
"""Every reason a message can be rejected for (see ``triggers/kafka_decode``)."""


class KafkaMetrics:
    """What the Kafka trigger reports; methods say what happened."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, namespace=NAMESPACE, registry=registry)

        self.messages_total = counter(
            "kafka_messages", "Kafka messages consumed, good or malformed, by topic.", ("topic",)
        )
        self.messages_rejected_total = counter(
            "kafka_messages_rejected",
            "Malformed Kafka messages skipped (their offsets still advance), by reason.",
            ("reason",),
        )
        self.dead_letters_total = counter(
            "kafka_dead_letters",
            "Malformed messages sent to the dead-letter topic, by outcome (sent, failed).",
            ("outcome",),
        )
        self.consumer_lag = gauge(
            "kafka_consumer_lag",
            "Messages between the log end and the next offset not yet journaled.",
            ("topic", "partition"),
        )
        self.commits_total = counter("kafka_commits", "Offset commits the broker accepted.")
        self.commit_failures_total = counter(
            "kafka_commit_failures", "Offset commits that failed (retried at the next commit)."
        )
        self.rebalances_total = counter(
            "kafka_rebalances", "Partition assignments received from the consumer group."
        )
        self.paused_partitions = gauge(
            "kafka_paused_partitions", "Partitions paused because runs cannot keep up."
        )
        self.connected = gauge("kafka_connected", "1 while the Kafka broker answers, else 0.")
        # Fixed label values exist from the start, so rate() and alerts see a 0.
        for reason in REJECT_REASONS:
            self.messages_rejected_total.labels(reason=reason)
        for outcome in ("sent", "failed"):
            self.dead_letters_total.labels(outcome=outcome)
        self._lag_series: set[tuple[str, str]] = set()

    def consumed(self, topic: str, count: int = 1) -> None:
        """Count messages read from ``topic``."""
        self.messages_total.labels(topic=topic).inc(count)

    def rejected(self, reason: str) -> None:
        """Count one malformed message; ``reason`` is one of :data:`REJECT_REASONS`."""
        self.messages_rejected_total.labels(reason=reason).inc()

    def dead_lettered(self, ok: bool) -> None:
        """Count one dead-letter send that succeeded or failed."""
        self.dead_letters_total.labels(outcome="sent" if ok else "failed").inc()

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace the lag series with ``{(topic, partition): lag}`` (the assigned partitions)."""
        current = {(topic, str(partition)) for topic, partition in lags}
        for stale in self._lag_series - current:
            self.consumer_lag.remove(*stale)
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, lag))
        self._lag_series = current

    def committed(self) -> None:
        self.commits_total.inc()

    def commit_failed(self) -> None:
        self.commit_failures_total.inc()

    def rebalanced(self) -> None:
        self.rebalances_total.inc()

    def set_paused(self, count: int) -> None:
        self.paused_partitions.set(count)

    def set_connected(self, connected: bool) -> None:
        self.connected.set(1 if connected else 0)
