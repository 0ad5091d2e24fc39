"""The schedule wheel: one timer for every schedule of a loop.

``DueQueue`` (pure) is tested with tables of instants. The wheel itself runs on a real
loop with a FrozenClock and a short ``max_sleep``, so its timer rings every few
milliseconds and the test decides when an instant has come by moving the clock.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from datetime import UTC, datetime, timedelta

import pytest

from checkpointd.clock import FrozenClock, SystemClock
from checkpointd.triggers.schedule_wheel import DueQueue, ScheduleWheel

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)
S = timedelta(seconds=1)
TICK = 0.005  # the wheel's max_sleep in these tests: it re-reads the frozen clock this often


# ---------------------------------------------------------------- DueQueue


def test_waiters_of_one_instant_share_it():
    queue: DueQueue[str] = DueQueue()

    assert queue.add(T0, "a") is True
    assert queue.add(T0, "b") is False
    assert queue.add(T0 + S, "c") is True

    assert len(queue) == 2
    assert queue.waiters() == 3
    assert queue.earliest() == T0


@pytest.mark.parametrize(
    ("now", "due", "left"),
    [
        pytest.param(T0 - S, [], 3, id="before-everything"),
        pytest.param(T0, ["a1", "a2"], 1, id="at-the-first-instant"),
        pytest.param(T0 + S / 2, ["a1", "a2"], 1, id="between-instants"),
        pytest.param(T0 + 5 * S, ["a1", "a2", "b"], 0, id="past-everything"),
    ],
)
def test_pop_due_takes_every_instant_up_to_now_earliest_first_in_arrival_order(now, due, left):
    queue: DueQueue[str] = DueQueue()
    queue.add(T0 + S, "b")
    queue.add(T0, "a1")
    queue.add(T0, "a2")

    assert queue.pop_due(now) == due
    assert queue.waiters() == left
    assert queue.pop_due(now) == []


def test_a_discarded_waiter_is_not_due_and_an_emptied_instant_disappears():
    queue: DueQueue[str] = DueQueue()
    queue.add(T0, "a")
    queue.add(T0, "b")
    queue.add(T0 + S, "c")

    queue.discard(T0, "a")
    assert queue.earliest() == T0
    queue.discard(T0, "b")
    queue.discard(T0, "never-added")
    queue.discard(T0 - S, "no-such-instant")

    assert queue.earliest() == T0 + S
    assert len(queue) == 1
    assert queue.pop_due(T0 + S) == ["c"]
    assert queue.earliest() is None


def test_an_instant_emptied_and_added_again_is_due_once():
    queue: DueQueue[str] = DueQueue()
    queue.add(T0, "a")
    queue.discard(T0, "a")
    queue.add(T0, "b")

    assert queue.pop_due(T0) == ["b"]
    assert len(queue) == 0


# ---------------------------------------------------------------- the wheel


async def cancel(task: asyncio.Task[datetime]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def settle() -> None:
    """Let the loop run a few passes (the wheel arms its timer on the next pass)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_target_not_in_the_future_returns_at_once_without_a_timer():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock)

    assert await wheel.sleep_until(T0) == T0
    assert await wheel.sleep_until(T0 - S) == T0
    assert wheel.instants == 0
    assert wheel.armed_for is None


async def test_co_due_waiters_share_one_instant_and_wake_together_not_before():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    waiters = [asyncio.create_task(wheel.sleep_until(T0 + S)) for _ in range(50)]
    await settle()

    assert wheel.instants == 1
    assert wheel.waiting == 50
    assert wheel.armed_for == T0 + S

    await asyncio.sleep(10 * TICK)  # the timer rings and re-reads a clock not there yet
    assert not any(task.done() for task in waiters)

    clock.advance(1.0)
    woke = await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)

    assert woke == [T0 + S] * 50
    assert wheel.instants == 0
    assert wheel.waiting == 0


async def test_waiters_wake_earliest_instant_first_then_in_arrival_order():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    order: list[str] = []

    async def wait(name: str, at: datetime) -> None:
        await wheel.sleep_until(at)
        order.append(name)

    tasks = [
        asyncio.create_task(wait("late", T0 + 2 * S)),
        asyncio.create_task(wait("early-1", T0 + S)),
        asyncio.create_task(wait("early-2", T0 + S)),
    ]
    await settle()
    clock.advance(3.0)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    assert order == ["early-1", "early-2", "late"]


