"""The schedule trigger: cron/interval/at arithmetic, catch-up, misfires, cancellation.

The arithmetic is tested with tables of datetimes. The source itself runs for real on
short intervals (1 s); timing assertions only bound from below what cannot be early
(a fire never runs before its time) and otherwise assert counts and keys.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from checkpointd.clock import FrozenClock, SystemClock
from checkpointd.config.models import ScheduleTrigger
from checkpointd.events import TriggerEvent
from checkpointd.triggers.catchup import fire_key, format_fire_time
from checkpointd.triggers.schedule import (
    STATE_NAMESPACE,
    ScheduleSource,
    compile_schedule,
    crontab_weekdays,
)
from checkpointd.triggers.schedule_wheel import ScheduleWheel

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
SATURDAY = datetime(2026, 11, 21, 10, 7, 30, tzinfo=UTC)


def spec(**fields: Any) -> ScheduleTrigger:
    return ScheduleTrigger(type="schedule", **fields)


def unchecked(**fields: Any) -> ScheduleTrigger:
    """A spec the config model would refuse, to test compile_schedule's own checks."""
    return ScheduleTrigger.model_construct(type="schedule", **fields)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(schedule: ScheduleTrigger, after: datetime, count: int) -> list[datetime]:
    next_fire = compile_schedule(schedule, anchor=ANCHOR)
    out: list[datetime] = []
    for _ in range(count):
        fire = next_fire(after)
        if fire is None:
            break
        out.append(fire.astimezone(UTC))
        after = fire
    return out


# ---------------------------------------------------------------- schedule arithmetic


@pytest.mark.parametrize(
    ("cron", "timezone", "expected"),
    [
        pytest.param(
            "*/15 * * * *",
            "UTC",
            [utc(2026, 11, 21, 10, 15), utc(2026, 11, 21, 10, 30), utc(2026, 11, 21, 10, 45)],
            id="five-fields",
        ),
        pytest.param(
            "0 9 * * 1-5",
            "UTC",
            [utc(2026, 11, 23, 9), utc(2026, 11, 24, 9), utc(2026, 11, 25, 9)],
            id="crontab-weekdays-mon-fri",
        ),
        pytest.param(
            "0 12 * * 0", "UTC", [utc(2026, 11, 22, 12), utc(2026, 11, 29, 12)], id="0-is-sunday"
        ),
        pytest.param(
            "0 12 * * 7", "UTC", [utc(2026, 11, 22, 12), utc(2026, 11, 29, 12)], id="7-is-sunday"
        ),
        pytest.param(
            "0 0 1 * mon",
            "UTC",
            [utc(2026, 11, 23), utc(2026, 11, 30), utc(2026, 12, 1), utc(2026, 12, 7)],
            id="day-of-month-or-day-of-week",
        ),
        pytest.param(
            "*/20 * * * * *",
            "UTC",
            [utc(2026, 11, 21, 10, 7, 40), utc(2026, 11, 21, 10, 8), utc(2026, 11, 21, 10, 8, 20)],
            id="six-fields-seconds-first",
        ),
        pytest.param(
            "30 0 9 * * *",
            "America/New_York",
            [utc(2026, 11, 21, 14, 0, 30), utc(2026, 11, 22, 14, 0, 30)],
            id="six-fields-in-a-zone",
        ),
        pytest.param(
            "0 9 * * *",
            "Europe/Berlin",
            [utc(2026, 11, 22, 8), utc(2026, 11, 23, 8)],
            id="zone-in-winter",
        ),
    ],
)
def test_cron_next_fire_times(cron, timezone, expected):
    assert fires(spec(cron=cron, timezone=timezone), SATURDAY, len(expected)) == expected


