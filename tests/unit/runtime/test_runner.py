"""AsyncCheckpointRunner: every config field honoured, nothing dropped, nothing unbounded."""

from __future__ import annotations

import asyncio
import gc
from datetime import timedelta

import pytest

from checkpointd.checkpoints.result import Status
from checkpointd.clock import FrozenClock
from checkpointd.config.models import DaemonConfig
from checkpointd.errors import RunnerError
from checkpointd.runtime.runner import AsyncCheckpointRunner, AsyncRunnerConfig
from checkpointd.triggers.base import AsyncTrigger
from tests.unit.runtime.runner_doubles import (
    T0,
    Concurrency,
    FakeCheckpoint,
    MemoryJournal,
    MemorySink,
    ScriptedTrigger,
    event,
    wait_until,
)

# ---------------------------------------------------------------- config


def test_config_defaults_are_the_documented_ones() -> None:
    config = AsyncRunnerConfig()
    assert (
        config.max_concurrent_checkpoints,
        config.trigger_poll_interval,
        config.result_queue_size,
        config.stop_on_error,
        config.max_consecutive_failures,
        config.graceful_shutdown_timeout,
    ) == (8, 1.0, 1000, False, None, 30.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrent_checkpoints", 0),
        ("trigger_poll_interval", 0),
        ("result_queue_size", 0),
        ("max_consecutive_failures", 0),
        ("graceful_shutdown_timeout", -1),
    ],
)
def test_config_refuses_values_that_cannot_work(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        AsyncRunnerConfig(**{field: value})  # type: ignore[arg-type]


def test_config_from_the_daemon_section() -> None:
    daemon = DaemonConfig(
        max_concurrent_checkpoints=3,
        result_queue_size=7,
        graceful_shutdown_timeout=timedelta(seconds=5),
        trigger_poll_interval=timedelta(milliseconds=250),
        stop_on_error=True,
        max_consecutive_failures=4,
    )
    assert AsyncRunnerConfig.from_daemon(daemon) == AsyncRunnerConfig(3, 0.25, 7, True, 4, 5.0)


# ---------------------------------------------------------------- running on request


async def test_run_once_returns_the_result_and_delivers_it_to_journal_then_sink() -> None:
    calls: list[str] = []
    sink, journal = MemorySink(calls), MemoryJournal(calls)
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], sink=sink, journal=journal)
    async with runner:
        result = await runner.run_once_async("a", event("k1"))
    assert result.status is Status.SUCCESS
    assert [r for r, _ in sink.items] == [result]
    assert [(r, e.key if e else None) for r, e in journal.saved] == [(result, "k1")]
    assert calls == ["accept:k1", "running:k1", "save:1", "sink:1"]


async def test_run_all_runs_every_checkpoint_in_registration_order() -> None:
    checkpoints = [FakeCheckpoint(n, delay=d) for n, d in [("a", 0.03), ("b", 0.0), ("c", 0.01)]]
    async with AsyncCheckpointRunner(checkpoints, sink=MemorySink()) as runner:
        results = await runner.run_all_async()
    assert [r.checkpoint for r in results] == ["a", "b", "c"]


async def test_runs_need_a_started_runner_and_a_known_checkpoint() -> None:
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")])
    with pytest.raises(RunnerError, match="not started"):
        await runner.run_once_async("a")
    async with runner:
        with pytest.raises(RunnerError, match=r"no checkpoint named 'zz' \(known: a\)"):
            await runner.run_once_async("zz")
    with pytest.raises(RunnerError, match="stopped"):
        await runner.submit_event("a", event("k"))
    with pytest.raises(RunnerError, match="build a new one"):
        await runner.start_async()


def test_two_checkpoints_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two checkpoints are named 'a'"):
        AsyncCheckpointRunner([FakeCheckpoint("a"), FakeCheckpoint("a")])


# ---------------------------------------------------------------- max_concurrent_checkpoints


async def test_runs_at_once_never_exceed_max_concurrent_checkpoints() -> None:
    tracker = Concurrency()
    checkpoints = [FakeCheckpoint(f"c{i}", delay=0.01, tracker=tracker) for i in range(20)]
    config = AsyncRunnerConfig(max_concurrent_checkpoints=3)
    async with AsyncCheckpointRunner(checkpoints, config, sink=MemorySink()) as runner:
        results = await runner.run_all_async()
    assert tracker.peak == 3
    assert len(results) == 20


