"""The store's one writer: group commit through a single coroutine.

Every write is a :class:`~checkpointd.store.sqlite.ops.WriteOp` put on a
bounded queue. One coroutine takes everything waiting (up to ``max_batch``
ops), applies it in one ``BEGIN IMMEDIATE`` transaction and only then
resolves each caller's future, so an ``await`` that returns means the row is
committed. While one commit is being synced to disk the next callers pile up
in the queue and share the next commit: that sharing is what makes thousands
of runs per second possible with a full fsync per commit.

Consecutive ops of one class are applied together (``WriteOp.apply_many``),
and a whole transaction, BEGIN to COMMIT, is one call on the connection's
thread: the writer's cost per batch is one hop to that thread and back, not
one per statement. Only ops with an async :meth:`~WriteOp.hook` split it (the
hook runs on the loop between two such calls).

:meth:`StoreWriter.post` queues an op without waiting for its commit (the
store's ``journal_mark_running``): it commits with the next batch, in queue
order, and :meth:`StoreWriter.settled` waits until everything posted so far
has committed. A posted op that fails is logged; nobody waits for it.

One bad op must not take the others down, nor kill the writer: when a batch
fails it is rolled back and replayed one op per transaction, and only the
ops that fail again get a StoreError.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import aiosqlite
import structlog

from checkpointd.errors import StoreError
from checkpointd.store.sqlite.ops import WriteOp

_log = structlog.get_logger("checkpointd.store")

Step = Callable[[sqlite3.Connection], None]
"""Synchronous work for the connection's thread."""

