"""The schedule trigger: ``cron``, ``interval`` and one-shot ``at`` schedules as TriggerEvents.

The date arithmetic is ``config.cron`` (pure, so ``checkpointd check`` catches a bad cron
field with its path); it uses APScheduler 3.11 for what it is good at — parsing cron
expressions and walking them through time zones and DST (``CronTrigger``). This module
runs its own asyncio loop instead of ``AsyncIOScheduler``:

* **Accuracy.** ``AsyncIOScheduler`` handles every due job in one pass over its job store,
  then starts a task per job. Cron schedules fire together by construction (every
  ``*/15 * * * *`` is due at the same instant); with 1,000 interval jobs due together its
  fire-time error measured p50 48 ms / p99 69 ms on the 2-core dev machine. Here every
  source is a task of its own (the daemon supervises each), but the sources of a loop
  share one timer, a :class:`~checkpointd.triggers.schedule_wheel.ScheduleWheel`: the
  co-due wake together, each emits an event built before it was due, and only when all
  have emitted does any do its bookkeeping (persist its state, build its next event; the
  fire time's text is formatted once per instant). ``bench/schedule_accuracy.py``
  measures this module: with 1,000 co-due schedules the error fell from p50 13-22 ms /
  p99 43-81 ms with a timer per schedule to p50 6-10 ms / p99 17-48 ms (shared machine,
  load 2-2.5; p99 12-19 ms in its quieter runs), loop lag p99 from 80-140 ms to 30-43 ms.
* **Its job model fits badly.** A job is not told which run time it serves; a job still
  awaiting ``emit`` (backpressure) makes later runs be skipped (``max_instances``);
  ``coalesce`` drops missed runs without an ``EVENT_JOB_MISSED``; its jitter is added to
  the previous *jittered* run time, so the grid drifts and fire times are random — and a
  random fire time cannot be an idempotency key a restart recomputes.
* **Lifecycle.** A shared scheduler would be a second thing the daemon starts, stops and
  reconfigures on reload; a source here is one task that stops when cancelled.

Interval grids (``anchor + k * interval``) and ``at`` are exact ``timedelta`` arithmetic:
APScheduler's ``IntervalTrigger`` works in float timestamps and ``DateTrigger`` adds
nothing to a comparison.

Cron follows crontab, not APScheduler 3.x, where the two differ: day-of-week ``0``/``7``
is Sunday (3.x's ``from_crontab`` takes ``0`` as Monday); when day-of-month and
day-of-week are both restricted a day matching *either* fires; and a fixed-time job fires
once, not twice, when a DST fall-back repeats its wall time (all as Vixie cron). A wall
time a spring-forward skips fires one hour on (02:30 -> 03:30; APScheduler's choice). Six
fields put seconds first. ``at`` is an ISO 8601 datetime, in ``timezone`` without offset.

Every fire is keyed ``schedule:<source name>:<UTC nominal fire time>`` (jitter delays the
emit, never the key), so a fire re-emitted after a crash is refused by the journal.
Durable state, in namespace ``schedule`` under the source name, is JSON (see
``schedule_state``)::

    {"version": 1, "spec": "<fingerprint>", "armed_at": "<UTC>", "last_fire": "<UTC>|null"}

It is written after every fire. ``armed_at`` anchors interval grids and, before the first
fire, marks since when fires are owed. When the schedule's definition changes (another
fingerprint) the state is re-armed and nothing is caught up: fire times of the old
schedule are not owed by the new.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta

import structlog

from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.cron import NextFire, compile_schedule, crontab_weekdays
from checkpointd.config.models import ScheduleTrigger
from checkpointd.events import TriggerEvent
from checkpointd.protocols import Emit, StateStore
from checkpointd.triggers.catchup import (
    CatchUpPolicy,
    format_fire_time,
    missed_fire_times,
    plan_wake,
)
from checkpointd.triggers.schedule_state import SavedState, StateEncoder, decode_state
from checkpointd.triggers.schedule_wheel import ScheduleWheel

__all__ = [
    "DEFAULT_MISFIRE_GRACE",
    "STATE_NAMESPACE",
    "ScheduleSource",
    "compile_schedule",
    "crontab_weekdays",
]

_log = structlog.get_logger("checkpointd.triggers.schedule")

STATE_NAMESPACE = "schedule"

DEFAULT_MISFIRE_GRACE = timedelta(seconds=5)
"""How late a fire may be and still count as on time.