def test_cron_follows_the_zone_across_a_dst_change():
    berlin = spec(cron="0 9 * * *", timezone="Europe/Berlin")

    assert fires(berlin, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 8),  # CET, UTC+1
        utc(2026, 3, 29, 7),  # CEST from 29 March, UTC+2
        utc(2026, 3, 30, 7),
    ]


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        pytest.param(
            "30 2 * * *",
            utc(2026, 10, 24, 12),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
            id="fall-back-fixed-time-fires-once",
        ),
        pytest.param(
            "0 * * * *",
            utc(2026, 10, 24, 23, 30),
            [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)],
            id="fall-back-wildcard-hour-fires-in-both-hours",
        ),
        pytest.param(
            "30 2 * * *",
            utc(2026, 3, 28, 12),
            [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)],
            id="spring-forward-skipped-time-fires-an-hour-on",
        ),
    ],
)
def test_cron_across_dst_transitions_in_berlin(cron, after, expected):
    assert fires(spec(cron=cron, timezone="Europe/Berlin"), after, len(expected)) == expected


DST_CHANGES_2026 = [
    ("Europe/Berlin", utc(2026, 3, 29, 1)),
    ("Europe/Berlin", utc(2026, 10, 25, 1)),
    ("America/New_York", utc(2026, 3, 8, 7)),
    ("America/New_York", utc(2026, 11, 1, 6)),
    ("Australia/Lord_Howe", utc(2026, 4, 4, 15)),  # a 30-minute shift
    ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),
]


@pytest.mark.parametrize(("timezone", "change"), DST_CHANGES_2026)
@pytest.mark.parametrize("cron", ["*/15 * * * *", "15 1 * * *", "30 2 * * *", "*/20 * * * * *"])
def test_cron_fire_times_always_move_forward_in_utc(timezone, change, cron):
    next_fire = compile_schedule(spec(cron=cron, timezone=timezone), anchor=ANCHOR)
    times, cursor = [], change - timedelta(days=1)
    while (fire := next_fire(cursor)) is not None and fire < change + timedelta(days=1):
        times.append(fire)
        cursor = fire

    assert times
    assert all(t.tzinfo is UTC for t in times)
    assert all(a < b for a, b in itertools.pairwise(times))


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("*", "*"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1/2", "sun,mon,wed,fri"),
        ("sat,sun", "sun,sat"),
        ("MON-wed", "mon,tue,wed"),
    ],
)
def test_crontab_weekdays_become_unambiguous_names(field, names):
    assert crontab_weekdays(field) == names


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (unchecked(cron="61 * * * *"), "invalid cron expression"),
        (unchecked(cron="0 9 * * 8"), "0-7"),
        (unchecked(cron="0 9 * * 5-1"), "backwards"),
        (unchecked(cron="0 9 * * */0"), "bad step"),
        (unchecked(at="tomorrow at noon"), "ISO 8601"),
    ],
)
def test_invalid_schedules_are_refused_with_the_reason(bad, match):
    with pytest.raises(ValueError, match=match):
        compile_schedule(bad, anchor=ANCHOR)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param(ANCHOR - timedelta(days=3), ANCHOR + timedelta(minutes=10), id="before"),
        pytest.param(ANCHOR, ANCHOR + timedelta(minutes=10), id="at-anchor"),
        pytest.param(ANCHOR + timedelta(minutes=10), ANCHOR + timedelta(minutes=20), id="on-grid"),
        pytest.param(
            ANCHOR + timedelta(days=400, seconds=1),
            ANCHOR + timedelta(days=400, minutes=10),
            id="far-off-grid",
        ),
    ],
)
def test_an_interval_is_an_exact_grid_from_its_anchor(after, expected):
    next_fire = compile_schedule(spec(interval="10m", jitter="30s"), anchor=ANCHOR)

    assert next_fire(after) == expected


