"""The durable store: journal, run history and component state in one SQLite file.

``SqliteStore.open(state_dir)`` locks the directory (one daemon per state dir),
opens ``checkpointd.sqlite3`` in WAL mode, applies migrations and hands
journal rows a crash left unfinished to ``on_recover``. After that:

- writes (journal, results, state) go through one writer coroutine that
  commits many callers' rows per transaction (see ``store_writer``); an
  awaited write is committed when it returns, except ``journal_mark_running``,
  which is queued (see there);
- reads run on a second, read-only connection and never wait for the writer
  (but ``journal_entries`` waits for queued running marks, so it sees them).

When a write fails because the disk is full (or the file system turned
read-only or failing), the store turns unwritable (:attr:`SqliteStore.writable`
is False, for ``/readyz``) but keeps running: callers get StoreError, and a
small probe write every ``probe_interval`` seconds notices when space
returns, as does any other write that commits.

``synchronous="FULL"`` (the default) fsyncs the WAL at every commit, so a write that
returned survives a power cut, not just a crash of this process: the Kafka trigger commits
offsets, and the file trigger marks files seen, on the strength of that return. With group
commit one fsync covers a whole batch, so the cost is per batch, not per row. ``"NORMAL"``
(WAL still never corrupts, but the last commits can be lost on power failure) is for
benchmarks and throwaway state.

The store implements :class:`checkpointd.protocols.Store`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

import aiosqlite
import structlog

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.errors import StoreError
from checkpointd.events import TriggerEvent
from checkpointd.store.model import (
    UNFINISHED_STATES,
    DeliveryPlanner,
    JournalEntry,
    JournalState,
    RetentionReport,
    db_time,
    dump_json,
)
from checkpointd.store.sqlite import queries
from checkpointd.store.sqlite.connections import close_quietly, open_connections
from checkpointd.store.sqlite.health import Writability
from checkpointd.store.sqlite.ops import (
    AcceptOp,
    CallOp,
    MarkOp,
    MarkRunningOp,
    RetentionOp,
    SaveOp,
    SeenOp,
    SetStateOp,
    TransactionHook,
)
from checkpointd.store.sqlite.outbox import SqliteOutbox, with_deliveries
from checkpointd.store.sqlite.writer import StoreWriter, WriterStats
from checkpointd.store.statelock import StateDirLock, acquire_state_dir

if TYPE_CHECKING:
    from checkpointd.config.models import RetentionConfig

T = TypeVar("T")

DB_FILE_NAME = "checkpointd.sqlite3"
PROBE_NAMESPACE = "checkpointd.store"
"""kv_state namespace of the write probe (key ``write_probe``: the time of the last probe)."""

_log = structlog.get_logger("checkpointd.store")
RecoverHook = Callable[[list[JournalEntry]], Awaitable[None]]
Synchronous = Literal["FULL", "NORMAL"]


class SqliteStore:
    """The daemon's durable state. Create it with :meth:`open`; close it with :meth:`close`."""

    def __init__(
        self,
        *,
        state_dir: Path,
        lock: StateDirLock,
        writer_conn: aiosqlite.Connection,
        reader_conn: aiosqlite.Connection,
        clock: Clock,
        retention: RetentionConfig | None,
        max_batch: int,
        probe_interval: float = 1.0,
    ) -> None:
        self.state_dir = state_dir
        self._lock = lock
        self._writer_conn = writer_conn
        self._reader_conn = reader_conn
        self._clock = clock
        self._retention = retention
        self._writability = Writability(
            where=str(state_dir / DB_FILE_NAME),
            probe=self._write_probe,
            interval=probe_interval,
            may_probe=lambda: not self._closed and self._writer.running,
        )
        self._writer = StoreWriter(
            writer_conn, max_batch=max_batch, on_outcome=self._writability.outcome
        )
        self._closed = False
        self._outbox = SqliteOutbox(self.read, self.write)
        self.recovered: tuple[JournalEntry, ...] = ()
        """The unfinished journal rows found at open (what ``on_recover`` was given)."""

    # ------------------------------------------------------------ life cycle

    @classmethod
    async def open(
        cls,
        state_dir: Path,
        *,
        on_recover: RecoverHook | None = None,
        retention: RetentionConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        synchronous: Synchronous = "FULL",
        max_batch: int = 1_000,
        probe_interval: float = 1.0,
    ) -> SqliteStore:
        """Lock ``state_dir``, open (or create) its database and recover.

        Journal rows a crash left accepted or running go, oldest first, to
        ``on_recover`` (only when there are some) before ``open`` returns; if the
        hook raises, the store is closed and the error propagates. They stay in
        :attr:`recovered` for the caller to re-run (``entry.to_event()``) or
        ``journal_mark`` interrupted; rows left unfinished come back at the next open.

        ``synchronous``: see the module docstring; ``probe_interval``: seconds
        between probe writes while the store is unwritable (:attr:`writable`).

        Raises StateDirInUseError when another process holds the directory and
        StoreError when the database cannot be opened or is newer than this code.
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        state_dir = Path(state_dir)
        lock = acquire_state_dir(state_dir)
        db_path = state_dir / DB_FILE_NAME
        store: SqliteStore | None = None
        try:
            writer_conn, reader_conn = await open_connections(
                db_path, synchronous=synchronous, now=clock.now()
            )
            store = cls(
                state_dir=state_dir,
                lock=lock,
                writer_conn=writer_conn,
                reader_conn=reader_conn,
                clock=clock,
                retention=retention,
                max_batch=max_batch,
                probe_interval=probe_interval,
            )
            store._writer.start()
            recovered = await store.journal_entries(states=UNFINISHED_STATES)
            store.recovered = tuple(recovered)
            if recovered and on_recover is not None:
                await on_recover(recovered)
        except BaseException as exc:
            if store is not None:
                await store.close()
            else:
                lock.release()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open {db_path}: {exc}") from exc
            raise
        return store

    async def close(self) -> None:
        """Commit what is queued, close both connections and release the state dir."""
        if self._closed:
            return
        self._closed = True
        await self._writability.stop()
        try:
            await self._writer.close()
        finally:
            await close_quietly(self._reader_conn)
            await close_quietly(self._writer_conn)
            self._lock.release()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        return self.state_dir / DB_FILE_NAME

    @property
    def healthy(self) -> bool:
        """True while the writer is running (for ``/readyz``)."""
        return not self._closed and self._writer.running

    async def wait_ended(self) -> None:
        """Return once the store can no longer serve: closed, or its writer stopped."""
        task = self._writer.task
        if task is not None:
            await asyncio.wait([task])

    @property
    def writable(self) -> bool:
        """True while writes commit: False from a write that failed for lack of space (or a
        read-only or failing file system) until a later write commits. Unlike
        :attr:`healthy` this is a passing condition: the daemon should turn unready, not
        exit, since a restart does not make room on the disk."""
        return self.healthy and self._writability.reason is None

    @property
    def unwritable_reason(self) -> str | None:
        """Why the store cannot write now (None while :attr:`writable`)."""
        return self._writability.reason

    @property
    def writer_stats(self) -> WriterStats:
        """Ops and commits so far: ops/commits is the average group-commit size."""
        return self._writer.stats

    # ------------------------------------------------------------ journal (RunJournal)

    async def journal_accept(self, event: TriggerEvent, checkpoint: str) -> bool:
        """Journal ``event`` for ``checkpoint`` as accepted; durable when it returns.

        Returns False, writing nothing, when (event.key, checkpoint) was
        journaled before: the event is a duplicate.
        """
        now = db_time(self._clock.now())
        records = dump_json(list(event.records)) if event.records is not None else None
        params = dump_json(dict(event.params)) if event.params else "{}"
        row = (event.key, checkpoint, event.type, params, records,
               db_time(event.fired_at), now, now)  # fmt: skip
        accepted: bool = await self._writer.submit(AcceptOp(event.key, checkpoint, row))
        return accepted

    async def journal_mark_running(self, event: TriggerEvent, checkpoint: str) -> None:
        """accepted → running (again, on a retry or a re-run), counting the attempt.

        Queued, not awaited: the mark commits with the next group commit, always
        before this event's result (the writer keeps queue order), and the run
        need not wait a commit for it. Nothing rests on it being durable first:
        the row is journaled since ``journal_accept`` returned, and a crash
        leaves it ``accepted`` or ``running``, both unfinished and recovered the
        same way (only ``attempts`` may then miss that last attempt).
        :meth:`journal_entries` waits for queued marks, so reads see them. Raises
        StoreError only when the store is closed; a mark that fails to commit
        (say, a full disk) is logged.
        """
        now = db_time(self._clock.now())
        await self._writer.post(MarkRunningOp(event.key, checkpoint, now))

    async def journal_mark(
        self, key: str, checkpoint: str, state: Literal["failed", "interrupted"]
    ) -> bool:
        """An unfinished row → failed or interrupted; False if no unfinished row matched."""
        if state not in ("failed", "interrupted"):
            raise ValueError(f"journal_mark sets 'failed' or 'interrupted', not {state!r}")
        now = db_time(self._clock.now())
        changed: bool = await self._writer.submit(MarkOp(key, checkpoint, state, now))
        return changed

    async def save_results(
        self,
        items: Sequence[tuple[CheckpointResult, TriggerEvent | None]],
        extra: TransactionHook | None = None,
        *,
        deliveries: DeliveryPlanner | None = None,
    ) -> None:
        """SqliteStore results with their validator rows and mark their journal rows done,
        all in one transaction (shared with other callers' writes).

        ``deliveries`` plans the outbox rows of these results from their checkpoints'
        last verdicts, read inside that same transaction, so a result and its
        deliveries commit together. ``extra`` (this backend only) runs inside the
        transaction after the rows are written; see ``ops.TransactionHook`` for its
        rules. A failure anywhere fails this whole call with StoreError and leaves
        nothing of it behind.
        """
        if deliveries is not None:
            extra = with_deliveries(items, deliveries, extra)
        if not items and extra is None:
            return
        await self._writer.submit(SaveOp.build(items, extra, db_time(self._clock.now())))

    @property
    def outbox(self) -> SqliteOutbox:
        """The outbox rows (``protocols.OutboxStore``)."""
        return self._outbox

    async def write(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]], what: str) -> T:
        """Run ``fn`` inside the writer's transaction and return its result.

        For modules that own tables in this database: all writes go through
        the one writer. ``what`` names the write in error messages.
        """
        result: T = await self._writer.submit(CallOp(fn, what))
        return result

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on the read-only connection (fetch all rows; keep no cursor open)."""
        self._check_open()
        try:
            return await fn(self._reader_conn)
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.db_path} failed: {exc}") from exc

    # ------------------------------------------------------------ reads

    async def get_run(self, run_id: str) -> CheckpointResult | None:
        """One run by id, or None."""
        return await self.read(lambda conn: queries.get_run(conn, run_id))

    async def list_runs(
        self,
        checkpoint: str | None = None,
        status: Status | str | None = None,
        limit: int = 50,
        before: datetime | None = None,
    ) -> list[CheckpointResult]:
        """Runs newest first (by start time); ``before`` pages back past a start time."""
        return await self.read(
            lambda conn: queries.list_runs(
                conn, checkpoint=checkpoint, status=status, limit=limit, before=before
            )
        )

    async def last_result(self, checkpoint: str) -> CheckpointResult | None:
        """The newest run of ``checkpoint``, or None."""
        return await self.read(lambda conn: queries.last_result(conn, checkpoint))

    async def last_results(self, checkpoints: Iterable[str]) -> dict[str, CheckpointResult]:
        """The newest run of each of ``checkpoints`` that ran (one that never ran has no
        key): :meth:`last_result` for many checkpoints, a query per 500 of them."""
        names = list(checkpoints)
        return await self.read(lambda conn: queries.last_results(conn, names))

    async def count_runs(
        self,
        checkpoint: str | None = None,
        status: Status | str | None = None,
        since: datetime | None = None,
    ) -> int:
        """How many stored runs match."""
        return await self.read(
            lambda conn: queries.count_runs(conn, checkpoint=checkpoint, status=status, since=since)
        )

    async def journal_entries(
        self,
        state: JournalState | None = None,
        *,
        states: Iterable[JournalState] | None = None,
        checkpoint: str | None = None,
    ) -> list[JournalEntry]:
        """Journal rows, oldest first, optionally of one ``state`` (or of ``states``).

        Waits for ``journal_mark_running`` marks still queued, so they are seen.
        """
        wanted = [state] if state is not None else (list(states) if states is not None else None)
        await self._settled()
        return await self.read(
            lambda conn: queries.journal_entries(conn, states=wanted, checkpoint=checkpoint)
        )

    # ------------------------------------------------------------ component state

    async def get_state(self, namespace: str, key: str) -> str | None:
        """A value a component persisted with :meth:`set_state`, or None."""
        return await self.read(lambda conn: queries.get_state(conn, namespace, key))

    async def set_state(self, namespace: str, key: str, value: str) -> None:
        """Persist ``value`` under (namespace, key); durable when it returns."""
        now = db_time(self._clock.now())
        await self._writer.submit(SetStateOp(namespace, key, value, now))

    async def has_seen(self, namespace: str, key: str) -> bool:
        """Whether ``key`` was marked seen in ``namespace``."""
        return not await self.unseen(namespace, [key])

    async def unseen(self, namespace: str, keys: Iterable[str]) -> list[str]:
        """Of ``keys``, those not marked seen (in order, once each): one query per 500."""
        return await self.read(lambda conn: queries.unseen(conn, namespace, keys))

    async def mark_seen(self, namespace: str, keys: Iterable[str]) -> None:
        """Remember ``keys`` in ``namespace``; durable when it returns."""
        await self._seen(namespace, keys, forget=False)

    async def forget_seen(self, namespace: str, keys: Iterable[str]) -> None:
        """Drop ``keys`` from ``namespace`` (e.g. files that left the directory)."""
        await self._seen(namespace, keys, forget=True)

    async def _seen(self, namespace: str, keys: Iterable[str], *, forget: bool) -> None:
        unique = tuple(dict.fromkeys(keys))
        if unique:
            now = db_time(self._clock.now())
            await self._writer.submit(SeenOp(namespace, unique, now, forget))

    # ------------------------------------------------------------ retention

    @property
    def retention(self) -> RetentionConfig | None:
        """What :meth:`apply_retention` keeps; a reload may change it."""
        return self._retention

    @retention.setter
    def retention(self, config: RetentionConfig | None) -> None:
        self._retention = config

    async def apply_retention(self) -> RetentionReport:
        """Delete what the retention config no longer keeps; return the counts.

        Runs started more than ``max_age`` ago and runs beyond the newest
        ``max_runs_per_checkpoint`` of their checkpoint go, with their
        validator rows; so do finished (done, failed, interrupted) journal
        rows last updated more than ``max_age`` ago. Unfinished journal rows
        are never deleted. The daemon calls this periodically.
        """
        config = self._retention
        if config is None or (config.max_age is None and config.max_runs_per_checkpoint is None):
            return RetentionReport()
        cutoff = db_time(self._clock.now() - config.max_age) if config.max_age else None
        report: RetentionReport = await self._writer.submit(
            RetentionOp(cutoff, config.max_runs_per_checkpoint)
        )
        return report

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store at {self.state_dir} is closed")

    async def _settled(self) -> None:
        # Not from inside a transaction (a write hook reading the journal): the queued
        # marks wait for that very transaction, so waiting for them would never end.
        if asyncio.current_task() is not self._writer.task:
            await self._writer.settled()

    async def _write_probe(self) -> None:
        now = db_time(self._clock.now())
        await self._writer.submit(SetStateOp(PROBE_NAMESPACE, "write_probe", now, now))

    # ------------------------------------------------------------ the Kafka trigger's questions

    async def journal_has(self, key: str, checkpoint: str) -> bool:
        """Whether the journal holds ``key`` for ``checkpoint`` (``protocols.KafkaJournal``)."""
        return await self.read(lambda conn: queries.journal_has(conn, key, checkpoint))

    async def journal_last_offset(self, key_prefix: str, checkpoint: str) -> int | None:
        """The highest offset the journal keys of ``checkpoint`` under ``key_prefix`` cover
        (``{key_prefix}{offset}`` or ``{key_prefix}{first}-{last}``), or None."""
        return await self.read(
            lambda conn: queries.journal_last_offset(conn, key_prefix, checkpoint)
        )