async def test_only_the_instants_that_came_are_woken():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    first = asyncio.create_task(wheel.sleep_until(T0 + S))
    second = asyncio.create_task(wheel.sleep_until(T0 + 2 * S))
    await settle()

    clock.advance(1.0)
    await asyncio.wait_for(first, timeout=5)
    await asyncio.sleep(10 * TICK)

    assert not second.done()
    assert wheel.armed_for == T0 + 2 * S
    await cancel(second)


async def test_a_cancelled_waiter_leaves_the_others_waiting_and_the_last_one_clears_the_timer():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    leaving, staying = (asyncio.create_task(wheel.sleep_until(T0 + S)) for _ in range(2))
    await settle()

    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert wheel.waiting == 1
    assert wheel.armed_for == T0 + S

    staying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await staying
    assert wheel.instants == 0
    assert wheel.armed_for is None


async def test_an_earlier_waiter_re_arms_the_timer_for_its_instant():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    later = asyncio.create_task(wheel.sleep_until(T0 + 60 * S))
    await settle()
    assert wheel.armed_for == T0 + 60 * S

    sooner = asyncio.create_task(wheel.sleep_until(T0 + S))
    await settle()

    assert wheel.armed_for == T0 + S
    clock.advance(1.0)
    await asyncio.wait_for(sooner, timeout=5)
    assert wheel.armed_for == T0 + 60 * S
    await cancel(later)


async def test_on_the_real_clock_a_waiter_never_wakes_before_its_instant():
    clock = SystemClock()
    wheel = ScheduleWheel(clock)
    target = clock.now() + timedelta(milliseconds=200)

    woke = await asyncio.gather(*(wheel.sleep_until(target) for _ in range(20)))

    assert all(now >= target for now in woke)


async def test_the_shared_wheel_is_one_per_loop_and_clock():
    clock, other = SystemClock(), SystemClock()

    assert ScheduleWheel.shared(clock) is ScheduleWheel.shared(clock)
    assert ScheduleWheel.shared(other) is not ScheduleWheel.shared(clock)

    def in_another_loop() -> ScheduleWheel:
        async def get() -> ScheduleWheel:
            return ScheduleWheel.shared(clock)

        return asyncio.run(get())

    assert await asyncio.to_thread(in_another_loop) is not ScheduleWheel.shared(clock)


async def test_a_wheel_refuses_a_second_event_loop():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock)
    assert await wheel.sleep_until(T0) == T0  # no wait yet: not bound to this loop
    waiter = asyncio.create_task(wheel.sleep_until(T0 + S))
    await settle()

    def in_another_loop() -> None:
        asyncio.run(wheel.sleep_until(T0 + S))

    with pytest.raises(RuntimeError, match="one event loop"):
        await asyncio.to_thread(in_another_loop)
    await cancel(waiter)


def test_max_sleep_must_be_positive():
    with pytest.raises(ValueError, match="max_sleep"):
        ScheduleWheel(FrozenClock(T0), max_sleep=0)


async def test_a_waiter_future_resolves_with_the_time_the_wheel_read_and_can_be_forgotten():
    clock = FrozenClock(T0)
    wheel = ScheduleWheel(clock, max_sleep=TICK)

    assert wheel.waiter(T0) is None  # due already: nothing to wait for
    kept, dropped = wheel.waiter(T0 + S), wheel.waiter(T0 + S)
    assert kept is not None
    assert dropped is not None
    wheel.forget(T0 + S, dropped)
    assert wheel.waiting == 1
    await settle()

    clock.advance(1.5)
    assert await asyncio.wait_for(kept, timeout=5) == T0 + 1.5 * S
    assert not dropped.done()


def test_a_shared_wheel_does_not_keep_its_loop_alive():
    seen: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def wait_then_stop() -> None:
        seen.append(weakref.ref(asyncio.get_running_loop()))
        wheel = ScheduleWheel.shared(SystemClock())
        waiting = asyncio.create_task(wheel.sleep_until(datetime.now(UTC) + timedelta(hours=1)))
        await settle()
        await cancel(waiting)

    asyncio.run(wait_then_stop())
    gc.collect()

    assert seen[0]() is None
