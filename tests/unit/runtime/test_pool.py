"""CheckpointPool, run_checkpoint_async and run_checkpoints_parallel: bounded, lossless runs."""

from __future__ import annotations

import asyncio

import pytest

from checkpointd.actions.strategies import AsyncExecutionContext
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.errors import RunnerError
from checkpointd.runtime.parallel import (
    CheckpointPool,
    run_checkpoint_async,
    run_checkpoints_parallel,
)
from tests.unit.runtime.runner_doubles import Concurrency, FakeCheckpoint, event, wait_until

# ---------------------------------------------------------------- submitting and results


async def test_submit_returns_a_future_of_the_result() -> None:
    async with CheckpointPool(2) as pool:
        future = await pool.submit(FakeCheckpoint("a"), event("k1"))
        result = await future
    assert result.checkpoint == "a"
    assert result.status is Status.SUCCESS
    assert result.trigger is not None
    assert result.trigger.key == "k1"


async def test_submit_many_returns_results_in_input_order() -> None:
    checkpoints = [FakeCheckpoint(f"c{i}", delay=0.02 * (5 - i)) for i in range(5)]
    async with CheckpointPool(5) as pool:
        results = await pool.submit_many(checkpoints)
    assert [r.checkpoint for r in results] == ["c0", "c1", "c2", "c3", "c4"]


async def test_run_waits_for_one_result() -> None:
    async with CheckpointPool(1) as pool:
        result = await pool.run(FakeCheckpoint("a", status=Status.FAILURE))
    assert result.status is Status.FAILURE


async def test_results_also_go_to_the_result_queue_with_their_event() -> None:
    queue: asyncio.Queue[tuple[CheckpointResult, object]] = asyncio.Queue()
    async with CheckpointPool(2, result_queue=queue) as pool:
        await pool.enqueue(FakeCheckpoint("a"), event("e1"))
        await pool.enqueue(FakeCheckpoint("b"))
    items = [queue.get_nowait() for _ in range(queue.qsize())]
    assert sorted((r.checkpoint, e.key if e else None) for r, e in items) == [  # type: ignore[attr-defined]
        ("a", "e1"),
        ("b", None),
    ]


# ---------------------------------------------------------------- bounds


async def test_running_runs_never_exceed_workers() -> None:
    tracker = Concurrency()
    checkpoints = [FakeCheckpoint(f"c{i}", delay=0.01, tracker=tracker) for i in range(30)]
    async with CheckpointPool(3, queue_size=10) as pool:
        results = await pool.submit_many(checkpoints)
    assert tracker.peak == 3
    assert len(results) == 30


async def test_submit_waits_while_workers_and_backlog_are_full() -> None:
    gate = asyncio.Event()
    async with CheckpointPool(2, queue_size=1) as pool:
        for i in range(3):  # two running, one in the backlog
            await pool.submit(FakeCheckpoint(f"c{i}", gate=gate))
        fourth = asyncio.create_task(pool.submit(FakeCheckpoint("c3", gate=gate)))
        await asyncio.sleep(0.05)
        assert not fourth.done()
        assert pool.waiting_submitters == 1
        assert (pool.running, pool.backlog) == (2, 1)
        gate.set()
        result = await (await fourth)
    assert result.checkpoint == "c3"
    assert pool.submit_wait_seconds > 0


async def test_many_submitters_create_no_task_per_run() -> None:
    gate = asyncio.Event()
    tracker = Concurrency()
    before = len(asyncio.all_tasks())
    async with CheckpointPool(2, queue_size=2) as pool:

        async def produce() -> None:
            for i in range(500):
                await pool.enqueue(FakeCheckpoint(f"c{i}", gate=gate, tracker=tracker))

        producer = asyncio.create_task(produce())
        await wait_until(lambda: pool.waiting_submitters == 1)
        # workers (2) + the producer, however many runs it wants to submit
        assert len(asyncio.all_tasks()) - before == 3
        assert pool.submitted == 4
        gate.set()
        await producer
    assert pool.completed == 500
    assert tracker.peak == 2


async def test_a_full_result_queue_stalls_the_pool() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
    first, second = FakeCheckpoint("first"), FakeCheckpoint("second")
    async with CheckpointPool(1, result_queue=queue) as pool:
        await pool.enqueue(first)
        await pool.enqueue(FakeCheckpoint("blocked"))  # done, but its result cannot be put
        await pool.enqueue(second)
        await wait_until(lambda: queue.full() and pool.completed == 2)
        await asyncio.sleep(0.05)
        assert second.runs == 0  # the worker still holds "blocked"'s result
        assert queue.get_nowait()[0].checkpoint == "first"  # type: ignore[index]
        await wait_until(lambda: second.runs == 1)
        queue.get_nowait()
    assert pool.deliver_wait_seconds > 0


