"""Action metrics: series live exactly as long as their action is configured."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from checkpointd.actions.metrics import ActionMetrics


def _sample(registry: CollectorRegistry, action: str, result: str) -> float | None:
    return registry.get_sample_value(
        "checkpointd_action_deliveries_total", {"action": action, "result": result}
    )


def test_an_attempt_that_ends_after_its_action_was_dropped_brings_no_series_back():
    registry = CollectorRegistry()
    metrics = ActionMetrics(registry)
    metrics.register_action("main", lambda: False)
    metrics.register_action("extra", lambda: False)

    metrics.forget_actions({"main"})  # a reload dropped "extra" while it was being attempted
    metrics.attempt("extra", "failed", 0.1)
    metrics.attempt("main", "delivered", 0.1)

    assert _sample(registry, "extra", "failed") is None
    assert _sample(registry, "main", "delivered") == 1.0
