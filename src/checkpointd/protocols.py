"""The interfaces between checkpointd's parts, in one place.

They are ``typing.Protocol``s: anything with the right methods fits, so test
doubles and user plug-ins need no inheritance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from datetime import datetime

    from checkpointd.checkpoints.result import CheckpointResult, Status
    from checkpointd.events import TriggerEvent
    from checkpointd.store.model import (
        DeliveryPlanner,
        DeliveryStatus,
        JournalEntry,
        JournalState,
        OutboxEntry,
        RetentionReport,
    )


@runtime_checkable
class RunnableCheckpoint(Protocol):
    """Something the pool can run: a name and a run that never raises.

    ``run_async`` returns a result whose status says what happened; it
    re-raises only ``asyncio.CancelledError``.
    """

    @property
    def name(self) -> str: ...

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult: ...


class RunJournal(Protocol):
    """The durable journal the runner writes through (implemented by daemon.store.Store)."""

    async def journal_accept(self, event: TriggerEvent, checkpoint: str) -> bool:
        """Record an accepted event for one checkpoint; False when its key was seen before."""
        ...

    async def journal_mark_running(self, event: TriggerEvent, checkpoint: str) -> None:
        """Note that the run of an accepted event started. May return before this is
        durable (it commits no later than the run's result): a crash between leaves the
        row ``accepted``, which recovery treats as it treats ``running``."""
        ...

    async def save_results(
        self, items: Sequence[tuple[CheckpointResult, TriggerEvent | None]]
    ) -> None:
        """Store results (and their validator rows) and mark their journal rows done,
        in one transaction."""
        ...


class ResultSink(Protocol):
    """Where finished results go after the bounded result queue."""

    async def handle(
        self, items: Sequence[tuple[CheckpointResult, TriggerEvent | None]]
    ) -> None: ...


Emit = Callable[["TriggerEvent"], Awaitable[bool]]
"""How a trigger hands over an event. It returns once the event is journaled (True) or refused
as a duplicate of a key already journaled (False); it may wait while the pool is full — that wait
is the backpressure a trigger feels. It raises when it cannot take the event (the journal
failed, the daemon is stopping, the checkpoint is gone): the trigger must then not acknowledge
it. Only after it returns may the trigger acknowledge its source (commit a Kafka offset,
remember a file as seen)."""


class TriggerSource(Protocol):
    """A daemon trigger: a long-running task that turns the outside world into events."""

    @property
    def name(self) -> str:
        """Unique and stable across restarts, e.g. ``orders_quality/schedule[0]``."""
        ...

    async def run(self, emit: Emit) -> None:
        """Run until cancelled, calling ``emit`` for every event."""
        ...


@runtime_checkable
class ManagedSource(TriggerSource, Protocol):
    """A trigger source with work to do before its first event and after its last (open and
    close a connection): ``start`` is awaited before ``run``, ``stop`` after it ended."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StateStore(Protocol):
    """Small durable key-value state for triggers (implemented by daemon.store.Store)."""

    async def get_state(self, namespace: str, key: str) -> str | None: ...

    async def set_state(self, namespace: str, key: str, value: str) -> None: ...

    async def has_seen(self, namespace: str, key: str) -> bool: ...

    async def mark_seen(self, namespace: str, keys: Sequence[str]) -> None: ...


class KafkaJournal(Protocol):
    """The journal questions the Kafka trigger asks (implemented by the SQLite store).

    Both are answered from committed rows, without waiting for the writer; the trigger
    turns partitions into key prefixes itself, so the store knows no Kafka.
    """

    async def journal_has(self, key: str, checkpoint: str) -> bool:
        """Whether the journal holds ``key`` for ``checkpoint`` (in any state)."""
        ...

    async def journal_last_offset(self, key_prefix: str, checkpoint: str) -> int | None:
        """The highest offset the journal keys of ``checkpoint`` under ``key_prefix`` cover,
        each key being ``{key_prefix}{offset}`` or ``{key_prefix}{first}-{last}``; None when
        there is none."""
        ...


class OutboxStore(Protocol):
    """The outbox rows a store keeps (``Store.outbox``): what the action dispatcher and the
    operators' commands read and move. Rows are written with their result
    (``Store.save_results(deliveries=...)``), never through here."""

    async def due(
        self,
        now: datetime,
        *,
        busy: Iterable[str] = (),
        blocked: Iterable[str] = (),
        full_runs: Iterable[str] = (),
        limit: int = 100,
    ) -> list[OutboxEntry]:
        """Eligible pending deliveries due by ``now``, oldest due first, with their results:
        not ``busy`` ids (in flight), not to ``blocked`` destinations, not of ``full_runs``,
        and none of a run whose earlier stage is still pending."""
        ...

    async def next_due(
        self,
        *,
        busy: Iterable[str] = (),
        blocked: Iterable[str] = (),
        full_runs: Iterable[str] = (),
    ) -> datetime | None:
        """When the next eligible delivery is due (possibly in the past), or None."""
        ...

    async def mark_delivered(
        self, delivery_id: str, now: datetime, *, attempts: int, status_code: int | None
    ) -> None:
        """pending → delivered."""
        ...

    async def mark_failed(
        self,
        delivery_id: str,
        now: datetime,
        *,
        attempts: int,
        error: str,
        status_code: int | None,
        retry_at: datetime | None,
    ) -> None:
        """A failed attempt: pending again at ``retry_at``, or dead when it is None.
        ``error`` must already be scrubbed of secrets."""
        ...

    async def prune_delivered(self, before: datetime) -> int:
        """Delete deliveries delivered before ``before``; dead and pending ones stay."""
        ...

    async def requeue(self, now: datetime, ids: Sequence[str] | None = None) -> list[str]:
        """Dead deliveries (of ``ids``, or all) → pending, due now, attempts reset."""
        ...

    async def entries(
        self,
        *,
        status: DeliveryStatus | None = None,
        checkpoint: str | None = None,
        limit: int = 50,
    ) -> list[OutboxEntry]:
        """Deliveries newest first (without their results)."""
        ...

    async def get(self, delivery_id: str) -> OutboxEntry | None:
        """One delivery by id (without its result), or None."""
        ...

    async def counts(self) -> Mapping[DeliveryStatus, int]:
        """How many deliveries are pending, delivered, dead."""
        ...


class Store(RunJournal, StateStore, KafkaJournal, Protocol):
    """The state store every layer above it uses: journal, runs, trigger state, outbox.

    One backend per folder of ``checkpointd.store`` (``sqlite/`` today); the store test
    suite runs against every backend. Writes are durable when they return.
    """

    @property
    def outbox(self) -> OutboxStore: ...

    @property
    def healthy(self) -> bool:
        """True while the store can serve (for ``/readyz``)."""
        ...

    @property
    def writable(self) -> bool:
        """True while writes commit (False while the disk is full, until a write commits)."""
        ...

    async def wait_ended(self) -> None:
        """Return once the store can no longer serve (closed, or its writer stopped)."""
        ...

    @property
    def unwritable_reason(self) -> str | None:
        """Why the store cannot write now (None while writable)."""
        ...

    async def save_results(
        self,
        items: Sequence[tuple[CheckpointResult, TriggerEvent | None]],
        *,
        deliveries: DeliveryPlanner | None = None,
    ) -> None:
        """Store results and mark their journal rows done in one transaction; with
        ``deliveries``, also the outbox rows it plans from the checkpoints' last verdicts."""
        ...

    async def journal_mark(
        self, key: str, checkpoint: str, state: Literal["failed", "interrupted"]
    ) -> bool:
        """Set an unfinished journal row ``failed`` or ``interrupted``; False when none."""
        ...

    async def journal_entries(
        self,
        state: JournalState | None = None,
        *,
        states: Iterable[JournalState] | None = None,
        checkpoint: str | None = None,
    ) -> list[JournalEntry]:
        """Journal rows, oldest first, optionally of one ``state`` (or of ``states``)."""
        ...

    async def get_run(self, run_id: str) -> CheckpointResult | None: ...

    async def list_runs(
        self,
        checkpoint: str | None = None,
        status: Status | str | None = None,
        limit: int = 50,
        before: datetime | None = None,
    ) -> list[CheckpointResult]:
        """Runs newest first (by start time); ``before`` pages back past a start time."""
        ...

    async def last_result(self, checkpoint: str) -> CheckpointResult | None: ...

    async def last_results(self, checkpoints: Iterable[str]) -> dict[str, CheckpointResult]:
        """The newest run of each of ``checkpoints`` that ran."""
        ...

    async def count_runs(
        self,
        checkpoint: str | None = None,
        status: Status | str | None = None,
        since: datetime | None = None,
    ) -> int: ...

    async def unseen(self, namespace: str, keys: Iterable[str]) -> list[str]:
        """Of ``keys``, those not marked seen (in order, once each)."""
        ...

    async def forget_seen(self, namespace: str, keys: Iterable[str]) -> None: ...

    async def apply_retention(self) -> RetentionReport:
        """Delete what the retention config no longer keeps; return the counts."""
        ...

    async def close(self) -> None: ...


class RunMetrics(Protocol):
    """What the runtime and the triggers it builds tell the metrics (``daemon.metrics.Metrics``).

    The runtime only says what happened; how it is exported is the daemon's business.
    """

    def run_in_flight(self) -> AbstractContextManager[None]:
        """Count a run as in flight for the duration of the ``with`` block."""
        ...

    def run_skipped(self, reason: str) -> None:
        """Count a run that was not started; ``reason`` is a short fixed word."""
        ...

    def schedule_misfire(self) -> None:
        """Count a scheduled fire time that was missed."""
        ...

    def file_trigger_refused(self, reason: str) -> None:
        """Count a file the file trigger refused (outside the directory, too large, ...)."""
        ...


@runtime_checkable
class FinishingSource(TriggerSource, Protocol):
    """A trigger source with work to do once a run of its checkpoint is over (the file
    trigger moves the file to ``move_on_success`` / ``move_on_failure``).

    The daemon calls ``finish`` on every such source of the checkpoint after each run that
    began from an event and was not skipped, so a source ignores events that are not its
    own. It must not raise: the run's result is already stored.
    """

    async def finish(self, event: TriggerEvent, status_ok: bool) -> object: ...


@runtime_checkable
class ScheduledSource(TriggerSource, Protocol):
    """A trigger source that knows when it fires next (the overview's ``next_fire_time``)."""

    @property
    def next_fire_time(self) -> datetime | None:
        """The next fire time (UTC), or None when none is due (not started, a spent one-shot)."""
        ...