async def test_a_shared_semaphore_caps_runs_across_pools() -> None:
    tracker = Concurrency()
    semaphore = asyncio.Semaphore(2)
    pools = [CheckpointPool(3, semaphore=semaphore) for _ in range(2)]
    for pool in pools:
        await pool.start()
    futures = [
        await pool.submit(FakeCheckpoint(f"c{i}", delay=0.01, tracker=tracker))
        for i in range(6)
        for pool in pools
    ]
    await asyncio.gather(*futures)
    for pool in pools:
        await pool.join()
    assert tracker.peak == 2


# ---------------------------------------------------------------- outcomes


async def test_the_pool_timeout_gives_a_timeout_result_and_cancels_the_run() -> None:
    hanging = FakeCheckpoint("slow", hang=True)
    async with CheckpointPool(1, timeout=0.05) as pool:
        result = await pool.run(hanging, event("k"))
    assert result.status is Status.TIMEOUT
    assert "0.05s" in (result.error or "")
    assert result.trigger is not None
    assert result.trigger.key == "k"
    assert hanging.cancelled == 1


async def test_a_run_that_raises_becomes_an_error_result_and_the_worker_survives() -> None:
    async with CheckpointPool(1) as pool:
        bad = await pool.run(FakeCheckpoint("bad", raises=ValueError("nope")))
        good = await pool.run(FakeCheckpoint("good"))
    assert bad.status is Status.ERROR
    assert bad.error == "run raised ValueError: nope"
    assert good.status is Status.SUCCESS


async def test_event_run_id_is_kept_on_results_the_pool_makes() -> None:
    from dataclasses import replace

    async with CheckpointPool(1, timeout=0.01) as pool:
        result = await pool.run(FakeCheckpoint("slow", hang=True), replace(event("k"), run_id="R1"))
    assert result.run_id == "R1"


async def test_hooks_see_every_result_and_their_errors_do_not_stop_runs() -> None:
    seen: list[str] = []
    started: list[str] = []

    async def on_result(result: CheckpointResult) -> None:
        seen.append(result.checkpoint)
        raise RuntimeError("hook bug")

    async def before_run(checkpoint: object, ev: object) -> None:
        started.append(checkpoint.name)  # type: ignore[attr-defined]
        raise RuntimeError("journal down")

    async with CheckpointPool(1, on_result=on_result, before_run=before_run) as pool:
        results = await pool.submit_many([FakeCheckpoint("a"), FakeCheckpoint("b")])
    assert [r.status for r in results] == [Status.SUCCESS, Status.SUCCESS]
    assert seen == ["a", "b"]
    assert started == ["a", "b"]


# ---------------------------------------------------------------- closing and cancelling


async def test_leaving_the_block_waits_for_every_run() -> None:
    checkpoints = [FakeCheckpoint(f"c{i}", delay=0.02) for i in range(6)]
    async with CheckpointPool(2, queue_size=4) as pool:
        for checkpoint in checkpoints:
            await pool.enqueue(checkpoint)
    assert [c.finished for c in checkpoints] == [1] * 6
    assert pool.running == 0
    assert pool.backlog == 0


async def test_an_error_in_the_block_cancels_running_and_waiting_runs() -> None:
    queue: asyncio.Queue[tuple[CheckpointResult, object]] = asyncio.Queue()
    hanging = [FakeCheckpoint(f"c{i}", hang=True) for i in range(3)]
    futures = []

    async def use_the_pool_then_fail() -> None:
        async with CheckpointPool(1, queue_size=2, result_queue=queue) as pool:
            for checkpoint in hanging:
                futures.append(await pool.submit(checkpoint))
            await wait_until(lambda: hanging[0].runs == 1)
            raise LookupError("the caller failed")

    with pytest.raises(LookupError):
        await use_the_pool_then_fail()
    statuses = [f.result().status for f in futures]
    assert statuses == [Status.CANCELLED] * 3
    assert hanging[0].cancelled == 1  # the running one saw the cancellation
    assert futures[0].result().error == "cancelled while running: the pool was shut down"
    assert futures[1].result().error == "cancelled before it started"
    assert queue.qsize() == 3  # every cancelled run is still delivered


