"""Metrics: what each event does to the exported series, and that the exposition is valid."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.parser import text_string_to_metric_families

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import FrozenClock
from checkpointd.daemon.metrics import Metrics

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def result(checkpoint: str, status: Status, seconds: float = 0.5) -> CheckpointResult:
    return CheckpointResult(
        run_id="run-1",
        checkpoint=checkpoint,
        status=status,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=seconds),
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: FrozenClock) -> Metrics:
    return Metrics(registry, clock=clock, version="1.2.3")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def series_with_label(registry: CollectorRegistry, label: str, wanted: str) -> list[str]:
    return [
        sample.name
        for family in registry.collect()
        for sample in family.samples
        if sample.labels.get(label) == wanted
    ]


def test_a_finished_run_is_counted_by_checkpoint_and_status(metrics, registry):
    metrics.observe_result(result("orders", Status.FAILURE))
    metrics.observe_result(result("orders", Status.FAILURE))
    metrics.observe_result(result("orders", Status.SUCCESS))

    assert value(registry, "checkpointd_runs_total", checkpoint="orders", status="failure") == 2
    assert value(registry, "checkpointd_runs_total", checkpoint="orders", status="success") == 1


def test_run_duration_lands_in_the_histogram(metrics, registry):
    metrics.observe_result(result("orders", Status.SUCCESS, seconds=0.4))
    metrics.observe_result(result("orders", Status.ERROR, seconds=200))

    name = "checkpointd_run_duration_seconds"
    assert value(registry, f"{name}_count", checkpoint="orders") == 2
    assert value(registry, f"{name}_sum", checkpoint="orders") == pytest.approx(200.4)
    assert value(registry, f"{name}_bucket", checkpoint="orders", le="0.5") == 1
    assert value(registry, f"{name}_bucket", checkpoint="orders", le="300.0") == 2


def test_duration_buckets_span_one_millisecond_to_ten_minutes(metrics, registry):
    metrics.observe_result(result("orders", Status.SUCCESS))
    bounds = {
        float(sample.labels["le"])
        for family in registry.collect()
        if family.name == "checkpointd_run_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }
    assert min(bounds) == 0.001
    assert max(bounds - {float("inf")}) == 600.0


@pytest.mark.parametrize("status", [Status.SUCCESS, Status.WARNING])
def test_a_passing_run_sets_the_last_success_time(metrics, registry, status):
    metrics.observe_result(result("orders", status, seconds=2))

    stamp = value(registry, "checkpointd_last_success_timestamp_seconds", checkpoint="orders")
    assert stamp == (T0 + timedelta(seconds=2)).timestamp()


@pytest.mark.parametrize("status", [Status.FAILURE, Status.ERROR, Status.TIMEOUT])
def test_a_failing_run_leaves_the_last_success_time_alone(metrics, registry, status):
    metrics.observe_result(result("orders", Status.SUCCESS, seconds=1))
    metrics.observe_result(result("orders", status, seconds=9))

    stamp = value(registry, "checkpointd_last_success_timestamp_seconds", checkpoint="orders")
    assert stamp == (T0 + timedelta(seconds=1)).timestamp()


def test_a_skipped_run_is_counted_but_has_no_duration(metrics, registry):
    metrics.observe_result(result("orders", Status.SKIPPED))

    assert value(registry, "checkpointd_runs_total", checkpoint="orders", status="skipped") == 1
    assert value(registry, "checkpointd_run_duration_seconds_count", checkpoint="orders") is None


def test_a_registered_checkpoint_exports_zero_for_every_status(metrics, registry):
    metrics.register_checkpoint("orders")

    for status in Status:
        got = value(registry, "checkpointd_runs_total", checkpoint="orders", status=status.value)
        assert got == 0, status


def test_removing_a_checkpoint_drops_its_series_and_only_its_series(metrics, registry):
    for name in ("orders", "payments"):
        metrics.register_checkpoint(name)
        metrics.observe_result(result(name, Status.SUCCESS))
        metrics.trigger_event("schedule", name)
        metrics.trigger_event("file", name)

    metrics.remove_checkpoint("orders")

    assert series_with_label(registry, "checkpoint", "orders") == []
    kept = series_with_label(registry, "checkpoint", "payments")
    assert "checkpointd_runs_total" in kept
    assert "checkpointd_trigger_events_total" in kept
    assert "checkpointd_last_success_timestamp_seconds" in kept
    assert "checkpointd_run_duration_seconds_count" in kept


def test_removing_an_unknown_checkpoint_is_harmless(metrics, registry):
    metrics.remove_checkpoint("never-seen")
    metrics.observe_result(result("orders", Status.SUCCESS))
    metrics.remove_checkpoint("orders")
    metrics.remove_checkpoint("orders")

    assert series_with_label(registry, "checkpoint", "orders") == []


def test_a_checkpoint_can_come_back_after_removal(metrics, registry):
    metrics.observe_result(result("orders", Status.FAILURE))
    metrics.remove_checkpoint("orders")
    metrics.observe_result(result("orders", Status.FAILURE))

    assert value(registry, "checkpointd_runs_total", checkpoint="orders", status="failure") == 1


def test_runs_in_flight_counts_the_with_block_even_when_it_raises(metrics, registry):
    with metrics.run_in_flight(), metrics.run_in_flight():
        assert value(registry, "checkpointd_runs_in_flight") == 2
    with pytest.raises(RuntimeError), metrics.run_in_flight():
        raise RuntimeError("run crashed")

    assert value(registry, "checkpointd_runs_in_flight") == 0


async def test_result_queue_depth_is_read_at_scrape_time(metrics, registry):
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=5)
    metrics.watch_result_queue(queue)
    queue.put_nowait(1)
    queue.put_nowait(2)

    assert value(registry, "checkpointd_result_queue_capacity") == 5
    assert value(registry, "checkpointd_result_queue_depth") == 2
    queue.get_nowait()
    assert value(registry, "checkpointd_result_queue_depth") == 1


def test_pool_slots_and_backpressure(metrics, registry):
    metrics.set_pool_slots(8)
    metrics.add_backpressure_wait(1.5)
    metrics.add_backpressure_wait(0.25)
    metrics.add_backpressure_wait(0.0)

    assert value(registry, "checkpointd_pool_slots") == 8
    assert value(registry, "checkpointd_backpressure_wait_seconds_total") == 1.75


def test_trigger_events_and_lag(metrics, registry):
    metrics.trigger_event("kafka", "orders")
    metrics.trigger_event("kafka", "orders")
    metrics.observe_trigger_lag("kafka", 2.0)
    metrics.observe_trigger_lag("kafka", -0.3)  # the source's clock runs ahead of ours

    events = value(
        registry, "checkpointd_trigger_events_total", trigger_type="kafka", checkpoint="orders"
    )
    assert events == 2
    assert value(registry, "checkpointd_trigger_lag_seconds_count", trigger_type="kafka") == 2
    assert value(registry, "checkpointd_trigger_lag_seconds_sum", trigger_type="kafka") == 2.0


def test_skips_misfires_recoveries_and_file_refusals_are_counted(metrics, registry):
    metrics.run_skipped("coalesced")
    metrics.run_skipped("coalesced")
    metrics.run_skipped("paused")
    metrics.schedule_misfire()
    metrics.runs_recovered(3)
    metrics.file_trigger_refused("outside_directory")

    assert value(registry, "checkpointd_runs_skipped_total", reason="coalesced") == 2
    assert value(registry, "checkpointd_runs_skipped_total", reason="paused") == 1
    assert value(registry, "checkpointd_schedule_misfires_total") == 1
    assert value(registry, "checkpointd_recovered_runs_total") == 3
    refused = value(registry, "checkpointd_file_trigger_refused_total", reason="outside_directory")
    assert refused == 1


def test_config_reload_outcomes(metrics, registry, clock):
    reloads = "checkpointd_config_reloads_total"
    ok = "checkpointd_config_last_reload_successful"
    stamp = "checkpointd_config_last_reload_success_timestamp_seconds"
    assert value(registry, reloads, result="failure") == 0  # exported before any reload

    metrics.config_loaded()
    assert value(registry, ok) == 1
    assert value(registry, stamp) == T0.timestamp()
    assert value(registry, reloads, result="success") == 0  # the start-up load is no reload

    clock.advance(60)
    metrics.config_reload_failed()
    assert value(registry, ok) == 0
    assert value(registry, stamp) == T0.timestamp()
    assert value(registry, reloads, result="failure") == 1

    clock.advance(60)
    metrics.config_reload_succeeded()
    assert value(registry, ok) == 1
    assert value(registry, stamp) == T0.timestamp() + 120
    assert value(registry, reloads, result="success") == 1


def test_event_loop_lag_and_build_info(metrics, registry):
    metrics.set_event_loop_lag(0.042)

    assert value(registry, "checkpointd_event_loop_lag_seconds") == 0.042
    assert value(registry, "checkpointd_build_info", version="1.2.3") == 1


def test_process_metrics_live_on_the_injected_registry(registry):
    Metrics(registry)

    assert value(registry, "process_cpu_seconds_total") is not None
    assert value(registry, "process_resident_memory_bytes") is not None
    assert any(f.name == "python_info" for f in registry.collect())


def test_process_metrics_survive_a_hidden_proc_stat(registry, tmp_path):
    # systemd's ProcSubset=pid hides /proc/stat, where the stock collector
    # reads the boot time; without it, it would export nothing at all.
    (tmp_path / "self").symlink_to("/proc/self")
    assert not (tmp_path / "stat").exists()

    Metrics(registry, proc=str(tmp_path))

    started = value(registry, "process_start_time_seconds")
    assert value(registry, "process_cpu_seconds_total") is not None
    assert started is not None
    assert abs(started - start_time_from_real_proc()) < 5


def start_time_from_real_proc() -> float:
    """This process's start time from the real /proc/stat, computed independently."""
    with open("/proc/stat") as stat:
        btime = next(float(line.split()[1]) for line in stat if line.startswith("btime "))
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return btime + float(fields[19]) / os.sysconf("SC_CLK_TCK")


