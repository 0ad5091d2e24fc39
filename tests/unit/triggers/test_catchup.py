"""Catch-up after downtime and misfire planning: pure date arithmetic, tables of datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from checkpointd.triggers.catchup import (
    NextFire,
    fire_key,
    format_fire_time,
    missed_fire_times,
    parse_fire_time,
    plan_wake,
    scan_window,
)


def at(hour: int, minute: int = 0, second: float = 0.0, day: int = 23) -> datetime:
    whole = int(second)
    micro = round((second - whole) * 1_000_000)
    return datetime(2026, 11, day, hour, minute, whole, micro, tzinfo=UTC)


MIDNIGHT = at(0)


def every(step: timedelta, anchor: datetime = MIDNIGHT) -> NextFire:
    """A grid anchor + k*step (k >= 1), like an interval schedule."""

    def next_fire(after: datetime) -> datetime | None:
        return anchor + step * max(1, (after - anchor) // step + 1)

    return next_fire


def once(when: datetime) -> NextFire:
    return lambda after: when if when > after else None


HOURLY = every(timedelta(hours=1))
SECONDLY = every(timedelta(seconds=1))


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("fire_time", "expected"),
    [
        (at(12), "schedule:orders/schedule[0]:2026-11-23T12:00:00Z"),
        (at(12, 0, 1.5), "schedule:orders/schedule[0]:2026-11-23T12:00:01.500000Z"),
        (
            datetime(2026, 11, 23, 13, 0, tzinfo=ZoneInfo("Europe/Berlin")),
            "schedule:orders/schedule[0]:2026-11-23T12:00:00Z",
        ),
        (
            datetime(2026, 11, 23, 7, 0, tzinfo=timezone(timedelta(hours=-5))),
            "schedule:orders/schedule[0]:2026-11-23T12:00:00Z",
        ),
    ],
)
def test_fire_key_is_the_schedule_name_and_the_utc_fire_time(fire_time, expected):
    assert fire_key("orders/schedule[0]", fire_time) == expected


def test_a_fire_time_without_a_zone_has_no_key():
    with pytest.raises(ValueError, match="no time zone"):
        fire_key("orders/schedule[0]", datetime(2026, 11, 23, 12))


@pytest.mark.parametrize("fire_time", [at(12), at(12, 0, 1.25), at(0, 0, 0.000001)])
def test_fire_times_round_trip_through_their_text(fire_time):
    assert parse_fire_time(format_fire_time(fire_time)) == fire_time


# ---------------------------------------------------------------- downtime


@pytest.mark.parametrize(
    ("next_fire", "last_fire", "now", "policy", "max_catch_up", "expected"),
    [
        pytest.param(HOURLY, None, at(13, 30), "all", 10, [], id="first-start-owes-nothing"),
        pytest.param(HOURLY, at(10), at(13, 30), "none", 10, [], id="none"),
        pytest.param(HOURLY, at(10), at(13, 30), "latest", 10, [at(13)], id="latest"),
        pytest.param(HOURLY, at(10), at(13, 30), "all", 10, [at(11), at(12), at(13)], id="all"),
        pytest.param(HOURLY, at(10), at(13, 30), "all", 2, [at(12), at(13)], id="all-capped"),
        pytest.param(HOURLY, at(10), at(13, 30), "all", 0, [], id="all-capped-to-zero"),
        pytest.param(HOURLY, at(10), at(13, 30), "latest", 0, [at(13)], id="latest-ignores-cap"),
        pytest.param(
            HOURLY, at(10), at(13), "all", 10, [at(11), at(12), at(13)], id="now-inclusive"
        ),
        pytest.param(HOURLY, at(10), at(10, 59), "all", 10, [], id="nothing-due-yet"),
        pytest.param(HOURLY, at(10), at(9), "latest", 10, [], id="clock-went-back"),
        pytest.param(once(at(12)), at(10), at(13), "latest", 10, [at(12)], id="one-shot-missed"),
        pytest.param(once(at(12)), at(12), at(13), "all", 10, [], id="one-shot-already-fired"),
    ],
)
def test_missed_fire_times(next_fire, last_fire, now, policy, max_catch_up, expected):
    assert missed_fire_times(next_fire, last_fire, now, policy, max_catch_up) == expected


def test_a_day_of_one_second_fire_times_yields_the_newest_without_walking_them_all():
    steps = 0

    def counting(after: datetime) -> datetime | None:
        nonlocal steps
        steps += 1
        return SECONDLY(after)

    missed = missed_fire_times(counting, at(0), at(0, day=24), "all", 3)

    assert missed == [at(23, 59, 58), at(23, 59, 59), at(0, day=24)]
    assert steps < 1_000


@pytest.mark.parametrize(
    ("next_fire", "after", "until", "keep", "newest", "count", "exact"),
    [
        pytest.param(HOURLY, at(10), at(13), 2, (at(12), at(13)), 3, True, id="sparse-exact"),
        pytest.param(HOURLY, at(10), at(10, 30), 2, (), 0, True, id="empty"),
        pytest.param(SECONDLY, at(0), at(1), 0, (), 3600, False, id="dense-estimated"),
        pytest.param(
            SECONDLY, at(0), at(1), 2, (at(0, 59, 59), at(1)), 3600, False, id="dense-newest"
        ),
    ],
)
def test_scan_window(next_fire, after, until, keep, newest, count, exact):
    window = scan_window(next_fire, after, until, keep)

    assert window.newest == newest
    assert window.count == count
    assert window.exact is exact


def test_scan_window_finds_the_newest_fire_times_of_an_irregular_schedule():
    """Every second from 09:00 to 09:59:59, nothing the rest of the day."""

    def office_hour(after: datetime) -> datetime | None:
        candidate = SECONDLY(after)
        assert candidate is not None
        if candidate.hour == 9:
            return candidate
        day = candidate.date() if candidate.hour < 9 else candidate.date() + timedelta(days=1)
        return datetime(day.year, day.month, day.day, 9, tzinfo=UTC)

    window = scan_window(office_hour, at(0), at(23, day=24), 3)

    assert window.newest == (at(9, 59, 57, day=24), at(9, 59, 58, day=24), at(9, 59, 59, day=24))
    assert not window.exact


def test_negative_inputs_are_refused():
    with pytest.raises(ValueError, match="max_catch_up"):
        missed_fire_times(HOURLY, at(10), at(13), "all", -1)
    with pytest.raises(ValueError, match="keep"):
        scan_window(HOURLY, at(10), at(13), -1)
    with pytest.raises(ValueError, match="grace"):
        plan_wake(HOURLY, at(10), at(13), grace=timedelta(seconds=-1), policy="all", max_catch_up=1)


# ---------------------------------------------------------------- lag while running

T0 = at(12)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("now", "grace", "policy", "max_catch_up", "on_time", "catch_up", "misfires"),
    [
        # Blocked 3.5 s on a 1 s grid with a 1 s grace: +1 and +2 are misfires, +3 is late
        # but on time.
        pytest.param(s(3.5), 1.0, "none", 10, (s(3),), (), 2, id="none-keeps-on-time-only"),
        pytest.param(s(3.5), 1.0, "latest", 10, (s(3),), (), 2, id="latest-on-time-stands-in"),
        pytest.param(s(3.5), 1.0, "all", 10, (s(3),), (s(1), s(2)), 2, id="all"),
        pytest.param(s(3.5), 1.0, "all", 1, (s(3),), (s(2),), 2, id="all-capped"),
        # With a 0.2 s grace even +3 is missed: latest runs the newest one late.
        pytest.param(s(3.5), 0.2, "none", 10, (), (), 3, id="none-all-missed"),
        pytest.param(s(3.5), 0.2, "latest", 10, (), (s(3),), 3, id="latest-all-missed"),
        pytest.param(s(3.5), 0.5, "latest", 10, (s(3),), (), 2, id="exactly-at-grace-is-on-time"),
        pytest.param(s(1.1), 1.0, "latest", 10, (s(1),), (), 0, id="slightly-late"),
        pytest.param(s(0.5), 1.0, "all", 10, (), (), 0, id="nothing-due"),
        pytest.param(s(-1), 1.0, "all", 10, (), (), 0, id="clock-went-back"),
    ],
)
def test_plan_wake(now, grace, policy, max_catch_up, on_time, catch_up, misfires):
    plan = plan_wake(
        SECONDLY,
        T0,
        now,
        grace=timedelta(seconds=grace),
        policy=policy,
        max_catch_up=max_catch_up,
    )

    assert plan.on_time == on_time
    assert plan.catch_up == catch_up
    assert plan.misfires == misfires
    assert plan.misfires_exact


def test_plan_wake_after_a_long_stall_estimates_the_misfires():
    plan = plan_wake(
        SECONDLY, T0, s(7200), grace=timedelta(seconds=5), policy="latest", max_catch_up=10
    )

    assert plan.on_time == tuple(s(n) for n in range(7195, 7201))
    assert plan.catch_up == ()
    assert not plan.misfires_exact
    assert 7194 * 0.99 <= plan.misfires <= 7194 * 1.01
