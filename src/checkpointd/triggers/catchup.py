"""Which scheduled fire times are owed after a gap, and what each one is keyed by.

Pure date arithmetic: no I/O, no clock, no APScheduler. A schedule is given as
``next_fire(after)``, the first fire time strictly after ``after`` (None once the
schedule is exhausted), so every function here can be tested with a table of
datetimes.

Two kinds of gap reach this module:

* **Downtime.** The daemon was stopped; on start, :func:`missed_fire_times`
  says which fire times in ``(last_fire, now]`` are still emitted, as the
  checkpoint's ``catch_up`` policy decides:

  ``none``    nothing; the schedule resumes with its next fire time.
  ``latest``  the newest missed fire time only: one run stands in for the gap.
  ``all``     every missed fire time, oldest first, but at most
              ``max_catch_up`` of them — the most recent ones, because the
              newest data is the one worth checking; older ones are dropped.

* **Lag while running.** The event loop was blocked, ``emit`` waited on a full
  pool, or the wall clock stepped forward. :func:`plan_wake` splits the fire
  times that became due into those still on time (within the misfire grace),
  which are emitted as ordinary fires, and misfires, which are counted and then
  handled by the same ``catch_up`` policy as downtime — with one refinement:
  under ``latest`` an on-time fire in the same wake already stands in for the
  gap, so no extra catch-up run is added.

Walking a long gap one fire time at a time could block the event loop (a
one-second schedule after a day of downtime has 86,400 fire times), so
:func:`scan_window` walks at most ``walk_limit`` steps; past that it finds the
newest fire times by searching backwards from the end of the gap in doubling
windows, and *estimates* how many fire times the gap held.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from checkpointd.config.cron import NextFire

CatchUpPolicy = Literal["none", "latest", "all"]
"""What to do with fire times that were missed (``CheckpointConfig.catch_up``)."""

WALK_LIMIT = 128
"""Fire times walked one by one before switching to the backwards search (a cron step is
~15-40 µs, so a walk blocks the loop for a few milliseconds at most)."""


def format_fire_time(fire_time: datetime) -> str:
    """A fire time as UTC ISO 8601 with a ``Z`` (microseconds only when present).

    Raises ValueError for a naive datetime: a fire time without a zone is ambiguous.
    """
    if fire_time.tzinfo is not UTC:  # the common case skips the conversion: it runs per fire
        if fire_time.tzinfo is None or fire_time.utcoffset() is None:
            raise ValueError(f"fire time {fire_time!r} has no time zone")
        fire_time = fire_time.astimezone(UTC)
    return fire_time.isoformat()[:-6] + "Z"  # "+00:00" -> "Z"


def parse_fire_time(text: str) -> datetime:
    """The inverse of :func:`format_fire_time`: an aware UTC datetime."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"fire time {text!r} has no time zone")
    return parsed.astimezone(UTC)


def fire_key(schedule_name: str, fire_time: datetime) -> str:
    """The idempotency key of one fire: ``schedule:<name>:<UTC fire time>``.

    The same schedule and fire time always give the same key, whichever zone the
    fire time is expressed in, so a fire re-emitted after a crash is refused by
    the journal instead of running twice.
    """
    return f"schedule:{schedule_name}:{format_fire_time(fire_time)}"


@dataclass(frozen=True, slots=True)
class Window:
    """The fire times in one window ``(after, until]``.

    ``newest`` holds at most the number asked for, oldest first. ``count`` is how
    many fire times the window held: exact when ``exact``, else an estimate from
    the average spacing of the fire times walked.
    """

    newest: tuple[datetime, ...]
    count: int
    exact: bool = True


