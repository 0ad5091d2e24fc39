"""One timer for all the schedules of an event loop: co-due schedules share one wake-up.

Schedules fire together by construction: every ``*/15 * * * *`` is due at the same
instant, and interval schedules armed in the same second share their grid. With one
sleeping timer per schedule, a thousand co-due schedules are a thousand timers in the
loop's heap, a thousand timer callbacks and a thousand clock readings before the first
of them has emitted. The wheel keeps one loop timer, armed for the earliest instant any
schedule waits for; when it rings it reads the wall clock once and wakes every waiter of
every instant that is due, in the order the instants come (and, within one instant, the
order the waiters arrived).

* :class:`DueQueue` is the pure part: instants, each with its waiters, earliest first.
* :class:`ScheduleWheel` drives it with the loop's timer and a future per waiter (a
  shared future would be cancelled with the first of its waiters that is).

Deadlines are on the wall clock (schedules name wall-clock instants) while loop timers
run on the monotonic clock, so the timer sleeps at most ``max_sleep`` at a time and
re-reads the wall clock: a stepped clock is noticed within that many seconds. A waiter
is never woken before the wall clock reaches its instant; a timer that rings early
(timer granularity, a clock slewed by NTP) is re-armed for the rest.
"""

from __future__ import annotations

import asyncio
import heapq
import weakref
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

from checkpointd.clock import Clock

__all__ = ["DEFAULT_MAX_SLEEP", "DueQueue", "ScheduleWheel"]

DEFAULT_MAX_SLEEP = 30.0
"""Seconds the wheel's timer sleeps at most before it re-reads the wall clock."""

_LEAD = 0.05
"""Seconds early a long wait's timer rings, to be re-armed from there for the rest.

libuv (uvloop) computes its poll timeout from its cached loop time, which it refreshes
when a timer is started; a long pass of callbacks after the last timer start leaves it
stale, and the timer rings late by the rest of that pass. With a timer per schedule the
last schedule to go back to sleep refreshed it; the wheel's one timer was armed by the
first, and with 1,000 schedules on uvloop it rang 6-40 ms late, later from round to
round. So the timer is armed once the burst is over (``ScheduleWheel._request_arm``),
and a long wait is cut in two: the first leg rings ``_LEAD`` early, and the second is
armed from that timer callback, on a loop that is idle by then, and is accurate."""

W = TypeVar("W", bound=Hashable)


class DueQueue(Generic[W]):
    """Waiters grouped by the instant they wait for, earliest instant first.

    Pure bookkeeping (no clock, no loop): :meth:`pop_due` is told what time it is.
    A waiter is any hashable value and is held at most once per instant.
    """

    def __init__(self) -> None:
        # instant -> its waiters, as an ordered set (a dict): O(1) discard, arrival order.
        self._slots: dict[datetime, dict[W, None]] = {}
        # Distinct instants, earliest first; an instant whose last waiter was discarded
        # stays here until it surfaces (lazy deletion keeps discard O(1)).
        self._heap: list[datetime] = []

    def __len__(self) -> int:
        """How many distinct instants have waiters."""
        return len(self._slots)

    def waiters(self) -> int:
        """How many waiters there are, over all instants."""
        return sum(len(slot) for slot in self._slots.values())

    def add(self, at: datetime, waiter: W) -> bool:
        """Make ``waiter`` wait for ``at``; True when ``at`` is a new instant."""
        slot = self._slots.get(at)
        if slot is None:
            self._slots[at] = {waiter: None}
            heapq.heappush(self._heap, at)
            return True
        slot[waiter] = None
        return False

    def discard(self, at: datetime, waiter: W) -> None:
        """Stop ``waiter`` waiting for ``at`` (nothing happens when it was not)."""
        slot = self._slots.get(at)
        if slot is None:
            return
        slot.pop(waiter, None)
        if not slot:
            del self._slots[at]

    def earliest(self) -> datetime | None:
        """The earliest instant with a waiter, or None when nothing waits."""
        heap = self._heap
        while heap and heap[0] not in self._slots:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def pop_due(self, now: datetime) -> list[W]:
        """Remove and return the waiters of every instant at or before ``now``.

        Earlier instants first; within an instant, in the order the waiters were added.
        """
        due: list[W] = []
        heap, slots = self._heap, self._slots
        while heap and heap[0] <= now:
            slot = slots.pop(heapq.heappop(heap), None)
            if slot is not None:
                due.extend(slot)
        return due


_WHEELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, ScheduleWheel]] = (
    weakref.WeakKeyDictionary()
)
"""The shared wheels: per loop (dropped with it), per clock."""


