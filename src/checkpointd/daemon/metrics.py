"""The daemon's Prometheus metrics, all on one injected ``CollectorRegistry``.

Every metric the core daemon exports is created here, once, by :class:`Metrics`;
the rest of the daemon calls methods that say what happened
(``observe_result``, ``run_skipped``, ``config_reload_failed``) instead of
touching metric objects. Names follow Prometheus conventions (``checkpointd_``
prefix, ``_total`` counters, ``_seconds`` units) and label sets stay small:
checkpoint names, statuses, trigger types and short fixed reasons, never paths,
run ids or error text, because each distinct label value is a new time series
kept forever by the server.

Kafka and action metrics are not created here: their modules create them on
``Metrics.registry`` with the same ``checkpointd_`` prefix (:data:`NAMESPACE`),
so one scrape of :meth:`Metrics.render` shows everything.

Not thread-safe for label bookkeeping: call the methods from the event loop
(the prometheus_client objects themselves are thread-safe).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.metrics_base import NAMESPACE, RUN_DURATION_BUCKETS, TRIGGER_LAG_BUCKETS

_M = TypeVar("_M", bound=MetricWrapperBase)


class _QueueLike(Protocol):
    """What the result-queue gauges read: ``asyncio.Queue`` fits."""

    @property
    def maxsize(self) -> int: ...

    def qsize(self) -> int: ...


class _ProcessCollector(ProcessCollector):
    """``ProcessCollector`` that still works when ``/proc/stat`` is hidden.

    The stock collector reads the boot time from ``/proc/stat`` and, when it
    cannot, silently exports nothing. The systemd unit's ``ProcSubset=pid``
    hides that file, so the boot time is derived from the clocks instead.
    """

    def _boot_time(self) -> float:
        try:
            btime = super()._boot_time()  # type: ignore[no-untyped-call]
        except OSError:
            btime = None
        if btime:
            return float(btime)
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _count_tasks() -> float:
    """Unfinished tasks of the running loop; 0 when rendered outside one (tests)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return 0.0