def scan_window(
    next_fire: NextFire,
    after: datetime,
    until: datetime,
    keep: int,
    *,
    walk_limit: int = WALK_LIMIT,
) -> Window:
    """The newest ``keep`` fire times in ``(after, until]`` and how many there were."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, found {keep}")
    newest: deque[datetime] = deque(maxlen=keep)
    cursor = after
    walked = 0
    while True:
        fire = next_fire(cursor)
        if fire is None or fire > until:
            return Window(tuple(newest), walked)
        if walked == walk_limit:
            break
        newest.append(fire)
        cursor = fire
        walked += 1

    # Too many to walk: the window is dense. Estimate its size from the spacing seen so
    # far, and find the newest fire times by walking ever larger tails of the window.
    spacing = (cursor - after) / walk_limit
    estimate = walk_limit + (int((until - cursor) / spacing) if spacing else 1)
    if keep == 0:
        return Window((), estimate, exact=False)
    span = spacing * (keep + 1) if spacing else timedelta(seconds=1)
    while True:
        start = max(after, until - span)
        tail = _walk(next_fire, start, until, keep)
        if len(tail) >= keep or start == after:
            return Window(tail, max(estimate, len(tail)), exact=False)
        span *= 2


def _walk(
    next_fire: NextFire, after: datetime, until: datetime, keep: int | None = None
) -> tuple[datetime, ...]:
    """The fire times in ``(after, until]`` (only the newest ``keep`` when given)."""
    fires: deque[datetime] = deque(maxlen=keep)
    cursor = after
    while (fire := next_fire(cursor)) is not None and fire <= until:
        fires.append(fire)
        cursor = fire
    return tuple(fires)


def catch_up_count(policy: CatchUpPolicy, max_catch_up: int) -> int:
    """How many of the newest missed fire times ``policy`` still emits."""
    if max_catch_up < 0:
        raise ValueError(f"max_catch_up must be >= 0, found {max_catch_up}")
    if policy == "none":
        return 0
    if policy == "latest":
        return 1
    return max_catch_up


def missed_fire_times(
    next_fire: NextFire,
    last_fire: datetime | None,
    now: datetime,
    policy: CatchUpPolicy,
    max_catch_up: int,
) -> list[datetime]:
    """The fire times in ``(last_fire, now]`` to emit as catch-up, oldest first.

    ``last_fire`` is the newest fire time already emitted (or the moment the schedule
    was first armed, when it never fired). None means the schedule never ran before:
    nothing is owed on a very first start. See the module docstring for the policies;
    ``max_catch_up`` caps ``all`` (``latest`` always gives at most one).
    """
    keep = catch_up_count(policy, max_catch_up)
    if last_fire is None or keep == 0 or now <= last_fire:
        return []
    return list(scan_window(next_fire, last_fire, now, keep).newest)


@dataclass(frozen=True, slots=True)
class WakePlan:
    """What a running schedule does with the fire times that came due at one wake-up.

    ``on_time`` are emitted as ordinary fires; ``catch_up`` are misfires the policy
    still emits (flagged as catch-up); ``misfires`` counts every fire time that was
    past its grace, whether or not it is still emitted (see ``Window.exact``).
    """

    on_time: tuple[datetime, ...]
    catch_up: tuple[datetime, ...]
    misfires: int
    misfires_exact: bool = True


def plan_wake(
    next_fire: NextFire,
    cursor: datetime,
    now: datetime,
    *,
    grace: timedelta,
    policy: CatchUpPolicy,
    max_catch_up: int,
) -> WakePlan:
    """Split the fire times in ``(cursor, now]`` into on-time fires and misfires.

    ``cursor`` is the last fire time the schedule settled. A fire time is on time when
    ``now - fire <= grace``; callers that add jitter widen ``grace`` by the jitter, so
    a fire is missed only when it is later than the latest moment it was allowed to run.
    """
    if grace < timedelta(0):
        raise ValueError(f"grace must not be negative, found {grace}")
    cutoff = now - grace
    if cursor >= now:
        return WakePlan((), (), 0)
    # Misfires live in (cursor, cutoff); on-time fires in [cutoff, now]. The boundary
    # instant itself is on time, hence the microsecond.
    missed_until = cutoff - timedelta(microseconds=1)
    missed = (
        scan_window(next_fire, cursor, missed_until, catch_up_count(policy, max_catch_up))
        if missed_until > cursor
        else Window((), 0)
    )
    on_time = _walk(next_fire, max(cursor, missed_until), now)
    catch_up = missed.newest
    if policy == "latest" and on_time:
        catch_up = ()
    return WakePlan(on_time, catch_up, missed.count, missed.exact)