class ScheduleWheel:
    """Wakes schedule sources at wall-clock instants with one loop timer.

    Use :meth:`shared` to get the wheel of the running loop for a clock: every schedule
    source of a daemon then shares one. A wheel belongs to the loop it first waited on.
    """

    def __init__(self, clock: Clock, *, max_sleep: float = DEFAULT_MAX_SLEEP) -> None:
        if max_sleep <= 0:
            raise ValueError(f"max_sleep must be positive, found {max_sleep}")
        self._clock = clock
        self._max_sleep = max_sleep
        self._queue: DueQueue[asyncio.Future[datetime]] = DueQueue()
        self._timer: asyncio.Handle | None = None
        self._armed_for: datetime | None = None  # the instant the timer rings for
        self._arm_requested = False
        # The loop it serves, held weakly: the shared wheels are kept per loop in a
        # WeakKeyDictionary, which a strong reference back to the loop would never empty.
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    @classmethod
    def shared(cls, clock: Clock) -> ScheduleWheel:
        """The running loop's wheel for ``clock`` (created on first use)."""
        loop = asyncio.get_running_loop()
        wheels = _WHEELS.get(loop)
        if wheels is None:
            wheels = _WHEELS[loop] = {}
        # By identity: every source of a daemon is given the daemon's one clock object,
        # and a clock need not be hashable. The wheel holds the clock, so the id stays
        # its own for as long as the entry exists.
        wheel = wheels.get(id(clock))
        if wheel is None:
            wheel = wheels[id(clock)] = cls(clock)
        return wheel

    @property
    def instants(self) -> int:
        """How many distinct instants are waited for (one timer serves them all)."""
        return len(self._queue)

    @property
    def waiting(self) -> int:
        """How many waiters are parked on the wheel."""
        return self._queue.waiters()

    @property
    def armed_for(self) -> datetime | None:
        """The instant the timer is set for, or None when it is not set."""
        return self._armed_for

    async def sleep_until(self, target: datetime) -> datetime:
        """Return once the wall clock has reached ``target``: the time it then reads.

        Returns at once when ``target`` is not in the future.
        """
        waiter = self.waiter(target)
        if waiter is None:
            return self._clock.now()
        try:
            return await waiter
        except asyncio.CancelledError:
            self.forget(target, waiter)
            raise

    def waiter(self, target: datetime) -> asyncio.Future[datetime] | None:
        """A future the wheel resolves once the wall clock reaches ``target``, with the
        time it then read; None when ``target`` is not in the future.

        :meth:`sleep_until` without a coroutine of its own, for the per-fire path of
        thousands of schedules. A caller that stops waiting must :meth:`forget` it.
        """
        now = self._clock.now()
        if target <= now:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop() is None:
            self._loop = weakref.ref(loop)
        elif self._loop() is not loop:
            raise RuntimeError("a ScheduleWheel serves one event loop; use ScheduleWheel.shared")
        waiter: asyncio.Future[datetime] = loop.create_future()
        self._queue.add(target, waiter)
        if self._armed_for is None or target < self._armed_for:
            self._request_arm(loop)
        return waiter

    def forget(self, target: datetime, waiter: asyncio.Future[datetime]) -> None:
        """Stop ``waiter`` (from :meth:`waiter`) waiting for ``target``."""
        self._queue.discard(target, waiter)
        if not self._queue:
            self._disarm()

    def _request_arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the timer on the loop's next pass, not now.

        Waiters arrive in bursts: a thousand schedules go back to sleep one after the
        other after a fire, in one pass of the loop. Armed by the first of them, the
        timer could ring late by the rest of that pass (see ``_LEAD``); armed on the
        next pass, the burst is over. ``armed_for`` is unchanged until then.
        """
        if not self._arm_requested:
            self._arm_requested = True
            loop.call_soon(self._arm_now)

    def _arm_now(self) -> None:
        self._arm_requested = False
        self._arm(self._clock.now())

    def _arm(self, now: datetime) -> None:
        """Set the timer for the earliest instant waited for (or clear it: none)."""
        self._disarm()
        at = self._queue.earliest()
        if at is None:
            return
        delay = (at - now).total_seconds()
        if delay > 2 * _LEAD:
            # Ring a little early and re-arm for the rest from there: see _LEAD.
            delay -= _LEAD
        delay = min(delay, self._max_sleep)
        self._armed_for = at
        # Called on the loop only (from waiter() through call_soon, or from the timer).
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(delay, 0.0), self._ring)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed_for = None

    def _ring(self) -> None:
        self._timer = None
        self._armed_for = None
        now = self._clock.now()
        for waiter in self._queue.pop_due(now):
            if not waiter.done():  # cancelled, its task not yet run to forget it
                waiter.set_result(now)
        self._arm(now)