# ------------------------------------------------------------------ the writer


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics and benchmarks."""

    ops: int = 0
    commits: int = 0
    failed_batches: int = 0


@dataclass(slots=True)
class _Pending:
    op: WriteOp
    future: asyncio.Future[Any]
    posted: bool = False  # nobody awaits it: failures are logged, never raised


def check_aiosqlite_internals(conn: aiosqlite.Connection) -> None:
    """Raise StoreError unless ``conn`` has the two private members the writer uses.

    One thread hop per transaction needs aiosqlite's ``Connection._execute`` (how its own
    methods reach the connection's thread) and ``Connection._conn`` (the sqlite3
    connection there). aiosqlite is pinned below 0.23 in pyproject.toml; this check makes
    an aiosqlite that renamed them fail at store open, with the fix, instead of at the
    first write.
    """
    missing = [
        name
        for name, ok in (
            ("_execute", callable(getattr(conn, "_execute", None))),
            ("_conn", isinstance(getattr(conn, "_conn", None), sqlite3.Connection)),
        )
        if not ok
    ]
    if missing:
        version = getattr(aiosqlite, "__version__", "?")
        raise StoreError(
            f"aiosqlite {version} lacks Connection.{' and Connection.'.join(missing)}, which "
            "the store writer needs: install the aiosqlite version pyproject.toml allows "
            "(pip install 'aiosqlite>=0.20,<0.23')"
        )


class StoreWriter:
    """Owns the write connection; :meth:`submit` is the only way to write."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        max_queue: int = 10_000,
        max_batch: int = 1_000,
        on_outcome: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """``on_outcome`` hears about every transaction: None once it committed, the
        exception when it failed (how the store notices a full disk, and its end)."""
        self._conn = conn
        self._on_outcome = on_outcome
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(maxsize=max_queue)
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[_Pending] = []
        self._closing = False
        self._last_posted: asyncio.Future[Any] | None = None
        self.stats = WriterStats()

    def start(self) -> None:
        """Start the writer coroutine (call inside the running loop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="checkpointd-store-writer"
        )

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The writer coroutine's task (write hooks run inside it)."""
        return self._task

    @property
    def running(self) -> bool:
        """True while the writer accepts and commits ops."""
        return self._task is not None and not self._task.done() and not self._closing

    async def submit(self, op: WriteOp) -> Any:
        """Queue ``op`` and wait until it is committed; its result, or StoreError."""
        future = await self._enqueue(op, posted=False)
        return await future

    async def post(self, op: WriteOp) -> None:
        """Queue ``op`` to commit with the next batch, without waiting for the commit.

        Waits only while the queue is full. Raises StoreError if the writer is
        not running; a failure after that is logged (``settled`` still returns).
        """
        self._last_posted = await self._enqueue(op, posted=True)

    async def settled(self) -> None:
        """Wait until every op posted so far has been committed (or has failed)."""
        last = self._last_posted
        if last is not None and not last.done():
            # The queue is FIFO: when the last posted op is through, all before it are.
            await asyncio.shield(last)

    async def _enqueue(self, op: WriteOp, *, posted: bool) -> asyncio.Future[Any]:
        if not self.running:
            raise StoreError(f"the store is closed; cannot perform {op.describe()}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = _Pending(op, future, posted)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            await self._queue.put(pending)  # waits while the queue is full
            if self._task is None or self._task.done():
                self._fail_leftovers()  # the writer stopped while we waited for room
        return future

    async def close(self) -> None:
        """Commit everything queued so far, then stop."""
        if self._task is None:
            return
        if not self._closing:
            self._closing = True
            if not self._task.done():
                await self._queue.put(None)
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise  # our caller is being cancelled, not the writer

    async def _run(self) -> None:
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                self._in_flight = batch
                await self._commit(batch)
                self._in_flight = []
                if stop:
                    return
        finally:
            self._fail_leftovers()

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await self._transaction([pending.op for pending in batch])
        except Exception as exc:
            self.stats.failed_batches += 1
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            # Replay one op per transaction so only the bad ones fail.
            for pending in batch:
                try:
                    (result,) = await self._transaction([pending.op])
                except Exception as single_exc:
                    _fail(pending, single_exc)
                else:
                    _resolve(pending, result)
            return
        for pending, result in zip(batch, results, strict=True):
            _resolve(pending, result)

    async def _transaction(self, ops: list[WriteOp]) -> list[Any]:
        results: list[Any] = []
        steps: list[Step] = [_begin]
        try:
            for kind, grouped in itertools.groupby(ops, key=lambda op: type(op)):
                group = list(grouped)
                offset = len(results)
                results.extend([None] * len(group))
                steps.append(_applying(kind, group, results, offset))
                hooks = [(i, hook) for i, op in enumerate(group) if (hook := op.hook()) is not None]
                if hooks:
                    await self._in_thread(steps)
                    steps = []
                    for i, hook in hooks:
                        value = await hook(self._conn)
                        if kind.hook_result:
                            results[offset + i] = value
            steps.append(_commit)
            await self._in_thread(steps)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self._in_thread([_rollback])
            if self._on_outcome is not None and isinstance(exc, Exception):
                self._on_outcome(exc)
            raise
        if self._on_outcome is not None:
            self._on_outcome(None)
        self.stats.commits += 1
        self.stats.ops += len(ops)
        return results

    async def _in_thread(self, steps: list[Step]) -> None:
        """Run ``steps`` in order on the connection's own thread, in one hop."""
        conn = self._conn

        def run() -> None:
            raw = conn._conn  # the sqlite3 connection, touched only on its own thread
            for step in steps:
                step(raw)

        # aiosqlite runs every call of a connection on one thread, in order;
        # _execute is how its own methods get there, the only way to run
        # several statements in one hop (tests/unit/store/test_sqlite_store.py checks
        # that a transaction costs one).
        execute = cast(Callable[[Callable[[], None]], Any], conn._execute)
        await execute(run)

    def _fail_leftovers(self) -> None:
        leftovers = self._in_flight
        self._in_flight = []
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is not None:
                leftovers.append(item)
        for pending in leftovers:
            _fail(pending, StoreError(f"the store writer stopped before {pending.op.describe()}"))


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _applying(kind: type[WriteOp], group: list[WriteOp], results: list[Any], offset: int) -> Step:
    def step(conn: sqlite3.Connection) -> None:
        results[offset : offset + len(group)] = kind.apply_many(conn, group)

    return step


def _resolve(pending: _Pending, result: Any) -> None:
    if not pending.future.done():  # the caller may have been cancelled meanwhile
        pending.future.set_result(result)


def _fail(pending: _Pending, exc: Exception) -> None:
    if pending.future.done():
        return
    error = exc if isinstance(exc, StoreError) else StoreError(f"{pending.op.describe()}: {exc}")
    if error is not exc:
        error.__cause__ = exc
    if pending.posted:
        # Nobody awaits a posted op: log the failure, and let settled() return.
        _log.warning("a queued store write failed", error=str(error))
        pending.future.set_result(None)
        return
    pending.future.set_exception(error)