async def test_cancel_also_resolves_submitters_still_waiting_for_room() -> None:
    pool = CheckpointPool(1, queue_size=1)
    await pool.start()
    await pool.submit(FakeCheckpoint("running", hang=True))
    await pool.submit(FakeCheckpoint("queued", hang=True))
    waiting = [asyncio.create_task(pool.submit(FakeCheckpoint(f"w{i}"))) for i in range(3)]
    await wait_until(lambda: pool.waiting_submitters == 3)
    await pool.cancel()
    results = [await (await task) for task in waiting]
    assert [r.status for r in results] == [Status.CANCELLED] * 3
    assert pool.completed == 5


async def test_cancel_spills_to_overflow_when_the_result_queue_is_full() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
    spilled: list[object] = []
    pool = CheckpointPool(2, result_queue=queue)
    await pool.start()
    await pool.enqueue(FakeCheckpoint("done"))
    await pool.enqueue(FakeCheckpoint("blocked"))  # its result waits for queue room
    await pool.enqueue(FakeCheckpoint("hangs", hang=True))
    await wait_until(lambda: queue.full() and pool.completed == 2)
    await pool.cancel(overflow=spilled.append)
    names = sorted(item[0].checkpoint for item in spilled)  # type: ignore[index]
    assert names == ["blocked", "hangs"]  # the finished result is kept, not replaced
    statuses = {item[0].checkpoint: item[0].status for item in spilled}  # type: ignore[index]
    assert statuses == {"blocked": Status.SUCCESS, "hangs": Status.CANCELLED}


async def test_halt_starts_nothing_new_but_lets_running_runs_finish() -> None:
    gate = asyncio.Event()
    running, queued = FakeCheckpoint("running", gate=gate), FakeCheckpoint("queued")
    async with CheckpointPool(1) as pool:
        first = await pool.submit(running)
        second = await pool.submit(queued)
        await wait_until(lambda: running.runs == 1)
        pool.halt()
        gate.set()
    assert first.result().status is Status.SUCCESS
    assert second.result().status is Status.CANCELLED
    assert queued.runs == 0


async def test_shutdown_drains_within_grace_then_cancels() -> None:
    quick, slow = FakeCheckpoint("quick", delay=0.01), FakeCheckpoint("slow", hang=True)
    pool = CheckpointPool(2)
    await pool.start()
    futures = [await pool.submit(quick), await pool.submit(slow)]
    drained = await pool.shutdown(0.2)
    assert drained is False
    assert [f.result().status for f in futures] == [Status.SUCCESS, Status.CANCELLED]

    calm = CheckpointPool(1)
    await calm.start()
    future = await calm.submit(FakeCheckpoint("q", delay=0.01))
    assert await calm.shutdown(1.0) is True
    assert future.result().status is Status.SUCCESS


