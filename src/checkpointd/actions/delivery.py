"""The action dispatcher: delivers what the outbox holds, with retries and limits.

One loop picks eligible, due deliveries from the outbox (``outbox.due``) and
starts one task per attempt; the outbox row stays the truth, so a restart
resumes exactly what is pending. Rules:

- **Order**: a delivery waits until the earlier stages of its run are
  delivered or dead (see ``actions.plan``); ``max_concurrency`` of a
  concurrent strategy caps one run's deliveries in flight.
- **Limits**: at most ``daemon.actions.max_in_flight`` attempts at once, and at
  most ``per_destination`` per destination. A full destination is skipped,
  not waited for, so a slow receiver never holds a slot another receiver
  could use.
- **Circuit breaker** per destination (``actions.breaker``): while open, its
  deliveries wait without spending attempts; after ``reset_after`` one probe
  goes.
- **Retries**: a retryable failure schedules the next attempt after
  ``actions.retry.retry_delay`` (exponential, full jitter, capped;
  ``Retry-After`` honoured); after ``max_attempts``, or on a failure retrying
  cannot fix, the delivery is dead.
- **Timeouts**: each attempt is bounded by the action's ``timeout`` (channels
  apply finer connect/read limits inside it).
- **Secrets**: every error text passes through ``scrub`` before it is stored
  or logged.

Delivery is at least once: a crash between an accepted attempt and its
``delivered`` mark sends it again after the restart, with the same
``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from checkpointd.actions.breaker import CircuitBreaker
from checkpointd.actions.channel import Channel, DeliveryOutcome
from checkpointd.actions.metrics import ActionMetrics
from checkpointd.actions.outbox import OutboxEntry, delivery_of
from checkpointd.actions.retry import HttpStatusError, retry_delay
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import BackoffConfig, DaemonActionsConfig
from checkpointd.errors import CheckpointdError, DeliveryError
from checkpointd.logs import get_logger
from checkpointd.protocols import OutboxStore

__all__ = ["DeliveryDispatcher", "DeliveryRoute", "Resolve"]

_log = get_logger(component="dispatcher")

PRUNE_EVERY: Final = 600.0
COUNT_EVERY: Final = 0.25
_TIMEOUT_MARGIN: Final = 1.0  # the channel's own timeouts fire first, with better messages


@dataclass(frozen=True, slots=True)
class DeliveryRoute:
    """How to deliver for one configured action."""

    channel: Channel
    max_attempts: int
    timeout: float
    backoff: BackoffConfig
    run_concurrency: int | None = None


Resolve = Callable[[str, str], DeliveryRoute | None]
"""(checkpoint, action name) → its DeliveryRoute under the current config, or None if it is gone."""


class DeliveryDispatcher:
    """Delivers from the outbox until stopped. Build outside the loop; ``await run()`` inside."""

    def __init__(
        self,
        outbox: OutboxStore,
        resolve: Resolve,
        settings: DaemonActionsConfig,
        *,
        metrics: ActionMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        scrub: Callable[[str], str] = lambda text: text,
        rng: random.Random | None = None,
    ) -> None:
        self._outbox = outbox
        self._resolve = resolve
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._scrub = scrub
        self._rng = rng
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._per_destination: Counter[str] = Counter()
        self._per_run: Counter[str] = Counter()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._run_caps: dict[str, int] = {}
        self._last_count = -COUNT_EVERY
        self._last_prune: float | None = None

    # ------------------------------------------------------------ control

    def wake(self) -> None:
        """Look at the outbox now (new rows were committed, or some were requeued)."""
        self._wake.set()

    def breaker(self, destination: str) -> CircuitBreaker:
        """The circuit breaker of ``destination`` (created closed on first use)."""
        breaker = self._breakers.get(destination)
        if breaker is None:
            cfg = self._settings.breaker
            breaker = CircuitBreaker(
                cfg.failures, cfg.reset_after.total_seconds(), clock=self._clock
            )
            self._breakers[destination] = breaker
        return breaker

    @property
    def in_flight(self) -> int:
        """Attempts running now."""
        return len(self._tasks)

    async def stop(self, grace: float) -> None:
        """Start nothing new; let running attempts finish for ``grace`` s, then cancel them.

        A cancelled attempt leaves its delivery pending: it goes again after
        the restart.
        """
        self._stopping = True
        self._wake.set()
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=max(0.0, grace))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Pick and start due deliveries until :meth:`stop`; store errors are logged, not fatal."""
        poll = self._settings.poll_interval.total_seconds()
        while not self._stopping:
            self._wake.clear()
            try:
                started = await self._dispatch_due()
                await self._housekeeping()
                if started:
                    continue
                delay = await self._idle_delay(poll)
            except CheckpointdError as exc:
                _log.error("outbox unavailable; will look again", error=self._scrub(str(exc)))
                delay = poll
            if delay > 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    def _exclusions(self) -> tuple[list[str], list[str], list[str]]:
        limit = self._settings.per_destination
        blocked = {d for d, n in self._per_destination.items() if n >= limit}
        blocked |= {d for d, b in self._breakers.items() if not b.allows()}
        full_runs = [r for r, n in self._per_run.items() if n > 0 and self._run_full(r, n)]
        return list(self._tasks), sorted(blocked), full_runs

    def _run_full(self, run_id: str, count: int) -> bool:
        cap = self._run_caps.get(run_id)
        return cap is not None and count >= cap

    async def _dispatch_due(self) -> int:
        capacity = self._settings.max_in_flight - len(self._tasks)
        if capacity <= 0 or self._stopping:
            return 0
        busy, blocked, full_runs = self._exclusions()
        now = self._clock.now()
        entries = await self._outbox.due(
            now, busy=busy, blocked=blocked, full_runs=full_runs, limit=capacity
        )
        started = 0
        for entry in entries:
            if len(self._tasks) >= self._settings.max_in_flight or self._stopping:
                break
            if await self._start(entry):
                started += 1
        return started

    async def _start(self, entry: OutboxEntry) -> bool:
        destination = entry.destination
        breaker = self.breaker(destination)
        if self._per_destination[destination] >= self._settings.per_destination:
            return False
        if not breaker.allows():
            return False
        route = self._resolve(entry.checkpoint, entry.action)
        if route is None:
            await self._finish_failed(
                entry,
                DeliveryError(
                    f"action {entry.action!r} is no longer configured for checkpoint "
                    f"{entry.checkpoint!r}; restore it and retry the delivery",
                    retryable=False,
                ),
                None,
                0.0,
            )
            return False
        cap = route.run_concurrency
        if cap is not None:
            self._run_caps[entry.run_id] = cap
            if self._per_run[entry.run_id] >= cap:
                return False
        breaker.started()
        self._per_destination[destination] += 1
        self._per_run[entry.run_id] += 1
        task = asyncio.create_task(self._attempt(entry, route), name=f"delivery:{entry.id}")
        self._tasks[entry.id] = task
        task.add_done_callback(functools.partial(self._done, entry))
        return True

    def _done(self, entry: OutboxEntry, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A bug, not a delivery failure: the row stays pending and is tried again; counting
            # it against the breaker keeps a crash that repeats from spinning.
            self.breaker(entry.destination).failed()
            _log.error("a delivery attempt crashed", delivery_id=entry.id, action=entry.action,
                       error=self._scrub(repr(task.exception())))  # fmt: skip
        self._tasks.pop(entry.id, None)
        self._per_destination[entry.destination] -= 1
        if self._per_destination[entry.destination] <= 0:
            del self._per_destination[entry.destination]
        self._per_run[entry.run_id] -= 1
        if self._per_run[entry.run_id] <= 0:
            del self._per_run[entry.run_id]
            self._run_caps.pop(entry.run_id, None)
        self._wake.set()

    async def _idle_delay(self, poll: float) -> float:
        if len(self._tasks) >= self._settings.max_in_flight:
            return poll
        busy, blocked, full_runs = self._exclusions()
        when = await self._outbox.next_due(busy=busy, blocked=blocked, full_runs=full_runs)
        delays = [poll]
        if when is not None:
            # Due but not picked means a race with a new row; look again soon, not in a spin.
            delays.append(max(0.01, (when - self._clock.now()).total_seconds()))
        for breaker in self._breakers.values():
            if breaker.is_open:
                delays.append(max(0.01, breaker.seconds_until_probe()))
        return min(delays)

    async def _housekeeping(self) -> None:
        mono = self._clock.monotonic()
        if self._metrics is not None and mono - self._last_count >= COUNT_EVERY:
            self._last_count = mono
            found = await self._outbox.counts()
            self._metrics.set_counts(found["pending"], found["dead"])
        if self._last_prune is None or mono - self._last_prune >= PRUNE_EVERY:
            self._last_prune = mono
            before = self._clock.now() - self._settings.keep_delivered
            pruned = await self._outbox.prune_delivered(before)
            if pruned:
                _log.info("pruned delivered notifications", count=pruned)

    # ------------------------------------------------------------ one attempt

    async def _attempt(self, entry: OutboxEntry, route: DeliveryRoute) -> None:
        breaker = self.breaker(entry.destination)
        started = self._clock.monotonic()
        outcome: DeliveryOutcome | None = None
        error: DeliveryError | None = None
        try:
            async with asyncio.timeout(route.timeout + _TIMEOUT_MARGIN):
                outcome = await route.channel.send(delivery_of(entry))
        except asyncio.CancelledError:
            breaker.abandoned()
            raise
        except DeliveryError as exc:
            error = exc
        except TimeoutError:
            error = DeliveryError(
                f"{entry.action_type} action {entry.action!r}: no result within its "
                f"{route.timeout:g}s timeout",
                retryable=True,
            )
        except Exception as exc:  # a channel (or user code) that raised something else
            error = DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
        elapsed = self._clock.monotonic() - started
        if error is None:
            assert outcome is not None
            breaker.succeeded()
            await self._finish_delivered(entry, outcome, elapsed)
            return
        if error.retryable:
            breaker.failed()
        else:
            breaker.abandoned()
        await self._finish_failed(entry, error, route, elapsed)

    async def _finish_delivered(
        self, entry: OutboxEntry, outcome: DeliveryOutcome, elapsed: float
    ) -> None:
        attempts = entry.attempts + 1
        now = self._clock.now()
        if self._metrics is not None:
            self._metrics.attempt(entry.action, "delivered", elapsed)
        try:
            await self._outbox.mark_delivered(
                entry.id, now, attempts=attempts, status_code=outcome.status_code
            )
        except CheckpointdError as exc:
            _log.error(
                "delivered, but could not record it; it may be sent again after a restart",
                delivery_id=entry.id,
                action=entry.action,
                error=self._scrub(str(exc)),
            )
            return
        _log.debug(
            "delivered",
            delivery_id=entry.id,
            action=entry.action,
            checkpoint=entry.checkpoint,
            run_id=entry.run_id,
            attempt=attempts,
            destination=entry.destination,
            detail=self._scrub(outcome.detail),
            duration=round(elapsed, 4),
        )

    async def _finish_failed(
        self, entry: OutboxEntry, error: DeliveryError, route: DeliveryRoute | None, elapsed: float
    ) -> None:
        attempts = entry.attempts + 1
        now = self._clock.now()
        message = self._scrub(str(error))[:2000]
        dead = route is None or not error.retryable or attempts >= route.max_attempts
        retry_at = None
        wait = 0.0
        if not dead:
            assert route is not None
            wait = retry_delay(
                attempts,
                route.backoff,
                retry_after=error.retry_after,
                retry_after_max=self._settings.retry_after_max.total_seconds(),
                rng=self._rng,
            )
            retry_at = now + timedelta(seconds=wait)
        if self._metrics is not None:
            self._metrics.attempt(entry.action, "dead" if dead else "failed", elapsed)
        code = error.status_code if isinstance(error, HttpStatusError) else None
        try:
            await self._outbox.mark_failed(
                entry.id,
                now,
                attempts=attempts,
                error=message,
                status_code=code,
                retry_at=retry_at,
            )
        except CheckpointdError as exc:
            _log.error(
                "could not record a failed delivery attempt; it stays pending",
                delivery_id=entry.id,
                action=entry.action,
                error=self._scrub(str(exc)),
            )
            return
        fields = {
            "delivery_id": entry.id,
            "action": entry.action,
            "checkpoint": entry.checkpoint,
            "run_id": entry.run_id,
            "attempt": attempts,
            "destination": entry.destination,
            "error": message,
        }
        if dead:
            reason = "not retryable" if not error.retryable else "attempts used up"
            _log.error("delivery is dead; see `checkpointd deliveries --status dead`",
                       reason=reason, **fields)  # fmt: skip
        else:
            _log.warning("delivery attempt failed; will retry",
                         retry_in_seconds=round(wait, 3), **fields)  # fmt: skip
