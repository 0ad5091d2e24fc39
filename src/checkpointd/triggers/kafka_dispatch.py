"""From consumed Kafka messages to trigger events: decode once, route, hold offsets, emit.

The hub's consumer (``triggers/kafka.py``) hands every polled message to
:meth:`Dispatcher.dispatch`, which never waits:

1. The value is decoded once. A malformed message is counted by reason and,
   when a dead-letter topic is set, sent there; its offset advances either way.
2. Each attached :class:`Route` (one kafka trigger of one checkpoint) whose
   topic selector and filter match takes the message: as one event of its own,
   or into the partition's open batch (``kafka_batch`` data source).
3. The offset is tracked with one hold per event that carries it
   (``kafka_offsets``); each event is emitted in a task of its own, and when
   ``emit`` returns (journaled, or refused as a duplicate the journal really
   holds) its holds are released and the commit position may move.

A failed emit (the journal raised, the daemon refused an event it does not
hold) releases nothing: the partition is held and, after a backoff, rewound
to its commit position and read again (the journal refuses what was already
journaled, so a replay runs nothing twice). The consumer reads
:attr:`Dispatcher.in_flight` to pause partitions when runs cannot keep up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from checkpointd.asyncutils import backoff_delay
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.events import TriggerEvent
from checkpointd.triggers.kafka_batch import Batch
from checkpointd.triggers.kafka_decode import (
    Rejected,
    batch_key,
    batch_params,
    decode_value,
    message_key,
    message_params,
    oversized,
)
from checkpointd.triggers.kafka_journal import JournalLookup
from checkpointd.triggers.kafka_metrics import KafkaMetrics
from checkpointd.triggers.kafka_offsets import OffsetTracker, PartitionOffsets
from checkpointd.triggers.kafka_route import TP, KafkaMessage, Route

__all__ = ["TRIGGER_TYPE", "Dispatcher"]

log = structlog.get_logger("checkpointd.trigger.kafka")

TRIGGER_TYPE = "kafka"

DeadLetter = Callable[[KafkaMessage, Rejected], Awaitable[None]]
OnFailure = Callable[[TP, float], None]

_REJECT_LOG_EVERY = 10.0
"""Seconds between log lines about malformed messages of one reason (metrics count all)."""


class Dispatcher:
    """Routes messages to checkpoints and tracks what may be committed."""

    def __init__(
        self,
        *,
        journal: JournalLookup,
        metrics: KafkaMetrics,
        max_message_bytes: int,
        tracker: OffsetTracker[TP] | None = None,
        dead_letter: DeadLetter | None = None,
        on_failure: OnFailure | None = None,
        clock: Clock = SYSTEM_CLOCK,
        monotonic: Callable[[], float] = time.monotonic,
        max_failure_delay: float = 30.0,
    ) -> None:
        self.tracker: OffsetTracker[TP] = tracker if tracker is not None else OffsetTracker()
        self._journal = journal
        self._metrics = metrics
        self._max_bytes = max_message_bytes
        self._dead_letter = dead_letter
        self._on_failure = on_failure
        self._clock = clock
        self._monotonic = monotonic
        self._max_failure_delay = max_failure_delay
        self._routes: list[Route] = []
        self._by_topic: dict[str, tuple[Route, ...]] = {}
        self._tasks: dict[TP, set[asyncio.Task[None]]] = {}
        self._task_partition: dict[asyncio.Task[None], TP] = {}
        self._count = 0
        self._marks: dict[tuple[str, TP], int | None] = {}
        self._held: set[TP] = set()
        self._failures: dict[TP, int] = {}
        self._reject_log: dict[str, tuple[float, int]] = {}

    # ------------------------------------------------------------ routes

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def attach(self, route: Route) -> None:
        if any(r.name == route.name for r in self._routes):
            raise ValueError(f"kafka trigger {route.name} is already attached")
        self._routes.append(route)
        self._by_topic.clear()

    def detach(self, route: Route) -> list[TP]:
        """Remove a route; returns the partitions whose open batches it dropped.

        Those batches' offsets are held and never released: the caller rewinds
        the partitions so the remaining routes see the messages again.
        """
        if route in self._routes:
            self._routes.remove(route)
        self._by_topic.clear()
        for key in [k for k in self._marks if k[0] == route.name]:
            del self._marks[key]
        if route.buffer is None:
            return []
        dropped = route.buffer.partitions()
        for tp in dropped:
            route.buffer.drop(tp)
        return dropped

    # ------------------------------------------------------------ partitions

    @property
    def in_flight(self) -> int:
        """Emits (and dead-letter sends) not finished yet."""
        return self._count

    @property
    def held(self) -> frozenset[TP]:
        """Partitions waiting for a rewind: their messages are not dispatched."""
        return frozenset(self._held)

    def hold(self, tp: TP) -> None:
        """Stop dispatching ``tp`` (a rewind is coming) and drop its open batches."""
        self._held.add(tp)
        self._drop_batches([tp])

    def rewound(self, tp: TP, start: int | None) -> None:
        """``tp`` was sought back to ``start``: forget its pending offsets and dispatch again."""
        self.tracker.reset(tp, start)
        self._drop_batches([tp])
        for key in [k for k in self._marks if k[1] == tp]:
            del self._marks[key]
        self._held.discard(tp)

    def assigned(self, tps: Iterable[TP]) -> None:
        """Fresh state for partitions the group just assigned."""
        for tp in tps:
            self.tracker.reset(tp)
            self._held.discard(tp)
            self._failures.pop(tp, None)

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions revoked: drop their batches, marks and offsets."""
        tps = list(tps)
        self._drop_batches(tps)
        gone = set(tps)
        for key in [k for k in self._marks if k[1] in gone]:
            del self._marks[key]
        self.tracker.drop(tps)
        self._held.difference_update(gone)
        for tp in tps:
            self._failures.pop(tp, None)

    async def ensure_marks(self, tps: Iterable[TP]) -> None:
        """Load, for every batch route, the last offset the journal holds on these partitions."""
        for tp in set(tps):
            for route in self._routes:
                key = (route.name, tp)
                if route.buffer is None or key in self._marks:
                    continue
                mark = await self._journal.last_batch_offset(route.checkpoint, tp[0], tp[1])
                if route in self._routes:
                    self._marks[key] = mark

    async def settle(self, tps: Iterable[TP] | None = None, within: float | None = None) -> bool:
        """Wait until the emits of ``tps`` (default: all) finished; False after ``within`` s."""
        wanted = None if tps is None else set(tps)
        deadline = None if within is None else self._monotonic() + within
        while True:
            pending = {
                task
                for tp, tasks in self._tasks.items()
                if wanted is None or tp in wanted
                for task in tasks
            }
            if not pending:
                return True
            remaining = None if deadline is None else deadline - self._monotonic()
            if remaining is not None and remaining <= 0:
                return False
            await asyncio.wait(pending, timeout=remaining)

    async def cancel(self) -> None:
        """Cancel every emit still running (shutdown after the grace period)."""
        tasks = [task for tasks in self._tasks.values() for task in tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # ------------------------------------------------------------ messages

    def dispatch(self, messages: Iterable[KafkaMessage], now: float) -> None:
        """Decode, route and emit polled messages (never waits); ``now`` is monotonic."""
        # The per-message path of the daemon: work per message is kept to what the
        # message needs (one decode, one event per matching checkpoint, one task per
        # event); lookups that only depend on the topic or partition are made once.
        consumed: dict[str, int] = {}
        held = self._held
        last_tp: TP | None = None
        state = None
        try:
            for message in messages:
                topic = message.topic
                tp = (topic, message.partition)
                if tp in held:
                    continue  # it will be read again after the rewind
                consumed[topic] = consumed.get(topic, 0) + 1
                if tp != last_tp or state is None:
                    state, last_tp = self.tracker.partition(tp), tp
                decoded = oversized(message.key, message.value, self._max_bytes) or decode_value(
                    message.value, self._max_bytes
                )
                if isinstance(decoded, Rejected):
                    self._reject(message, decoded, state, tp)
                    continue
                self._route(message, decoded, tp, state, now)
        finally:
            for topic, count in consumed.items():
                self._metrics.consumed(topic, count)

    def flush_due(self, now: float) -> None:
        """Hand over every batch whose ``max_wait`` has passed."""
        for route in self._routes:
            if route.buffer is not None:
                for batch in route.buffer.due(now):
                    self._emit_batch(route, batch)

    def next_deadline(self) -> float | None:
        """When the next open batch falls due (monotonic), if any."""
        deadlines = [r.buffer.next_deadline() for r in self._routes if r.buffer is not None]
        found = [d for d in deadlines if d is not None]
        return min(found) if found else None

    # ------------------------------------------------------------ internals

    def _emit_batch(self, route: Route, batch: Batch[TP]) -> None:
        tp = batch.partition
        topic, partition = tp
        event = TriggerEvent(
            type=TRIGGER_TYPE,
            key=batch_key(topic, partition, batch.first, batch.last),
            fired_at=self._clock.now(),
            checkpoint=route.checkpoint,
            params=batch_params(topic, partition, batch.first, batch.last, len(batch)),
            records=batch.records,
        )
        state = self.tracker.partition(tp)
        self._spawn(tp, self._deliver(route, event, state, tp, tuple(batch.offsets)))

    def _routes_for(self, topic: str) -> tuple[Route, ...]:
        routes = self._by_topic.get(topic)
        if routes is None:
            routes = tuple(r for r in self._routes if r.selector.matches(topic))
            self._by_topic[topic] = routes
        return routes

    def _route(
        self,
        message: KafkaMessage,
        decoded: dict[str, Any],
        tp: TP,
        state: PartitionOffsets,
        now: float,
    ) -> None:
        singles: list[Route] = []
        full: list[tuple[Route, Batch[TP]]] = []
        holds = 0
        for route in self._routes_for(tp[0]):
            if not route.filter.matches(decoded, message.key, message.headers):
                continue
            if route.buffer is None:
                singles.append(route)
                holds += 1
                continue
            mark = self._marks.get((route.name, tp))
            if mark is not None and message.offset <= mark:
                continue  # a batch of this checkpoint already covered it
            holds += 1
            batch = route.buffer.add(tp, message.offset, decoded, now)
            if batch is not None:
                full.append((route, batch))
        state.track(message.offset, holds)
        if singles:
            offsets = (message.offset,)
            fired, params = self._message_fields(message, decoded)
            key = message_key(tp[0], tp[1], message.offset)
            for route in singles:
                event = TriggerEvent(
                    type=TRIGGER_TYPE,
                    key=key,
                    fired_at=fired,
                    checkpoint=route.checkpoint,
                    params=params,
                )
                self._spawn(tp, self._deliver(route, event, state, tp, offsets))
        for route, batch in full:
            self._emit_batch(route, batch)

    def _message_fields(
        self, message: KafkaMessage, value: dict[str, Any]
    ) -> tuple[datetime, dict[str, str]]:
        """A message event's ``fired_at`` and ``params`` (shared by the checkpoints it fires:
        nothing downstream changes an event's params)."""
        ts = message.timestamp_ms
        fired = datetime.fromtimestamp(ts / 1000, UTC) if ts and ts > 0 else self._clock.now()
        params = message_params(
            value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            timestamp_ms=ts,
        )
        return fired, params

    def _spawn(self, tp: TP, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self._tasks.get(tp)
        if tasks is None:
            tasks = self._tasks[tp] = set()
        tasks.add(task)
        self._task_partition[task] = tp
        self._count += 1
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._count -= 1
        tp = self._task_partition.pop(task)
        tasks = self._tasks.get(tp)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[tp]

    async def _deliver(
        self,
        route: Route,
        event: TriggerEvent,
        state: PartitionOffsets,
        tp: TP,
        offsets: tuple[int, ...],
    ) -> None:
        try:
            accepted = await route.emit(event)
            if not accepted and not await self._journal.journaled(event.key, route.checkpoint):
                raise RuntimeError(
                    "the daemon did not accept the event and the journal does not hold it "
                    "(checkpoint removed, or the daemon is stopping)"
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(tp, state, route, event, exc)
            return
        if state.dropped:
            return
        self._failures.pop(tp, None)
        if route.buffer is not None:
            key = (route.name, tp)
            self._marks[key] = max(self._marks.get(key) or -1, offsets[-1])
        for offset in offsets:
            state.release(offset)

    def _failed(
        self, tp: TP, state: PartitionOffsets, route: Route, event: TriggerEvent, exc: Exception
    ) -> None:
        if state.dropped or tp in self._held:
            return  # a rewind is already coming; it re-reads this message too
        failures = self._failures.get(tp, 0) + 1
        self._failures[tp] = failures
        delay = backoff_delay(
            failures, delay=0.5, backoff=2.0, max_delay=self._max_failure_delay, jitter=False
        )
        log.error(
            "kafka event not journaled; the partition will be read again",
            trigger=route.name,
            key=event.key,
            error=repr(exc),
            retry_in=round(delay, 2),
        )
        self.hold(tp)
        if self._on_failure is not None:
            self._on_failure(tp, delay)

    def _reject(
        self, message: KafkaMessage, rejected: Rejected, state: PartitionOffsets, tp: TP
    ) -> None:
        self._metrics.rejected(rejected.reason)
        self._log_reject(message, rejected)
        if self._dead_letter is None:
            state.track(message.offset, 0)
            return
        state.track(message.offset, 1)
        self._spawn(tp, self._send_dead_letter(message, rejected, state))

    async def _send_dead_letter(
        self, message: KafkaMessage, rejected: Rejected, state: PartitionOffsets
    ) -> None:
        assert self._dead_letter is not None
        try:
            await self._dead_letter(message, rejected)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bad record must never block its partition: count, log, move on.
            self._metrics.dead_lettered(False)
            log.error(
                "dead-letter send failed; the malformed message is skipped",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                error=repr(exc),
            )
        else:
            self._metrics.dead_lettered(True)
        state.release(message.offset)

    def _log_reject(self, message: KafkaMessage, rejected: Rejected) -> None:
        now = self._monotonic()
        last, suppressed = self._reject_log.get(rejected.reason, (float("-inf"), 0))
        if now - last < _REJECT_LOG_EVERY:
            self._reject_log[rejected.reason] = (last, suppressed + 1)
            return
        self._reject_log[rejected.reason] = (now, 0)
        log.warning(
            "malformed kafka message skipped",
            reason=rejected.reason,
            detail=rejected.detail,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            similar_since_last_log=suppressed,
        )

    def _drop_batches(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            for route in self._routes:
                if route.buffer is not None:
                    route.buffer.drop(tp)