@pytest.mark.parametrize(
    ("at", "timezone", "expected"),
    [
        ("2026-11-23T12:00:00Z", "UTC", utc(2026, 11, 23, 12)),
        ("2026-11-23T12:00:00+01:00", "UTC", utc(2026, 11, 23, 11)),
        ("2026-11-23T12:00:00", "Europe/Berlin", utc(2026, 11, 23, 11)),
    ],
)
def test_at_fires_once(at, timezone, expected):
    assert fires(spec(at=at, timezone=timezone), SATURDAY, 5) == [expected]
    assert fires(spec(at=at, timezone=timezone), expected, 5) == []


# ---------------------------------------------------------------- test doubles


class MemoryState:
    """An in-memory StateStore."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.seen: set[tuple[str, str]] = set()

    async def get_state(self, namespace: str, key: str) -> str | None:
        return self.values.get((namespace, key))

    async def set_state(self, namespace: str, key: str, value: str) -> None:
        self.values[(namespace, key)] = value

    async def has_seen(self, namespace: str, key: str) -> bool:
        return (namespace, key) in self.seen

    async def mark_seen(self, namespace: str, keys: Sequence[str]) -> None:
        self.seen.update((namespace, key) for key in keys)

    def saved(self, name: str) -> dict[str, Any]:
        saved: dict[str, Any] = json.loads(self.values[(STATE_NAMESPACE, name)])
        return saved


class Journal:
    """An emit double that journals keys once, like the real journal, and records when."""

    def __init__(self, clock: SystemClock | FrozenClock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.events: list[TriggerEvent] = []
        self.emitted_at: list[datetime] = []
        self.refused: list[str] = []
        self.keys: set[str] = set()
        self.crash_on: str | None = None
        self.hold: asyncio.Event | None = None
        self._changed = asyncio.Event()

    async def emit(self, event: TriggerEvent) -> bool:
        self.emitted_at.append(self.clock.now())
        self._changed.set()
        if event.key in self.keys:
            self.refused.append(event.key)
            return False
        self.keys.add(event.key)
        self.events.append(event)
        if event.key == self.crash_on:
            raise RuntimeError("crashed after journaling")
        if self.hold is not None:
            await self.hold.wait()
        return True

    async def wait_for(self, count: int, *, refused: int = 0) -> None:
        """Until ``count`` events were journaled and ``refused`` duplicates refused."""
        while len(self.events) < count or len(self.refused) < refused:
            self._changed.clear()
            await self._changed.wait()

    @property
    def fire_times(self) -> list[datetime]:
        return [event.fired_at for event in self.events]


async def run_source(
    source: ScheduleSource, journal: Journal, *, events: int, settle: float = 0.0
) -> None:
    """Run ``source`` until ``journal`` holds ``events`` events (+ ``settle`` s), then cancel."""
    task = asyncio.create_task(source.run(journal.emit))
    try:
        async with asyncio.timeout(10):
            waiter = asyncio.ensure_future(journal.wait_for(events))
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if task.done():
                task.result()  # raise what stopped the source
                pytest.fail("the source returned on its own")
        await asyncio.sleep(settle)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def source(
    schedule: ScheduleTrigger, state: MemoryState, clock: Any = None, **options: Any
) -> ScheduleSource:
    return ScheduleSource(
        "orders", 0, schedule, state=state, clock=clock or SystemClock(), **options
    )


# ---------------------------------------------------------------- the source


def test_the_source_is_named_after_its_checkpoint_and_position_or_name():
    state = MemoryState()

    assert source(spec(interval="1s"), state).name == "orders/schedule[0]"
    assert source(spec(interval="1s", name="hourly"), state).name == "orders/hourly"


def test_a_bad_schedule_fails_when_the_source_is_built():
    with pytest.raises(ValueError, match="invalid cron expression"):
        source(spec(cron="0 25 * * *"), MemoryState())


async def test_an_interval_fires_on_its_grid_with_keys_of_its_fire_times():
    state, journal, lags = MemoryState(), Journal(), list[float]()
    schedule = source(spec(interval="1s"), state, on_fire_lag=lags.append)

    await run_source(schedule, journal, events=2)

    first, second = journal.events
    assert second.fired_at - first.fired_at == timedelta(seconds=1)
    assert first.fired_at.microsecond == 0  # the grid is anchored on a whole second
    for event in journal.events:
        assert event.type == "schedule"
        assert event.checkpoint == "orders"
        assert event.key == fire_key("orders/schedule[0]", event.fired_at)
        assert event.params == {
            "schedule": "orders/schedule[0]",
            "fire_time": format_fire_time(event.fired_at),
            "catch_up": "false",
        }
    assert all(
        at >= event.fired_at for at, event in zip(journal.emitted_at, journal.events, strict=True)
    )
    assert len(lags) == 2
    assert all(0 <= lag < 1 for lag in lags)
    assert state.saved("orders/schedule[0]")["last_fire"] == format_fire_time(second.fired_at)


async def test_jitter_delays_each_fire_within_its_bound_without_moving_the_grid():
    state, journal = MemoryState(), Journal()
    schedule = source(spec(interval="1s", jitter="400ms"), state, rng=random.Random(7))
    replay = random.Random(7)
    offsets = [replay.random() * 0.4 for _ in range(3)]

    await run_source(schedule, journal, events=3)

    fired = journal.fire_times
    assert [b - a for a, b in itertools.pairwise(fired)] == [timedelta(seconds=1)] * 2
    for event, emitted, offset in zip(journal.events, journal.emitted_at, offsets, strict=True):
        delay = (emitted - event.fired_at).total_seconds()
        assert offset <= delay < offset + 0.5


async def test_at_fires_once_then_waits_to_be_cancelled():
    state, journal = MemoryState(), Journal()
    when = datetime.now(UTC) + timedelta(milliseconds=300)
    one_shot = spec(at=when.isoformat())

    await run_source(source(one_shot, state), journal, events=1, settle=1.0)

    assert journal.fire_times == [when]
    assert journal.events[0].params["catch_up"] == "false"

    again = Journal()
    await run_source(source(one_shot, state), again, events=0, settle=0.3)
    assert again.events == []


async def test_an_at_in_the_past_does_not_fire_on_a_first_start():
    journal = Journal()
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()

    await run_source(source(spec(at=past), MemoryState()), journal, events=0, settle=0.3)

    assert journal.events == []


async def test_an_at_missed_while_the_daemon_was_down_is_caught_up():
    state, t0 = MemoryState(), utc(2026, 11, 23, 11)
    one_shot = spec(at="2026-11-23T12:00:00Z")
    await run_source(source(one_shot, state, FrozenClock(t0)), Journal(), events=0)

    journal = Journal()
    await run_source(
        source(one_shot, state, FrozenClock(t0 + timedelta(hours=2))), journal, events=1
    )

    assert journal.fire_times == [utc(2026, 11, 23, 12)]
    assert journal.events[0].params["catch_up"] == "true"


async def test_the_first_start_arms_the_schedule_and_catches_nothing_up():
    state, journal = MemoryState(), Journal()
    t0 = utc(2026, 11, 23, 12, 0, 0)

    await run_source(source(spec(interval="1h"), state, FrozenClock(t0)), journal, events=0)

    assert journal.events == []
    saved = state.saved("orders/schedule[0]")
    assert saved["armed_at"] == "2026-11-23T12:00:00Z"
    assert saved["last_fire"] is None


HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("policy", "max_catch_up", "expected_hours"),
    [("latest", 10, [4]), ("all", 10, [2, 3, 4]), ("all", 2, [3, 4]), ("none", 10, [])],
)
async def test_a_restart_catches_up_per_policy(policy, max_catch_up, expected_hours):
    state, t0 = MemoryState(), utc(2026, 11, 23, 12)
    hourly = spec(interval="1h")
    options = {"catch_up": policy, "max_catch_up": max_catch_up}
    # Armed at t0, then a restart just after the first fire time emits it ...
    await run_source(source(hourly, state, FrozenClock(t0), **options), Journal(), events=0)
    first = Journal()
    clock = FrozenClock(t0 + HOUR + timedelta(minutes=1))
    await run_source(source(hourly, state, clock, catch_up="latest"), first, events=1)
    assert first.fire_times == [t0 + HOUR]

    # ... and a restart three intervals after that last fire catches up per policy.
    journal = Journal()
    clock = FrozenClock(t0 + 4 * HOUR + timedelta(minutes=1))
    await run_source(
        source(hourly, state, clock, **options), journal, events=len(expected_hours), settle=0.1
    )

    assert journal.fire_times == [t0 + n * HOUR for n in expected_hours]
    assert [event.key for event in journal.events] == [
        f"schedule:orders/schedule[0]:2026-11-23T{12 + n}:00:00Z" for n in expected_hours
    ]
    assert all(event.params["catch_up"] == "true" for event in journal.events)
    if expected_hours:
        last = format_fire_time(t0 + expected_hours[-1] * HOUR)
        assert state.saved("orders/schedule[0]")["last_fire"] == last


async def test_a_crash_during_catch_up_never_duplicates_a_fire():
    state, t0 = MemoryState(), utc(2026, 11, 23, 12)
    hourly = spec(interval="1h")
    await run_source(source(hourly, state, FrozenClock(t0)), Journal(), events=0)
    down = FrozenClock(t0 + 3 * HOUR + timedelta(minutes=1))
    journal = Journal()
    journal.crash_on = fire_key("orders/schedule[0]", t0 + 2 * HOUR)

    with pytest.raises(RuntimeError, match="crashed after journaling"):
        await source(hourly, state, down, catch_up="all").run(journal.emit)

    journal.crash_on = None
    await run_source(source(hourly, state, down, catch_up="all"), journal, events=3, settle=0.1)

    assert journal.fire_times == [t0 + HOUR, t0 + 2 * HOUR, t0 + 3 * HOUR]
    assert journal.refused == [fire_key("orders/schedule[0]", t0 + 2 * HOUR)]


async def test_a_duplicate_refused_by_the_journal_does_not_stop_the_source():
    state, journal = MemoryState(), Journal()
    schedule = source(spec(interval="1s"), state)
    journal.keys = AlwaysSeen()  # every key was journaled before, e.g. by a previous run

    task = asyncio.create_task(schedule.run(journal.emit))
    async with asyncio.timeout(10):
        await journal.wait_for(0, refused=2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    fire_times = [key.removeprefix("schedule:orders/schedule[0]:") for key in journal.refused]
    assert len(set(fire_times)) == len(fire_times)
    assert journal.events == []
    assert state.saved("orders/schedule[0]")["last_fire"] in fire_times  # was None


class AlwaysSeen(set[str]):
    """A key set that claims to hold every key."""

    def __contains__(self, key: object) -> bool:
        return True


async def test_a_changed_schedule_is_re_armed_instead_of_caught_up():
    state, t0 = MemoryState(), utc(2026, 11, 23, 12)
    await run_source(source(spec(interval="1h"), state, FrozenClock(t0)), Journal(), events=0)
    journal = Journal()
    later = FrozenClock(t0 + 5 * HOUR)

    await run_source(source(spec(interval="2h"), state, later), journal, events=0, settle=0.1)

    assert journal.events == []
    assert state.saved("orders/schedule[0]")["armed_at"] == format_fire_time(t0 + 5 * HOUR)


async def test_unreadable_state_is_re_armed():
    state = MemoryState()
    state.values[(STATE_NAMESPACE, "orders/schedule[0]")] = "{not json"
    journal = Journal()

    await run_source(source(spec(interval="1h"), state), journal, events=0, settle=0.1)

    assert journal.events == []
    assert state.saved("orders/schedule[0]")["last_fire"] is None


# ---------------------------------------------------------------- lag, misfires, cancellation


@pytest.mark.parametrize(("policy", "late_events"), [("none", 0), ("latest", 1)])
async def test_a_blocked_loop_counts_misfires_and_catches_up_per_policy(policy, late_events):
    state, journal, misfires = MemoryState(), Journal(), []
    schedule = source(
        spec(interval="1s"),
        state,
        catch_up=policy,
        misfire_grace=timedelta(milliseconds=200),
        on_misfire=lambda: misfires.append(1),
    )
    task = asyncio.create_task(schedule.run(journal.emit))
    try:
        async with asyncio.timeout(10):
            await journal.wait_for(1)
            first = journal.fire_times[0]
            # Block the event loop on purpose, past the fire times first+1s and first+2s.
            time.sleep(2.5)  # noqa: ASYNC251
            await journal.wait_for(2 + late_events)  # the catch-up (if any) and the next fire
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert 2 <= len(misfires) <= 3
    late = [event for event in journal.events if event.params["catch_up"] == "true"]
    assert len(late) == late_events
    if late:
        assert late[0].fired_at in (first + timedelta(seconds=2), first + timedelta(seconds=3))
    on_time = [event.fired_at for event in journal.events if event.params["catch_up"] == "false"]
    assert first + timedelta(seconds=1) not in on_time


async def test_backpressure_shows_as_misfires_not_as_a_backlog():
    state, journal, misfires = MemoryState(), Journal(), []
    schedule = source(
        spec(interval="1s"),
        state,
        misfire_grace=timedelta(milliseconds=200),
        on_misfire=lambda: misfires.append(1),
    )
    journal.hold = asyncio.Event()
    task = asyncio.create_task(schedule.run(journal.emit))
    try:
        async with asyncio.timeout(10):
            await journal.wait_for(1)
            await asyncio.sleep(2.5)  # the pool is full: emit does not return
            journal.hold.set()
            await journal.wait_for(2)
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert 2 <= len(misfires) <= 3
    # One run stands in for the fire times missed while emit waited ("latest").
    assert journal.events[1].params["catch_up"] == "true"
    assert len(journal.events) <= 3


async def test_cancelling_while_emit_waits_leaves_the_fire_unrecorded():
    state, journal = MemoryState(), Journal()
    journal.hold = asyncio.Event()
    task = asyncio.create_task(source(spec(interval="1s"), state).run(journal.emit))
    async with asyncio.timeout(10):
        await journal.wait_for(1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert task.cancelled()
    assert state.saved("orders/schedule[0]")["last_fire"] is None


@pytest.mark.parametrize(
    "schedule",
    [spec(interval="1h"), spec(cron="0 0 1 1 *"), spec(at="2000-01-01T00:00:00Z")],
    ids=["sleeping", "cron", "parked-one-shot"],
)
async def test_the_source_stops_cleanly_when_cancelled(schedule):
    task = asyncio.create_task(source(schedule, MemoryState()).run(Journal().emit))
    await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert task.cancelled()


# ---------------------------------------------------------------- the shared wheel


TICK = 0.005  # max_sleep of the wheels below: they re-read the frozen clock this often


async def until(condition: Any, what: str) -> None:
    """Let the loop run until ``condition()`` holds (the frozen clock does not move)."""
    try:
        async with asyncio.timeout(10):
            while not condition():  # noqa: ASYNC110 - polls plain state of wheel and doubles
                await asyncio.sleep(TICK)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def stop(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_co_due_sources_share_one_timer_and_all_emit_before_any_persists():
    t0 = utc(2026, 11, 23, 12)
    clock, state = FrozenClock(t0), MemoryState()
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    persisted_at_emit: list[int] = []

    async def emit(event: TriggerEvent) -> bool:
        persisted_at_emit.append(
            sum(
                json.loads(v)["last_fire"] == event.params["fire_time"]
                for v in state.values.values()
            )
        )
        return True

    sources = [
        ScheduleSource(f"cp{i}", 0, spec(interval="1h"), state=state, clock=clock, wheel=wheel)
        for i in range(20)
    ]
    tasks = [asyncio.create_task(s.run(emit)) for s in sources]
    try:
        await until(lambda: wheel.waiting == 20, "all sources waiting")
        assert wheel.instants == 1
        assert {s.next_fire_time for s in sources} == {t0 + HOUR}

        clock.advance(3600)
        await until(lambda: len(persisted_at_emit) == 20 and wheel.waiting == 20, "one round")

        assert persisted_at_emit == [0] * 20  # every emit came before any bookkeeping
        assert all(
            state.saved(f"cp{i}/schedule[0]")["last_fire"] == "2026-11-23T13:00:00Z"
            for i in range(20)
        )
        assert wheel.instants == 1
        assert {s.next_fire_time for s in sources} == {t0 + 2 * HOUR}
    finally:
        await stop(tasks)


async def test_a_stopped_source_no_longer_waits_on_the_wheel():
    clock = FrozenClock(utc(2026, 11, 23, 12))
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    journal = Journal(clock)
    tasks = [
        asyncio.create_task(
            ScheduleSource(
                f"cp{i}", 0, spec(interval="1h"), state=MemoryState(), clock=clock, wheel=wheel
            ).run(journal.emit)
        )
        for i in range(3)
    ]
    await until(lambda: wheel.waiting == 3, "all sources waiting")

    await stop(tasks[:1])  # a reload removed one checkpoint

    assert wheel.waiting == 2
    await stop(tasks[1:])
    assert wheel.waiting == 0
    assert wheel.armed_for is None


def test_an_interval_answers_the_same_whatever_the_order_of_questions():
    next_fire = compile_schedule(spec(interval="10m"), anchor=ANCHOR)
    asked = [
        ANCHOR + timedelta(minutes=10),  # the fire time just returned: one step on
        ANCHOR + timedelta(minutes=20),
        ANCHOR + timedelta(minutes=3),  # somewhere else on the grid: placed by division
        ANCHOR + timedelta(minutes=10),
        ANCHOR - timedelta(days=1),
    ]

    answers = [next_fire(after) for after in asked]

    fresh = compile_schedule(spec(interval="10m"), anchor=ANCHOR)
    assert answers == [fresh(after) for after in reversed(asked)][::-1]
    assert answers == [
        ANCHOR + timedelta(minutes=20),
        ANCHOR + timedelta(minutes=30),
        ANCHOR + timedelta(minutes=10),
        ANCHOR + timedelta(minutes=20),
        ANCHOR + timedelta(minutes=10),
    ]


async def test_a_wake_past_the_grace_counts_each_missed_fire_and_logs_each_wake():
    t0 = utc(2026, 11, 23, 12)
    clock, misfires = FrozenClock(t0), []
    wheel = ScheduleWheel(clock, max_sleep=TICK)
    journal = Journal(clock)
    hourly = ScheduleSource(
        "orders",
        0,
        spec(interval="1h"),
        catch_up="none",
        state=MemoryState(),
        clock=clock,
        misfire_grace=timedelta(minutes=1),
        on_misfire=lambda: misfires.append(1),
        wheel=wheel,
    )

    with capture_logs() as logs:
        task = asyncio.create_task(hourly.run(journal.emit))
        try:
            await until(lambda: wheel.waiting == 1, "armed")
            for fires in (1, 2):
                clock.advance(3 * 3600)  # the loop was stuck for three hours
                await until(lambda n=fires: len(journal.events) == n, "the on-time fire")
        finally:
            await stop([task])

    warnings = [log for log in logs if log["event"] == "schedule misfired"]
    assert [w["misfires"] for w in warnings] == [2, 2]
    assert len(misfires) == 4  # two hours missed at each stall, each counted
    assert journal.fire_times == [t0 + 3 * HOUR, t0 + 6 * HOUR]  # the hour woken in is on time
    assert all(event.params["catch_up"] == "false" for event in journal.events)
