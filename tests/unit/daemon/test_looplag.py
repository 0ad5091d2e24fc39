"""Event-loop lag: a blocked loop is seen, both by samples and by a check made meanwhile."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from checkpointd.daemon.looplag import DEFAULT_INTERVAL, LoopLagMonitor
from checkpointd.daemon.metrics import Metrics


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Samples(list[float]):
    """An on_sample callback that can be awaited for a number of samples."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def __call__(self, lag: float) -> None:
        self.append(lag)
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self) < count:
                self._changed.clear()
                await self._changed.wait()


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_fresh_monitor_reports_no_lag():
    monitor = LoopLagMonitor()

    assert monitor.interval == DEFAULT_INTERVAL == 0.25
    assert monitor.last_lag == 0.0
    assert monitor.current_lag() == 0.0
    assert monitor.responsive(threshold=0.0)


@pytest.mark.parametrize("interval", [0, -1.0])
def test_the_interval_must_be_positive(interval):
    with pytest.raises(ValueError, match="positive"):
        LoopLagMonitor(interval)


def test_samples_are_clamped_at_zero_and_the_maximum_is_kept():
    seen: list[float] = []
    monitor = LoopLagMonitor(on_sample=seen.append)

    monitor.record(0.5)
    monitor.record(-0.001)  # a timer that fired a hair early
    monitor.record(0.1)

    assert seen == [0.5, 0.0, 0.1]
    assert monitor.last_lag == 0.1
    assert monitor.max_lag == 0.5


async def test_a_blocking_call_shows_up_as_lag():
    samples = Samples()
    monitor = LoopLagMonitor(0.05, on_sample=samples)
    task = asyncio.create_task(monitor.run())
    try:
        await samples.wait_for(1)
        # Blocking on purpose: what a synchronous polars call on the loop would do.
        time.sleep(0.3)  # noqa: ASYNC251
        await samples.wait_for(2)
    finally:
        await stop(task)

    # Blocked 0.3 s while waiting on a 0.05 s timer: at least 0.25 s late.
    assert max(samples) >= 0.2
    assert monitor.max_lag == max(samples)


async def test_lag_feeds_the_metrics_gauge():
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=False)
    samples = Samples()

    def sample(lag: float) -> None:
        metrics.set_event_loop_lag(lag)
        samples(lag)

    task = asyncio.create_task(LoopLagMonitor(0.02, on_sample=sample).run())
    try:
        await samples.wait_for(3)
    finally:
        await stop(task)

    assert registry.get_sample_value("checkpointd_event_loop_lag_seconds") == samples[-1]


async def test_an_overdue_timer_counts_before_the_monitor_wakes():
    clock = FakeTime()
    monitor = LoopLagMonitor(60.0, time=clock)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0)  # the monitor is now sleeping, due at 1060
        clock.now += 62.5  # as if the loop had been blocked past the due time

        assert monitor.current_lag() == pytest.approx(2.5)
        assert not monitor.responsive(threshold=1.0)
        assert monitor.responsive(threshold=5.0)
        assert monitor.last_lag == 0.0  # no sample recorded yet
    finally:
        await stop(task)

    assert monitor.current_lag() == 0.0  # a stopped monitor has no pending timer


async def test_a_timer_not_yet_due_is_not_lag():
    clock = FakeTime()
    monitor = LoopLagMonitor(60.0, time=clock)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0)
        clock.now += 30

        assert monitor.current_lag() == 0.0
        assert monitor.responsive(threshold=0.0)
    finally:
        await stop(task)


async def test_a_failing_callback_stops_the_monitor_loudly():
    def broken(_lag: float) -> None:
        raise RuntimeError("gauge gone")

    with pytest.raises(RuntimeError, match="gauge gone"):
        async with asyncio.timeout(10):
            await LoopLagMonitor(0.01, on_sample=broken).run()