async def test_a_closed_or_unstarted_pool_refuses_work() -> None:
    pool = CheckpointPool(1)
    with pytest.raises(RunnerError, match="not started"):
        await pool.submit(FakeCheckpoint("a"))
    await pool.start()
    await pool.join()
    with pytest.raises(RunnerError, match="closed"):
        await pool.submit(FakeCheckpoint("a"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": 1, "queue_size": 0}, "queue_size"),
        ({"workers": 1, "timeout": 0}, "timeout"),
    ],
)
def test_invalid_pool_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CheckpointPool(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the two conveniences


async def test_run_checkpoint_async_enforces_its_timeout() -> None:
    fast = await run_checkpoint_async(FakeCheckpoint("fast"), timeout=1.0)
    slow = await run_checkpoint_async(FakeCheckpoint("slow", hang=True), timeout=0.02)
    assert fast.status is Status.SUCCESS
    assert slow.status is Status.TIMEOUT
    with pytest.raises(ValueError, match="timeout"):
        await run_checkpoint_async(FakeCheckpoint("x"), timeout=-1)


async def test_run_checkpoint_async_lets_cancellation_through() -> None:
    checkpoint = FakeCheckpoint("slow", hang=True)
    task = asyncio.create_task(run_checkpoint_async(checkpoint))
    await wait_until(lambda: checkpoint.runs == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert checkpoint.cancelled == 1


async def test_parallel_runs_keep_input_order_and_the_cap() -> None:
    tracker = Concurrency()
    completed: list[str] = []
    checkpoints = [FakeCheckpoint(f"c{i}", delay=0.01 * (i % 3), tracker=tracker) for i in range(9)]
    results = await run_checkpoints_parallel(
        checkpoints, max_concurrent=2, on_complete=lambda r: completed.append(r.checkpoint)
    )
    assert [r.checkpoint for r in results] == [f"c{i}" for i in range(9)]
    assert tracker.peak == 2
    assert sorted(completed) == sorted(r.checkpoint for r in results)


async def test_parallel_awaits_an_async_on_complete() -> None:
    seen: list[Status] = []

    async def on_complete(result: CheckpointResult) -> None:
        await asyncio.sleep(0)
        seen.append(result.status)

    await run_checkpoints_parallel([FakeCheckpoint("a"), FakeCheckpoint("b")], 2, None, on_complete)
    assert seen == [Status.SUCCESS, Status.SUCCESS]


async def test_parallel_uses_the_context_timeout_and_semaphore() -> None:
    tracker = Concurrency()
    context = AsyncExecutionContext(semaphore=asyncio.Semaphore(1), timeout=0.05)
    checkpoints = [
        FakeCheckpoint("hangs", hang=True, tracker=tracker),
        FakeCheckpoint("ok", delay=0.01, tracker=tracker),
    ]
    results = await run_checkpoints_parallel(checkpoints, max_concurrent=4, context=context)
    assert [r.status for r in results] == [Status.TIMEOUT, Status.SUCCESS]
    assert tracker.peak == 1


async def test_parallel_cancel_on_first_error_stops_the_rest() -> None:
    context = AsyncExecutionContext(cancel_on_first_error=True)
    checkpoints = [
        FakeCheckpoint("long", hang=True),
        FakeCheckpoint("fails", status=Status.FAILURE, delay=0.02),
        *(FakeCheckpoint(f"later{i}") for i in range(3)),
    ]
    results = await run_checkpoints_parallel(checkpoints, max_concurrent=2, context=context)
    by_name = {r.checkpoint: r for r in results}
    assert by_name["fails"].status is Status.FAILURE
    assert by_name["long"].status is Status.CANCELLED
    later = [by_name[f"later{i}"] for i in range(3)]
    assert {r.status for r in later} <= {Status.CANCELLED, Status.SKIPPED}
    assert [r.checkpoint for r in results] == [c.name for c in checkpoints]
    assert all(c.finished == 0 for c in checkpoints[2:])


# ---------------------------------------------------------------- resizing (config reload)


async def test_a_grown_pool_runs_more_at_once_at_once() -> None:
    gate = asyncio.Event()
    tracker = Concurrency()
    async with CheckpointPool(2, queue_size=10) as pool:
        futures = [
            await pool.submit(FakeCheckpoint(f"c{i}", gate=gate, tracker=tracker)) for i in range(6)
        ]
        await wait_until(lambda: tracker.current == 2)
        pool.resize(5)
        await wait_until(lambda: tracker.current == 5)
        gate.set()
        results = [await f for f in futures]
    assert tracker.peak == 5
    assert [r.status for r in results] == [Status.SUCCESS] * 6


async def test_a_shrunk_pool_lets_busy_workers_finish_and_then_runs_fewer_at_once() -> None:
    first = asyncio.Event()
    tracker = Concurrency()
    async with CheckpointPool(4, queue_size=20) as pool:
        busy = [
            await pool.submit(FakeCheckpoint(f"busy{i}", gate=first, tracker=tracker))
            for i in range(4)
        ]
        await wait_until(lambda: tracker.current == 4)
        pool.resize(1)
        # Nothing running was interrupted: all four are still inside.
        await asyncio.sleep(0.02)
        assert tracker.current == 4
        later_tracker = Concurrency()
        later = [
            await pool.submit(FakeCheckpoint(f"later{i}", delay=0.01, tracker=later_tracker))
            for i in range(8)
        ]
        first.set()
        results = [await f for f in busy + later]
    assert [r.status for r in results] == [Status.SUCCESS] * 12
    assert later_tracker.peak == 1


async def test_shrinking_an_idle_pool_stops_its_surplus_workers_and_loses_no_work() -> None:
    tracker = Concurrency()
    async with CheckpointPool(6, queue_size=10) as pool:
        await asyncio.sleep(0)  # every worker parked on the backlog
        pool.resize(2)
        checkpoints = [FakeCheckpoint(f"c{i}", delay=0.005, tracker=tracker) for i in range(20)]
        results = await pool.submit_many(checkpoints)
    assert len(results) == 20
    assert tracker.peak == 2


async def test_a_resize_before_start_sets_the_starting_size() -> None:
    tracker = Concurrency()
    pool = CheckpointPool(1)
    pool.resize(3)
    async with pool:
        await pool.submit_many(
            [FakeCheckpoint(f"c{i}", delay=0.01, tracker=tracker) for i in range(9)]
        )
    assert tracker.peak == 3


def test_a_pool_cannot_be_resized_below_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CheckpointPool(2).resize(0)
