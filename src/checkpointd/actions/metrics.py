"""Delivery metrics, created on the daemon's registry (``Metrics.registry``).

::

    checkpointd_action_deliveries_total{action,result}     result: delivered | failed | dead
    checkpointd_action_delivery_duration_seconds{action}   one observation per attempt
    checkpointd_action_outbox_pending                      deliveries waiting (incl. retries)
    checkpointd_action_dead_letters                        deliveries given up on
    checkpointd_action_circuit_open{action}                1 while the action's breaker is open

``action`` is the action's name (config ``name``, else
``<checkpoint>.<type>[<index>]``): bounded by the config, never a URL.
``failed`` counts attempts that failed and will be retried; ``dead`` counts
deliveries given up on (each once).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from checkpointd.metrics_base import NAMESPACE

__all__ = ["DELIVERY_BUCKETS", "ActionMetrics"]

DELIVERY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""From a local hook (5 ms) to a receiver at the edge of its timeout."""

RESULTS = ("delivered", "failed", "dead")


class ActionMetrics:
    """The five delivery metrics on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries_total = Counter(
            "action_deliveries",
            "Delivery attempts by outcome: delivered, failed (will retry), dead (given up).",
            ("action", "result"),
            namespace=NAMESPACE,
            registry=registry,
        )
        self.delivery_duration_seconds = Histogram(
            "action_delivery_duration_seconds",
            "Duration of one delivery attempt.",
            ("action",),
            namespace=NAMESPACE,
            registry=registry,
            buckets=DELIVERY_BUCKETS,
        )
        self.outbox_pending = Gauge(
            "action_outbox_pending",
            "Deliveries in the outbox waiting to be delivered (including retries).",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.dead_letters = Gauge(
            "action_dead_letters",
            "Deliveries given up on; list them with `checkpointd deliveries --status dead`.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.circuit_open = Gauge(
            "action_circuit_open",
            "1 while the circuit breaker of the action's destination is open.",
            ("action",),
            namespace=NAMESPACE,
            registry=registry,
        )
        self._actions: set[str] = set()

    def register_action(self, action: str, is_open: Callable[[], bool]) -> None:
        """Create the action's series at zero; its breaker gauge reads ``is_open`` at scrape."""
        self._actions.add(action)
        for result in RESULTS:
            self.deliveries_total.labels(action=action, result=result)
        self.circuit_open.labels(action=action).set_function(lambda: 1.0 if is_open() else 0.0)

    def forget_actions(self, keep: set[str]) -> None:
        """Drop the series of actions no longer configured (after a reload)."""
        for action in self._actions - keep:
            for result in RESULTS:
                self.deliveries_total.remove(action, result)
            self.delivery_duration_seconds.remove(action)
            self.circuit_open.remove(action)
        self._actions &= keep

    def attempt(self, action: str, result: str, seconds: float) -> None:
        """One attempt ended with ``result`` after ``seconds``.

        An attempt still in flight when a reload dropped its action is not counted: it
        would bring back the series :meth:`forget_actions` removed.
        """
        if action not in self._actions:
            return
        self.deliveries_total.labels(action=action, result=result).inc()
        self.delivery_duration_seconds.labels(action=action).observe(max(0.0, seconds))

    def set_counts(self, pending: int, dead: int) -> None:
        """The outbox's pending and dead totals."""
        self.outbox_pending.set(pending)
        self.dead_letters.set(dead)