def test_the_global_registry_is_never_touched():
    before = {f.name for f in REGISTRY.collect()}
    Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())  # a second instance would clash on a shared registry

    assert {f.name for f in REGISTRY.collect()} == before
    assert not any(name.startswith("checkpointd_") for name in before)


def test_labels_are_small_and_fixed(metrics, registry):
    metrics.register_checkpoint("orders")
    metrics.observe_result(result("orders", Status.SUCCESS))
    metrics.trigger_event("file", "orders")
    metrics.observe_trigger_lag("file", 1)
    metrics.run_skipped("coalesced")
    metrics.file_trigger_refused("too_large")
    allowed = {"checkpoint", "status", "trigger_type", "reason", "result", "version", "le"}

    for family in registry.collect():
        if family.name.startswith("checkpointd_"):
            for sample in family.samples:
                assert set(sample.labels) <= allowed, sample


def test_render_is_the_prometheus_text_format(metrics):
    metrics.observe_result(result("orders", Status.SUCCESS))

    body, content_type = metrics.render()

    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["checkpointd_runs"].type == "counter"
    assert families["checkpointd_run_duration_seconds"].type == "histogram"


def test_render_speaks_openmetrics_when_asked(metrics):
    body, content_type = metrics.render(accept="application/openmetrics-text; version=1.0.0")

    assert content_type.startswith(OPENMETRICS)
    assert body.rstrip().endswith(b"# EOF")


def test_promtool_accepts_the_exposition(metrics):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run scripts/install-test-tools (Debian: prometheus)")
    metrics.register_checkpoint("orders")
    for status in Status:
        metrics.observe_result(result("orders", status))
    metrics.trigger_event("kafka", "orders")
    metrics.observe_trigger_lag("kafka", 0.3)
    metrics.run_skipped("coalesced")
    metrics.file_trigger_refused("outside_directory")
    metrics.config_reload_failed()
    body, _ = metrics.render()

    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )

    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    # promtool prints lint findings (bad names, missing units) even when it exits 0.
    assert check.stdout.strip() == b"", check.stdout.decode()
    assert check.stderr.strip() == b"", check.stderr.decode()