# ---------------------------------------------------------------- result_queue_size


async def test_a_full_result_queue_stalls_runs_and_submitters_without_growing() -> None:
    checkpoint = FakeCheckpoint("a")
    config = AsyncRunnerConfig(max_concurrent_checkpoints=2, result_queue_size=3)
    runner = AsyncCheckpointRunner([checkpoint], config)  # no sink: results wait for a reader
    await runner.start_async()
    tasks_before = len(asyncio.all_tasks())

    async def produce() -> None:
        for i in range(1000):
            await runner.submit_event("a", event(f"k{i}"))

    producer = asyncio.create_task(produce())
    await wait_until(lambda: runner.get_stats().waiting_submitters == 1)
    await asyncio.sleep(0.05)
    stats = runner.get_stats()
    # 3 results queued, 2 workers each holding a finished result, 2 in the backlog
    assert (stats.queue_depth, stats.queue_capacity) == (3, 3)
    assert stats.submitted == 3 + 2 + 2
    assert checkpoint.runs == 5
    assert len(asyncio.all_tasks()) - tasks_before == 1  # only the producer
    assert stats.backpressure_wait_seconds > 0

    seen = 0
    async for _result in runner.iter_results_async():
        seen += 1
        if seen == 1000:
            break
    await producer
    await runner.stop_async()
    assert checkpoint.runs == 1000


# ---------------------------------------------------------------- iterating results


async def test_without_sink_iteration_yields_every_result_and_ends_after_stop() -> None:
    runner = AsyncCheckpointRunner([FakeCheckpoint("a"), FakeCheckpoint("b")])
    await runner.start_async()
    await runner.submit_event("a", event("1"))
    await runner.submit_event("b", event("2"))
    await runner.stop_async()
    names = [result.checkpoint async for result in runner.iter_results_async()]
    assert sorted(names) == ["a", "b"]


async def test_iteration_ends_after_timeout_without_a_result() -> None:
    async with AsyncCheckpointRunner([FakeCheckpoint("a")]) as runner:
        results = [r async for r in runner.iter_results_async(timeout=0.05)]
    assert results == []


async def test_a_waiting_reader_is_released_when_the_runner_stops() -> None:
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], sink=MemorySink())
    await runner.start_async()
    stream = runner.iter_results_async()
    reader = asyncio.create_task(anext(stream, None))
    await asyncio.sleep(0.02)
    await runner.stop_async()
    assert await reader is None


async def test_with_a_sink_both_the_sink_and_an_iterator_see_every_result() -> None:
    sink, journal = MemorySink(), MemoryJournal()
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], sink=sink, journal=journal)
    await runner.start_async()
    stream = runner.iter_results_async()
    for i in range(50):
        await runner.submit_event("a", event(f"k{i}"))
    await runner.stop_async()
    streamed = [r.run_id async for r in stream]
    assert len(streamed) == 50
    assert sorted(streamed) == sorted(r.run_id for r, _ in sink.items)
    assert len(journal.saved) == 50


async def test_leaving_a_stream_block_unsubscribes_it() -> None:
    sink = MemorySink()
    config = AsyncRunnerConfig(result_queue_size=1)
    async with AsyncCheckpointRunner([FakeCheckpoint("a")], config, sink=sink) as runner:
        async with runner.iter_results_async() as stream:
            await runner.submit_event("a", event("0"))
            first = await anext(stream)
        for i in range(1, 10):  # a subscribed, unread stream of size 1 would stall these
            await runner.submit_event("a", event(str(i)))
    assert first.checkpoint == "a"
    assert len(sink.items) == 10
    assert [r async for r in stream] == []


async def test_a_stream_left_unread_does_not_hold_the_runner_up() -> None:
    sink = MemorySink()
    config = AsyncRunnerConfig(result_queue_size=2)
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], config, sink=sink)
    await runner.start_async()
    stream = runner.iter_results_async()
    await runner.submit_event("a", event("first"))
    async for _ in stream:
        break  # leaves the stream unread; its queue (size 2) would fill and stall the runner
    del stream
    unread = runner.iter_results_async()
    del unread
    gc.collect()
    for i in range(20):
        await runner.submit_event("a", event(f"k{i}"))
    await runner.stop_async()
    assert len(sink.items) == 21


