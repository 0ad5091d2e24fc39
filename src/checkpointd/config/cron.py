"""Schedule arithmetic: the next fire time of a ``cron``, ``interval`` or ``at`` schedule.

Pure date arithmetic with no I/O and no clock of its own: :func:`compile_schedule`
returns ``next_fire(after)``. The config model calls it to check a schedule (a bad cron
field is an error with its path at ``checkpointd check``); the schedule trigger
(``triggers.schedule``) calls it to walk the schedule through time. This is the only module
that imports APScheduler (3.11: ``CronTrigger`` for cron parsing and time zones/DST).
Where crontab and APScheduler 3.x differ it follows crontab; see ``triggers.schedule``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

__all__ = ["NextFire", "ScheduleSpec", "compile_schedule", "crontab_weekdays"]

NextFire = Callable[[datetime], datetime | None]
"""``next_fire(after)``: the first fire time strictly after ``after``, or None when no more."""

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class ScheduleSpec(Protocol):
    """The fields of a schedule trigger that fix its fire times (``ScheduleTrigger`` fits)."""

    @property
    def cron(self) -> str | None: ...

    @property
    def interval(self) -> timedelta | None: ...

    @property
    def at(self) -> str | None: ...

    @property
    def timezone(self) -> str: ...


def compile_schedule(spec: ScheduleSpec, *, anchor: datetime) -> NextFire:
    """``next_fire(after)`` for ``spec``: the first fire time strictly after ``after``.

    ``anchor`` is where an interval grid starts (its first fire is ``anchor + interval``);
    cron and ``at`` ignore it. Fire times are UTC. Raises ValueError naming the problem
    when the cron expression or ``at`` is invalid.
    """
    if spec.interval is not None:
        return _interval(anchor.astimezone(UTC), spec.interval)
    zone = ZoneInfo(spec.timezone)
    if spec.at is not None:
        return _one_shot(_parse_at(spec.at, zone).astimezone(UTC))
    assert spec.cron is not None  # the config model guarantees exactly one kind
    return _cron(spec.cron, zone)


def _interval(anchor: datetime, interval: timedelta) -> NextFire:
    last: datetime | None = None  # the fire time returned last

    def next_fire(after: datetime) -> datetime | None:
        nonlocal last
        # A running source asks for the fire time after the one it just fired, once per
        # fire: one addition then, instead of the division that places `after` on the grid.
        if last is not None and last == after:
            last += interval
        else:
            last = anchor + interval * max(1, (after - anchor) // interval + 1)
        return last

    return next_fire


def _one_shot(at: datetime) -> NextFire:
    def next_fire(after: datetime) -> datetime | None:
        return at if at > after else None

    return next_fire


def _parse_at(text: str, zone: ZoneInfo) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"at: expected an ISO 8601 datetime such as 2026-11-23T12:00:00Z, found {text!r}"
        ) from None
    return at.replace(tzinfo=zone) if at.tzinfo is None else at


def _cron(expr: str, zone: ZoneInfo) -> NextFire:
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(
            f"expected a cron expression of 5 fields (or 6 with seconds first), found {expr!r}"
        )
    second, minute, hour, day, month, day_of_week = fields
    weekdays = crontab_weekdays(day_of_week)

    def make(day: str, day_of_week: str) -> Any:
        try:
            return CronTrigger(
                second=second,
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=day_of_week,
                timezone=zone,
            )
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None

    # Vixie cron: a field starting with "*" is unrestricted; when both day fields are
    # restricted, a day matching either one fires.
    if not day.startswith("*") and not day_of_week.startswith("*"):
        trigger: Any = OrTrigger([make(day, "*"), make("*", weekdays)])
    else:
        trigger = make(day, weekdays)

    # Vixie cron runs a fixed-time job (neither minute nor hour starting with "*") once
    # when a DST fall-back repeats its wall time; APScheduler fires at both occurrences.
    fixed_time = not minute.startswith("*") and not hour.startswith("*")

    def next_fire(after: datetime) -> datetime | None:
        while True:
            # With no previous fire time APScheduler returns the first match at or after
            # `now` rounded up to the second; cron fire times are whole seconds, so one
            # microsecond past `after` makes the result strictly later than `after`.
            fire: datetime | None = trigger.get_next_fire_time(
                None, after + timedelta(microseconds=1)
            )
            if fire is None:
                return None
            # In UTC: Python compares two datetimes of one zone by wall time, ignoring
            # `fold`, so 02:30 CEST and the 02:30 CET an hour later would compare equal.
            after = fire.astimezone(UTC)
            if not (fixed_time and _repeated_wall_time(fire)):
                return after

    return next_fire


def _repeated_wall_time(moment: datetime) -> bool:
    """Whether ``moment`` is the second occurrence of a wall time a DST fall-back repeats."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler 3.x weekday names.

    Crontab counts 0 (and 7) as Sunday; APScheduler 3.x counts 0 as Monday. Names carry
    no such ambiguity, so numbers, ranges and steps are expanded to a list of names:
    ``1-5`` -> ``mon,tue,wed,thu,fri``. ``*`` stays ``*``.
    """
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, slash, step_text = part.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) == 0):
            raise ValueError(f"day of week {field!r}: bad step in {part!r}")
        step = int(step_text) if slash else 1
        if span == "*":
            first, last = 0, 7
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first, last = _cron_day(first_text, field), _cron_day(last_text, field)
            if first > last:
                raise ValueError(f"day of week {field!r}: range {span!r} runs backwards")
        else:
            first = _cron_day(span, field)
            last = 7 if slash else first
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_CRON_DAYS[day] for day in sorted(days))


def _cron_day(text: str, field: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text in _CRON_DAYS:
        return _CRON_DAYS.index(text)
    raise ValueError(
        f"day of week {field!r}: expected 0-7 (0 and 7 are Sunday) or sun-sat, found {text!r}"
    )