def _package_version() -> str:
    try:
        return metadata.version("checkpointd")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """Creates and updates every core checkpointd metric on ``registry``.

    ``registry`` is injected so tests and embedders get isolated metrics; the
    global ``prometheus_client.REGISTRY`` is never touched. ``clock`` stamps
    the config-reload timestamp. ``process_metrics`` registers the standard
    ``process_*`` and ``python_info`` collectors on the same registry;
    ``proc`` is where they read process data (tests point it elsewhere).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Clock = SYSTEM_CLOCK,
        version: str | None = None,
        process_metrics: bool = True,
        proc: str = "/proc",
    ) -> None:
        self._registry = registry
        self._clock = clock
        # checkpoint name -> (metric, label values) pairs it owns, so that
        # remove_checkpoint() drops exactly the series that exist.
        self._series: dict[str, set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}

        self._create_run_metrics()
        self._create_pool_metrics()
        self._create_trigger_metrics()
        self._create_config_metrics()
        self._create_loop_metrics()
        self.build_info = self._gauge(
            "build_info", "Always 1; labelled with the version.", ("version",)
        )
        self.build_info.labels(version=version or _package_version()).set(1)

        if process_metrics:
            _ProcessCollector(registry=registry, proc=proc)
            PlatformCollector(registry=registry)

    # ------------------------------------------------------------- creation

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, namespace=NAMESPACE, registry=self._registry)

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, namespace=NAMESPACE, registry=self._registry)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(
            name, doc, labels, namespace=NAMESPACE, registry=self._registry, buckets=buckets
        )

    def _create_run_metrics(self) -> None:
        self.runs_total = self._counter(
            "runs", "Checkpoint runs finished, by final status.", ("checkpoint", "status")
        )
        self.run_duration_seconds = self._histogram(
            "run_duration_seconds",
            "Wall-clock duration of checkpoint runs that executed (skipped runs excluded).",
            ("checkpoint",),
            RUN_DURATION_BUCKETS,
        )
        self.runs_in_flight = self._gauge("runs_in_flight", "Checkpoint runs executing right now.")
        self.runs_skipped_total = self._counter(
            "runs_skipped", "Runs not started, by reason.", ("reason",)
        )
        self.recovered_runs_total = self._counter(
            "recovered_runs", "Unfinished journal entries recovered at start-up."
        )
        self.last_success_timestamp_seconds = self._gauge(
            "last_success_timestamp_seconds",
            "Unix time at which the checkpoint last finished with success or warning.",
            ("checkpoint",),
        )

    def _create_pool_metrics(self) -> None:
        self.pool_slots = self._gauge(
            "pool_slots", "Size of the run pool (daemon.max_concurrent_checkpoints)."
        )
        self.result_queue_depth = self._gauge(
            "result_queue_depth", "Results waiting to be stored by the result sink."
        )
        self.result_queue_capacity = self._gauge(
            "result_queue_capacity", "Bound of the result queue (daemon.result_queue_size)."
        )
        self.backpressure_wait_seconds_total = self._counter(
            "backpressure_wait_seconds",
            "Seconds the pool spent waiting for room in a full result queue.",
        )

    def _create_trigger_metrics(self) -> None:
        self.trigger_events_total = self._counter(
            "trigger_events",
            "Trigger events accepted, by trigger type and matched checkpoint.",
            ("trigger_type", "checkpoint"),
        )
        # A histogram rather than a gauge: a gauge shows only the lag at scrape
        # time and hides spikes between scrapes; the histogram keeps every
        # event, aggregates across instances and gives quantiles over any
        # window. Labelled by trigger type only, so it stays a few series.
        self.trigger_lag_seconds = self._histogram(
            "trigger_lag_seconds",
            "Delay between a trigger firing and its run starting.",
            ("trigger_type",),
            TRIGGER_LAG_BUCKETS,
        )
        self.schedule_misfires_total = self._counter(
            "schedule_misfires", "Scheduled fire times missed past their grace period."
        )
        self.file_trigger_refused_total = self._counter(
            "file_trigger_refused",
            "Files a file trigger refused to hand to a run, by reason.",
            ("reason",),
        )

    def _create_config_metrics(self) -> None:
        self.config_reloads_total = self._counter(
            "config_reloads", "Configuration reload attempts, by result.", ("result",)
        )
        self.config_last_reload_successful = self._gauge(
            "config_last_reload_successful", "1 if the last configuration (re)load succeeded."
        )
        self.config_last_reload_success_timestamp_seconds = self._gauge(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
        )
        # Pre-create the fixed label values so rate() and alerts see a 0
        # before the first event instead of a missing series.
        for result in ("success", "failure"):
            self.config_reloads_total.labels(result=result)

    def _create_loop_metrics(self) -> None:
        self.event_loop_lag_seconds = self._gauge(
            "event_loop_lag_seconds", "How late the event loop woke a timer, last sample."
        )
        self.asyncio_tasks = self._gauge(
            "asyncio_tasks", "Unfinished asyncio tasks on the daemon's event loop (leak check)."
        )
        # Read at scrape time, which happens on the loop (the /metrics handler).
        self.asyncio_tasks.set_function(_count_tasks)

    @property
    def registry(self) -> CollectorRegistry:
        """The registry every metric lives on; other metric groups add theirs here."""
        return self._registry

    # ----------------------------------------------------------------- runs

    def register_checkpoint(self, name: str) -> None:
        """Create a checkpoint's run series at zero, so alerts see it before its first run."""
        for status in Status:
            self._child(name, self.runs_total, (name, status.value))

    def remove_checkpoint(self, name: str) -> None:
        """Drop every series labelled with a checkpoint removed from the config."""
        for metric, labels in self._series.pop(name, set()):
            metric.remove(*labels)

    def observe_result(self, result: CheckpointResult) -> None:
        """Count a finished run, record its duration and last-success time."""
        name = result.checkpoint
        self._child(name, self.runs_total, (name, result.status.value)).inc()
        if result.status is Status.SKIPPED:
            return
        duration = self._child(name, self.run_duration_seconds, (name,))
        duration.observe(result.duration_seconds)
        if result.status.is_ok:
            last = self._child(name, self.last_success_timestamp_seconds, (name,))
            last.set(result.finished_at.timestamp())

    @contextmanager
    def run_in_flight(self) -> Iterator[None]:
        """Count a run as executing for the duration of the ``with`` block."""
        self.runs_in_flight.inc()
        try:
            yield
        finally:
            self.runs_in_flight.dec()

    def run_skipped(self, reason: str) -> None:
        """Count a run that was not started; ``reason`` is a short fixed word."""
        self.runs_skipped_total.labels(reason=reason).inc()

    def runs_recovered(self, count: int = 1) -> None:
        """Count journal entries recovered after a crash."""
        self.recovered_runs_total.inc(count)

    # --------------------------------------------------------- pool / queue

    def set_pool_slots(self, slots: int) -> None:
        """Record the pool size (changes on reload)."""
        self.pool_slots.set(slots)

    def watch_result_queue(self, queue: _QueueLike) -> None:
        """Read the queue's depth at scrape time and record its bound."""
        self.result_queue_capacity.set(queue.maxsize)
        self.result_queue_depth.set_function(lambda: float(queue.qsize()))

    def add_backpressure_wait(self, seconds: float) -> None:
        """Add time the pool waited on a full result queue."""
        if seconds > 0:
            self.backpressure_wait_seconds_total.inc(seconds)

    # ------------------------------------------------------------- triggers

    def trigger_event(self, trigger_type: str, checkpoint: str) -> None:
        """Count an accepted trigger event for one matched checkpoint."""
        self._child(checkpoint, self.trigger_events_total, (trigger_type, checkpoint)).inc()

    def observe_trigger_lag(self, trigger_type: str, seconds: float) -> None:
        """Record the delay from firing to run start; clock skew never counts negative."""
        self.trigger_lag_seconds.labels(trigger_type=trigger_type).observe(max(0.0, seconds))

    def schedule_misfire(self) -> None:
        """Count a scheduled fire time that was missed."""
        self.schedule_misfires_total.inc()

    def file_trigger_refused(self, reason: str) -> None:
        """Count a file the file trigger refused (outside the directory, too large, ...)."""
        self.file_trigger_refused_total.labels(reason=reason).inc()

    # --------------------------------------------------------------- config

    def config_loaded(self) -> None:
        """Record the start-up load of the configuration (not counted as a reload)."""
        self.config_last_reload_successful.set(1)
        self.config_last_reload_success_timestamp_seconds.set(self._clock.now().timestamp())

    def config_reload_succeeded(self) -> None:
        """Record a reload that took effect."""
        self.config_reloads_total.labels(result="success").inc()
        self.config_loaded()

    def config_reload_failed(self) -> None:
        """Record a reload that was refused; the previous config stays in force."""
        self.config_reloads_total.labels(result="failure").inc()
        self.config_last_reload_successful.set(0)

    # ---------------------------------------------------------------- loop

    def set_event_loop_lag(self, seconds: float) -> None:
        """Record the latest event-loop lag sample (a ``LoopLagMonitor`` callback)."""
        self.event_loop_lag_seconds.set(seconds)

    # -------------------------------------------------------------- render

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type, for ``GET /metrics``.

        With an ``Accept`` header asking for OpenMetrics, that format is used;
        otherwise the Prometheus text format.
        """
        if accept:
            encoder, content_type = choose_encoder(accept)
            return encoder(self._registry), content_type
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    # ------------------------------------------------------------- private

    def _child(self, checkpoint: str, metric: _M, labels: tuple[str, ...]) -> _M:
        """The labelled child of ``metric``, remembered as belonging to ``checkpoint``."""
        self._series.setdefault(checkpoint, set()).add((metric, labels))
        child: _M = metric.labels(*labels)
        return child