async def test_the_sink_gets_batches_and_a_failing_sink_is_retried_not_skipped() -> None:
    sink = MemorySink(fail_first=2)
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], sink=sink)
    await runner.start_async()
    for i in range(40):
        await runner.submit_event("a", event(f"k{i}"))
    await runner.stop_async()
    assert len(sink.items) == 40
    assert len({r.run_id for r, _ in sink.items}) == 40
    assert max(sink.batches) > 1  # the consumer batched
    stats = runner.get_stats()
    assert (stats.delivery_errors, stats.delivered, stats.undelivered) == (2, 40, 0)


# ---------------------------------------------------------------- journal and submit_event


async def test_submit_event_journals_before_running_and_refuses_duplicates() -> None:
    calls: list[str] = []
    journal = MemoryJournal(calls)
    checkpoint = FakeCheckpoint("a")
    async with AsyncCheckpointRunner([checkpoint], journal=journal) as runner:
        assert await runner.submit_event("a", event("k1")) is True
        await wait_until(lambda: len(journal.saved) == 1)
        assert await runner.submit_event("a", event("k1")) is False
        duplicate = await runner.run_once_async("a", event("k1"))
    assert calls == ["accept:k1", "running:k1", "save:1", "accept:k1", "accept:k1"]
    assert checkpoint.runs == 1
    assert duplicate.status is Status.SKIPPED
    assert "already accepted" in (duplicate.error or "")
    assert runner.get_stats().duplicates == 2


# ---------------------------------------------------------------- triggers


async def test_triggers_are_polled_every_interval_and_their_events_run() -> None:
    trigger = ScriptedTrigger()
    trigger.pending = [event("t1"), event("t2")]
    checkpoint = FakeCheckpoint("a")
    config = AsyncRunnerConfig(trigger_poll_interval=0.01)
    async with AsyncCheckpointRunner([checkpoint], config, triggers={"a": [trigger]}) as runner:
        await wait_until(lambda: checkpoint.runs == 2)
        assert trigger.started == 1
    assert [e.key for e in checkpoint.events if e] == ["t1", "t2"]
    assert trigger.stopped == 1
    assert runner.get_stats().trigger_errors == 0


async def test_a_long_poll_interval_means_one_poll_only() -> None:
    trigger = ScriptedTrigger()
    config = AsyncRunnerConfig(trigger_poll_interval=30.0)
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], config)
    runner.add_trigger("a", trigger)
    async with runner:
        await asyncio.sleep(0.1)
    assert trigger.polls == 1


async def test_a_failing_poll_is_counted_and_polling_goes_on() -> None:
    trigger = ScriptedTrigger(fail_polls=2)
    trigger.pending = [event("after")]
    checkpoint = FakeCheckpoint("a")
    config = AsyncRunnerConfig(trigger_poll_interval=0.01)
    async with AsyncCheckpointRunner([checkpoint], config, triggers={"a": [trigger]}) as runner:
        await wait_until(lambda: checkpoint.runs == 1)
    assert runner.get_stats().trigger_errors == 2


def test_the_trigger_base_class_stamps_events_with_its_type_and_clock() -> None:
    clock = FrozenClock(T0)
    trigger = ScriptedTrigger("orders-landed")
    trigger.clock = clock
    made = trigger.event("file:/x:10", {"path": "/x"}, checkpoint="orders")
    assert (made.type, made.key, made.fired_at, made.checkpoint, dict(made.params)) == (
        "scripted",
        "file:/x:10",
        T0,
        "orders",
        {"path": "/x"},
    )
    assert isinstance(trigger, AsyncTrigger)
    assert repr(trigger) == "ScriptedTrigger(name='orders-landed')"


async def test_triggers_cannot_be_added_to_a_started_runner_or_an_unknown_checkpoint() -> None:
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")])
    with pytest.raises(RunnerError, match="no checkpoint named 'b'"):
        runner.add_trigger("b", ScriptedTrigger())
    async with runner:
        with pytest.raises(RunnerError, match="before the runner starts"):
            runner.add_trigger("a", ScriptedTrigger())


# ---------------------------------------------------------------- stopping by itself