Healthy event-loop lag is milliseconds and an NTP step is well under a second, so 5 s
never flags those; schedules are seconds to hours apart, so a fire 5 s late is still
"that" fire. Later than that something stalled (a blocked loop, a long wait in ``emit``,
a suspended VM): the fire is counted as a misfire and the ``catch_up`` policy decides
whether it still runs — nothing is dropped silently.
"""


def _fingerprint(spec: ScheduleTrigger) -> str:
    interval = spec.interval.total_seconds() if spec.interval is not None else None
    return json.dumps(
        {"cron": spec.cron, "interval": interval, "at": spec.at, "timezone": spec.timezone},
        sort_keys=True,
    )


# ---------------------------------------------------------------- the source

_RNG = random.Random()
"""Jitter of the sources not given their own generator: seeding one per source reads the
OS entropy pool, a cost paid a thousand times on a reload of a thousand schedules."""


class _Yield:
    """``await _YIELD`` is ``await asyncio.sleep(0)`` without its two coroutines."""

    def __await__(self) -> Generator[None, None, None]:
        yield  # a bare yield: the task lets the loop run the other ready callbacks first


_YIELD = _Yield()

_FIRE_TEXTS: dict[datetime, str] = {}
_FIRE_TEXTS_MAX = 4096


def _fire_text(fire: datetime) -> str:
    """``format_fire_time(fire)``, formatted once per instant for all co-due schedules."""
    text = _FIRE_TEXTS.get(fire)
    if text is None:
        if len(_FIRE_TEXTS) >= _FIRE_TEXTS_MAX:  # instants only move on: drop the old ones
            _FIRE_TEXTS.clear()
        text = _FIRE_TEXTS[fire] = format_fire_time(fire)
    return text


class ScheduleSource:
    """One schedule trigger of one checkpoint, run as a daemon TriggerSource.

    On start it catches up on fire times missed while the daemon was down (per
    ``catch_up``/``max_catch_up``), then emits one event per fire time. Events are
    ``TriggerEvent(type="schedule")`` with ``fired_at`` the nominal fire time and params
    ``schedule``, ``fire_time`` (UTC ISO) and ``catch_up`` (``"true"``/``"false"``).

    ``on_misfire`` is called once per fire time that was later than ``misfire_grace``
    (plus ``jitter``); ``on_fire_lag`` with the seconds between the intended fire time
    and the emit, for each fire emitted on time.

    Sources wait on ``wheel``, by default the running loop's shared
    :class:`~checkpointd.triggers.schedule_wheel.ScheduleWheel` for ``clock``: schedules
    due at one instant share one timer and are woken together.
    """

    def __init__(
        self,
        checkpoint: str,
        index: int,
        spec: ScheduleTrigger,
        *,
        catch_up: CatchUpPolicy = "latest",
        max_catch_up: int = 10,
        state: StateStore,
        clock: Clock = SYSTEM_CLOCK,
        on_misfire: Callable[[], None] | None = None,
        on_fire_lag: Callable[[float], None] | None = None,
        misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE,
        rng: random.Random | None = None,
        wheel: ScheduleWheel | None = None,
    ) -> None:
        if max_catch_up < 0:
            raise ValueError(f"max_catch_up must be >= 0, found {max_catch_up}")
        if misfire_grace < timedelta(0):
            raise ValueError(f"misfire_grace must not be negative, found {misfire_grace}")
        self._name = f"{checkpoint}/{spec.name or f'schedule[{index}]'}"
        compile_schedule(spec, anchor=datetime(2000, 1, 1, tzinfo=UTC))  # fail fast on bad specs
        self._checkpoint = checkpoint
        self._spec = spec
        self._fingerprint = _fingerprint(spec)
        self._catch_up: CatchUpPolicy = catch_up
        self._max_catch_up = max_catch_up
        self._state = state
        self._clock = clock
        self._on_misfire = on_misfire
        self._on_fire_lag = on_fire_lag
        self._grace = misfire_grace
        self._jitter = spec.jitter or timedelta(0)
        self._rng = rng or _RNG
        self._wheel = wheel
        self._key_prefix = f"schedule:{self._name}:"  # fire_key(), without re-formatting
        self._armed_at = clock.now()  # replaced from the persisted state in run()
        self._encoder: StateEncoder | None = None  # built for the armed_at run() settles on
        self._last_fire_text: str | None = None  # as persisted, UTC ISO
        self._next_fire: datetime | None = None

    @property
    def name(self) -> str:
        """``<checkpoint>/schedule[<index>]``, or ``<checkpoint>/<name>`` for a named schedule."""
        return self._name

    @property
    def next_fire_time(self) -> datetime | None:
        """When the source will next fire (UTC, jitter included); None before it started
        and after a one-shot schedule fired."""
        return self._next_fire

    async def run(self, emit: Emit) -> None:
        """Catch up, then fire on schedule until cancelled.

        A one-shot ``at`` schedule that has fired stays parked until cancelled, as the
        TriggerSource protocol expects of a trigger.
        """
        wheel = self._wheel or ScheduleWheel.shared(self._clock)
        owed_since = await self._restore()
        next_fire = compile_schedule(self._spec, anchor=self._armed_at)
        now = self._clock.now()
        missed = missed_fire_times(next_fire, owed_since, now, self._catch_up, self._max_catch_up)
        if missed:
            _log.info("schedule catching up", schedule=self._name, fires=len(missed))
        for fire in missed:
            await self._fire(emit, self._event(fire, catch_up=True))
        cursor = max(now, owed_since) if owed_since is not None else now
        jitter = self._jitter
        while True:
            nominal = next_fire(cursor)
            if nominal is None:
                self._next_fire = None
                await asyncio.get_running_loop().create_future()  # done: wait to be cancelled
                return
            target = nominal + jitter * self._rng.random() if jitter else nominal
            self._next_fire = target
            event = self._event(nominal, catch_up=False)  # built before sleeping, not after
            # What the wheel's sleep_until does, without a coroutine per fire.
            waiter = wheel.waiter(target)
            if waiter is None:
                now = self._clock.now()
            else:
                try:
                    now = await waiter
                except asyncio.CancelledError:
                    wheel.forget(target, waiter)
                    raise
            late = now - target
            if late <= self._grace:
                # _fire inlined: one coroutine less per fire on the path every co-due
                # schedule takes before the last of them has emitted.
                if self._on_fire_lag is not None:
                    self._on_fire_lag(late.total_seconds())
                accepted = await emit(event)
                await _YIELD
                await self._settle(event, accepted)
                cursor = nominal
            else:
                await self._recover(emit, next_fire, cursor, now)
                cursor = now

    async def _recover(
        self, emit: Emit, next_fire: NextFire, cursor: datetime, now: datetime
    ) -> None:
        """Woken later than the grace: count the misfires, emit what the policy keeps."""
        plan = plan_wake(
            next_fire,
            cursor,
            now,
            grace=self._grace + self._jitter,
            policy=self._catch_up,
            max_catch_up=self._max_catch_up,
        )
        if plan.misfires:
            _log.warning(
                "schedule misfired",
                schedule=self._name,
                misfires=plan.misfires,
                estimated=not plan.misfires_exact,
                catch_up=self._catch_up,
                emitted_late=len(plan.catch_up),
            )
            if self._on_misfire is not None:
                for _ in range(plan.misfires):
                    self._on_misfire()
        for fire in plan.catch_up:
            await self._fire(emit, self._event(fire, catch_up=True))
        for fire in plan.on_time:
            lag = (self._clock.now() - fire).total_seconds()
            await self._fire(emit, self._event(fire, catch_up=False), lag=lag)

    def _event(self, fire: datetime, *, catch_up: bool) -> TriggerEvent:
        if fire.tzinfo is not UTC:
            fire = fire.astimezone(UTC)
        text = _fire_text(fire)
        return TriggerEvent(
            type="schedule",
            key=self._key_prefix + text,
            fired_at=fire,
            checkpoint=self._checkpoint,
            params={
                "schedule": self._name,
                "fire_time": text,
                "catch_up": "true" if catch_up else "false",
            },
        )

    async def _fire(self, emit: Emit, event: TriggerEvent, *, lag: float | None = None) -> None:
        if lag is not None and self._on_fire_lag is not None:
            self._on_fire_lag(lag)
        accepted = await emit(event)
        # Schedules fire together (every "*/15 * * * *" at once): let the others due now
        # emit before this one does its bookkeeping, so the last of a thousand is not late
        # by a thousand bookkeepings.
        await _YIELD
        await self._settle(event, accepted)

    async def _settle(self, event: TriggerEvent, accepted: bool) -> None:
        """A fire's bookkeeping, once every co-due schedule has emitted: persist it."""
        if not accepted:
            # Journaled before (a restart repeating a catch-up fire): nothing to do.
            _log.debug("schedule fire already journaled", schedule=self._name, key=event.key)
        self._last_fire_text = event.params["fire_time"]
        await self._persist()

    async def _restore(self) -> datetime | None:
        """Load the persisted state; the time since which fires are owed, or None."""
        saved = self._saved(await self._state.get_state(STATE_NAMESPACE, self._name))
        if saved is not None:
            self._armed_at = saved.armed_at
            self._encoder = StateEncoder(self._fingerprint, saved.armed_at)
            if saved.last_fire is None:
                return saved.armed_at
            self._last_fire_text = format_fire_time(saved.last_fire)
            return saved.last_fire
        # Whole seconds, so interval fire times (and their keys) read 12:00:03, not 12:00:03.48.
        self._armed_at = self._clock.now().astimezone(UTC).replace(microsecond=0)
        self._encoder = StateEncoder(self._fingerprint, self._armed_at)
        self._last_fire_text = None
        await self._persist()
        return None

    def _saved(self, raw: str | None) -> SavedState | None:
        """The persisted state when it is this schedule's, else None (logged why)."""
        if raw is None:
            return None
        try:
            saved = decode_state(raw)
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning(
                "schedule state unreadable; re-arming", schedule=self._name, error=str(exc)
            )
            return None
        if saved.spec != self._fingerprint:
            _log.info("schedule changed; not catching up", schedule=self._name)
            return None
        return saved

    async def _persist(self) -> None:
        assert self._encoder is not None  # built by _restore, before any fire
        value = self._encoder.encode(self._last_fire_text)
        await self._state.set_state(STATE_NAMESPACE, self._name, value)
