"""The store's one writer: group commit through a single coroutine.

Every write is a :class:`~checkpointd.daemon.store_ops.WriteOp` put on a
bounded queue. One coroutine takes everything waiting (up to ``max_batch``
ops), applies it in one ``BEGIN IMMEDIATE`` transaction and only then
resolves each caller's future, so an ``await`` that returns means the row is
committed. While one commit is being synced to disk the next callers pile up
in the queue and share the next commit: that sharing is what makes thousands
of runs per second possible with a full fsync per commit.

Consecutive ops of one class are applied together (``WriteOp.apply_many``).

One bad op must not take the others down, nor kill the writer: when a batch
fails it is rolled back and replayed one op per transaction, and only the
ops that fail again get a StoreError.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from checkpointd.daemon.store_ops import WriteOp
from checkpointd.errors import StoreError

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
        self.stats = WriterStats()

    def start(self) -> None:
        """Start the writer coroutine (call inside the running loop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="checkpointd-store-writer"
        )

    @property
    def running(self) -> bool:
        """True while the writer accepts and commits ops."""
        return self._task is not None and not self._task.done() and not self._closing

    async def submit(self, op: WriteOp) -> Any:
        """Queue ``op`` and wait until it is committed; its result, or StoreError."""
        if not self.running:
            raise StoreError(f"the store is closed; cannot perform {op.describe()}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(op, future))  # waits while the queue is full
        if self._task is None or self._task.done():
            self._fail_leftovers()  # the writer stopped while we waited for room
        return await future

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
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            results: list[Any] = []
            for kind, group in itertools.groupby(ops, key=lambda op: type(op)):
                results.extend(await kind.apply_many(conn, list(group)))
            await conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            if self._on_outcome is not None and isinstance(exc, Exception):
                self._on_outcome(exc)
            raise
        if self._on_outcome is not None:
            self._on_outcome(None)
        self.stats.commits += 1
        self.stats.ops += len(ops)
        return results

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
            if not pending.future.done():
                pending.future.set_exception(
                    StoreError(f"the store writer stopped before {pending.op.describe()}")
                )


def _resolve(pending: _Pending, result: Any) -> None:
    if not pending.future.done():  # the caller may have been cancelled meanwhile
        pending.future.set_result(result)


def _fail(pending: _Pending, exc: Exception) -> None:
    if pending.future.done():
        return
    error = exc if isinstance(exc, StoreError) else StoreError(f"{pending.op.describe()}: {exc}")
    if error is not exc:
        error.__cause__ = exc
    pending.future.set_exception(error)