async def test_stop_on_error_stops_the_runner_after_the_first_error() -> None:
    trigger = ScriptedTrigger()
    trigger.pending = [event(f"k{i}") for i in range(5)]
    checkpoint = FakeCheckpoint("a", statuses=[Status.SUCCESS, Status.ERROR])
    config = AsyncRunnerConfig(trigger_poll_interval=0.01, stop_on_error=True)
    sink = MemorySink()
    runner = AsyncCheckpointRunner([checkpoint], config, triggers={"a": [trigger]}, sink=sink)
    await runner.start_async()
    reason = await asyncio.wait_for(runner.wait_stopped(), 5)
    assert reason.startswith("stop_on_error: checkpoint 'a'")
    assert runner.stop_reason == reason
    assert checkpoint.runs == 2
    assert trigger.stopped == 1
    assert sink.statuses() == [Status.SUCCESS, Status.ERROR]
    with pytest.raises(RunnerError, match="stop_on_error"):
        await runner.submit_event("a", event("late"))
    await runner.stop_async()  # already stopped: returns at once
    assert runner.stop_reason == reason


async def test_without_stop_on_error_errors_do_not_stop_the_runner() -> None:
    checkpoint = FakeCheckpoint("a", status=Status.ERROR)
    async with AsyncCheckpointRunner([checkpoint], sink=MemorySink()) as runner:
        for _ in range(5):
            await runner.run_once_async("a")
        assert runner.state == "running"


async def test_max_consecutive_failures_counts_only_an_unbroken_run_of_failures() -> None:
    f, s = Status.FAILURE, Status.SUCCESS
    checkpoint = FakeCheckpoint("a", statuses=[f, Status.TIMEOUT, s, f, Status.ERROR, f, s])
    config = AsyncRunnerConfig(max_consecutive_failures=3, max_concurrent_checkpoints=1)
    runner = AsyncCheckpointRunner([checkpoint], config, sink=MemorySink())
    await runner.start_async()
    for i in range(5):
        await runner.run_once_async("a", event(f"k{i}"))
        assert runner.state == "running"
    await runner.run_once_async("a", event("k5"))
    reason = await asyncio.wait_for(runner.wait_stopped(), 5)
    assert reason.startswith("max_consecutive_failures: 3 runs in a row")
    assert runner.get_stats().consecutive_failures == 3


# ---------------------------------------------------------------- graceful_shutdown_timeout


async def test_stop_lets_short_runs_finish_and_delivers_cancelled_long_ones() -> None:
    quick = FakeCheckpoint("quick", delay=0.05)
    stuck = FakeCheckpoint("stuck", hang=True)
    queued = FakeCheckpoint("queued")
    sink, journal = MemorySink(), MemoryJournal()
    config = AsyncRunnerConfig(max_concurrent_checkpoints=2, graceful_shutdown_timeout=0.3)
    runner = AsyncCheckpointRunner([quick, stuck, queued], config, sink=sink, journal=journal)
    await runner.start_async()
    await runner.submit_event("stuck", event("s"))
    await runner.submit_event("quick", event("q"))
    await wait_until(lambda: quick.runs == 1 and stuck.runs == 1)
    await runner.submit_event("queued", event("w"))  # after "quick", in the second slot
    await runner.stop_async()
    statuses = {r.checkpoint: r.status for r, _ in sink.items}
    assert statuses == {
        "quick": Status.SUCCESS,
        "stuck": Status.CANCELLED,
        "queued": Status.SUCCESS,
    }
    assert {r.checkpoint for r, _ in journal.saved} == {"quick", "stuck", "queued"}
    assert stuck.cancelled == 1
    assert runner.get_stats().by_status == {"success": 2, "cancelled": 1}


async def test_runs_still_waiting_at_the_deadline_end_cancelled_and_are_delivered() -> None:
    stuck = [FakeCheckpoint(f"s{i}", hang=True) for i in range(4)]
    sink = MemorySink()
    config = AsyncRunnerConfig(max_concurrent_checkpoints=1, graceful_shutdown_timeout=0.05)
    runner = AsyncCheckpointRunner(stuck, config, sink=sink)
    await runner.start_async()
    await runner.submit_event("s0", event("0"))
    await runner.submit_event("s1", event("1"))  # backlog
    waiting = [asyncio.create_task(runner.submit_event(f"s{i}", event(str(i)))) for i in (2, 3)]
    await wait_until(lambda: runner.get_stats().waiting_submitters == 2)
    await runner.stop_async()
    assert all(await asyncio.gather(*waiting))
    assert sorted(r.checkpoint for r, _ in sink.items) == ["s0", "s1", "s2", "s3"]
    assert set(sink.statuses()) == {Status.CANCELLED}
    assert [s.runs for s in stuck] == [1, 0, 0, 0]


async def test_cancelled_results_spill_over_a_full_queue_and_are_still_read() -> None:
    config = AsyncRunnerConfig(
        max_concurrent_checkpoints=2, result_queue_size=1, graceful_shutdown_timeout=0.05
    )
    checkpoints = [FakeCheckpoint("a"), FakeCheckpoint("b"), FakeCheckpoint("c", hang=True)]
    runner = AsyncCheckpointRunner(checkpoints, config)  # nobody reads until after stop
    await runner.start_async()
    for name in ("a", "b", "c"):
        await runner.submit_event(name, event(name))
    await wait_until(lambda: checkpoints[2].runs == 1)
    await runner.stop_async()
    results = {r.checkpoint: r.status async for r in runner.iter_results_async()}
    assert results == {"a": Status.SUCCESS, "b": Status.SUCCESS, "c": Status.CANCELLED}
    assert runner.get_stats().overflowed == 2


async def test_a_sink_that_never_recovers_cannot_hang_stop() -> None:
    sink = MemorySink()
    sink.gate = asyncio.Event()  # never set: handle() hangs
    config = AsyncRunnerConfig(graceful_shutdown_timeout=0.1)
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], config, sink=sink)
    await runner.start_async()
    for i in range(3):
        await runner.submit_event("a", event(str(i)))
    await asyncio.wait_for(runner.stop_async(), 5)
    stats = runner.get_stats()
    assert stats.stopped
    assert stats.undelivered == 3


async def test_a_crashed_result_consumer_stops_the_runner_and_says_why() -> None:
    class Fatal(BaseException):
        pass

    class CrashingSink(MemorySink):
        async def handle(self, items: object) -> None:
            raise Fatal("bug in the sink")

    config = AsyncRunnerConfig(graceful_shutdown_timeout=0.1)
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], config, sink=CrashingSink())
    await runner.start_async()
    await runner.submit_event("a", event("1"))
    reason = await asyncio.wait_for(runner.wait_stopped(), 5)
    assert reason.startswith("the result consumer crashed: Fatal('bug in the sink')")
    assert runner.get_stats().undelivered == 1


# ---------------------------------------------------------------- life cycle and stats


async def test_stats_describe_the_runner() -> None:
    runner = AsyncCheckpointRunner(
        [FakeCheckpoint("a", statuses=[Status.FAILURE])], AsyncRunnerConfig(result_queue_size=5)
    )
    assert runner.get_stats().started is False
    async with runner:
        await runner.run_once_async("a")
        await runner.run_once_async("a")
        stats = runner.get_stats()
    assert stats.to_dict() | {"backpressure_wait_seconds": 0.0} == {
        "state": "running",
        "started": True,
        "stopped": False,
        "stop_reason": None,
        "submitted": 2,
        "completed": 2,
        "running": 0,
        "by_status": {"failure": 1, "success": 1},
        "consecutive_failures": 0,
        "backlog": 0,
        "backlog_capacity": 8,
        "waiting_submitters": 0,
        "queue_depth": 2,
        "queue_capacity": 5,
        "backpressure_wait_seconds": 0.0,
        "duplicates": 0,
        "trigger_errors": 0,
        "delivered": 0,
        "delivery_errors": 0,
        "overflowed": 0,
        "undelivered": 0,
    }
    final = runner.get_stats()
    assert (final.state, final.stopped, final.stop_reason) == (
        "stopped",
        True,
        "stop_async() was called",
    )


async def test_a_trigger_that_fails_to_start_fails_start_async() -> None:
    class Broken(ScriptedTrigger):
        async def start(self) -> None:
            raise ConnectionRefusedError("broker down")

    good = ScriptedTrigger("good")
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], triggers={"a": [good, Broken("bad")]})
    with pytest.raises(RunnerError, match="trigger 'bad' of 'a' failed to start"):
        await runner.start_async()
    assert runner.state == "stopped"
    assert (good.started, good.stopped) == (1, 1)


async def test_stop_before_start_is_harmless() -> None:
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")])
    await runner.stop_async()
    assert runner.state == "stopped"
    assert await runner.wait_stopped() == "stop_async() was called"
