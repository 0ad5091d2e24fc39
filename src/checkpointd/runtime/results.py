"""From the runner's bounded result queue to the sink, the journal and iterators.

With a sink or a journal, one consumer task drains the queue in batches (one
``get``, then whatever else is already there, up to ``batch_size``) and hands
each batch to ``journal.save_results`` and then ``sink.handle``. Journal
first: the result, and whatever the journal writes in the same transaction
(the daemon's action outbox), is durable before anything else happens, so a
crash between the two loses nothing that matters; the sink only does work
that may be skipped (metrics, logs, moving a finished file). Each iterator
(``iter_results_async``) then gets its own bounded queue fed by the consumer:
a slow iterator slows the consumer, which slows the runs, and nothing is
dropped.

Without sink and journal, iterators read the result queue itself, and results
wait there for them: once ``result_queue_size`` results are waiting, further
runs wait too. Several iterators then share the results between them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

from checkpointd.asyncutils import backoff_delay
from checkpointd.checkpoints.result import CheckpointResult
from checkpointd.logs import get_logger
from checkpointd.protocols import ResultSink, RunJournal
from checkpointd.runtime.contained import ResultItem

__all__ = ["ResultFeed", "ResultRouter", "ResultStream"]

_log = get_logger(component="results")


class ResultFeed:
    """What one reader reads: a queue, spill-over results, and whether more can come.

    ``None`` in the queue is never a result; it wakes a waiting reader so it
    can see that the feed was closed.
    """

    def __init__(
        self, queue: asyncio.Queue[ResultItem | None], extra: deque[ResultItem] | None = None
    ) -> None:
        self.queue = queue
        self.extra = extra
        self.closed = False
        self._waiting = 0

    async def next(self, limit: float | None) -> ResultItem | None:
        """The next result; None once closed and empty, or after ``limit`` seconds without one."""
        queue = self.queue
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                if self.extra:
                    return self.extra.popleft()
                if self.closed:
                    return None
                self._waiting += 1
                try:
                    async with asyncio.timeout(limit):
                        item = await queue.get()
                except TimeoutError:
                    return None
                finally:
                    self._waiting -= 1
            if item is not None:
                return item

    def close(self) -> None:
        """No more results will be added: readers end once they have read what is left."""
        self.closed = True
        for _ in range(self._waiting):
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:  # then the readers have results to read first
                break

    def abandon(self) -> None:
        """The reader is gone: drop what it did not read, so a writer waiting for room moves on."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()


class ResultStream:
    """The async iterator ``iter_results_async`` returns (also an async context manager).

    It ends when the runner has stopped and every result it could see has
    been read, or after ``timeout`` seconds without a result. Leaving
    ``async with`` (or dropping the stream) unsubscribes it, so a stream that
    is no longer read cannot hold the runner up.
    """

    def __init__(
        self, feed: ResultFeed, timeout: float | None, release: Callable[[], object] | None
    ) -> None:
        self._feed = feed
        self._timeout = timeout
        self._release = release
        self._done = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> CheckpointResult:
        if self._done:
            raise StopAsyncIteration
        item = await self._feed.next(self._timeout)
        if item is None:
            await self.aclose()
            raise StopAsyncIteration
        return item[0]

    def release_with(self, release: Callable[[], object]) -> None:
        """Call ``release`` when the stream closes (the router's weakref finalizer: it must be
        made after the stream, whose collection it also watches)."""
        self._release = release

    async def aclose(self) -> None:
        """Stop reading; results this stream did not read stay with the sink and journal."""
        self._done = True
        if self._release is not None:
            self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ResultRouter:
    """Moves results from ``queue`` to the sink, the journal and subscribed streams."""

    def __init__(
        self,
        queue: asyncio.Queue[ResultItem | None],
        overflow: deque[ResultItem],
        *,
        sink: ResultSink | None,
        journal: RunJournal | None,
        subscriber_size: int,
        batch_size: int = 256,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._queue = queue
        self._overflow = overflow
        self._sink = sink
        self._journal = journal
        self._subscriber_size = subscriber_size
        self._batch_size = batch_size
        self._on_crash = on_crash
        self._main_feed = ResultFeed(queue, overflow)
        self._subscribers: set[ResultFeed] = set()
        self._task: asyncio.Task[None] | None = None
        self._in_hand = 0
        self._finished = False
        self.delivered = 0
        self.delivery_errors = 0
        self.undelivered = 0

    @property
    def has_consumer(self) -> bool:
        return self._sink is not None or self._journal is not None

    def start(self) -> None:
        if self.has_consumer:
            self._task = asyncio.create_task(self._consume(), name="checkpointd-result-consumer")
            self._task.add_done_callback(self._watch)

    def stream(self, timeout: float | None) -> ResultStream:
        """A new stream of results (see :class:`ResultStream`)."""
        if not self.has_consumer:
            return ResultStream(self._main_feed, timeout, None)
        feed = ResultFeed(asyncio.Queue(maxsize=self._subscriber_size))
        if self._finished:
            feed.close()
            return ResultStream(feed, timeout, None)
        self._subscribers.add(feed)
        stream = ResultStream(feed, timeout, None)
        stream.release_with(weakref.finalize(stream, self._unsubscribe, feed))
        return stream

    async def finish(self, budget: float) -> None:
        """After the last producer is done: deliver what is queued, then close every stream.

        Gives up after ``budget`` seconds (a sink that keeps failing); what
        was not delivered is counted in ``undelivered`` and its journal rows
        stay open, so a restart recovers those runs.
        """
        task = self._task
        if task is not None:
            if not task.done():
                try:
                    async with asyncio.timeout(budget):
                        await self._queue.put(None)
                        await asyncio.wait([task])
                except TimeoutError:
                    task.cancel()
                    await asyncio.wait([task])
            # Zero after a clean finish; otherwise what a hung or crashed
            # consumer left behind.
            self.undelivered = self._in_hand + len(self._overflow)
            while not self._queue.empty():
                if self._queue.get_nowait() is not None:
                    self.undelivered += 1
            if self.undelivered:
                _log.error(
                    "results not delivered to the sink/journal before shutdown; "
                    "their runs are recovered on the next start",
                    undelivered=self.undelivered,
                    budget_seconds=budget,
                )
        self._finished = True
        for feed in self._subscribers:
            feed.close()
        self._main_feed.close()

    def _unsubscribe(self, feed: ResultFeed) -> None:
        self._subscribers.discard(feed)
        feed.abandon()

    def _watch(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            _log.error("result consumer crashed", error=repr(exc))
            if self._on_crash is not None:
                self._on_crash(exc)

    async def _consume(self) -> None:
        queue = self._queue
        size = self._batch_size
        ended = False
        while not ended:
            first = await queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < size and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    ended = True
                    break
                batch.append(item)
            await self._deliver(batch)
        # Spill-over from shutdown (cancelled runs that found the queue full).
        while self._overflow:
            count = min(size, len(self._overflow))
            await self._deliver([self._overflow.popleft() for _ in range(count)])

    async def _deliver(self, batch: list[ResultItem]) -> None:
        self._in_hand = len(batch)
        # Journal first: once a result is durable (with anything the journal writes in the
        # same transaction, such as action deliveries) nothing is lost if the process dies
        # before the sink sees it; the sink only does what may be skipped or redone.
        if self._journal is not None:
            await self._retrying("journal", self._journal.save_results, batch)
        if self._sink is not None:
            await self._retrying("sink", self._sink.handle, batch)
        self.delivered += len(batch)
        self._in_hand = 0
        for feed in tuple(self._subscribers):
            for item in batch:
                if feed.closed:
                    break
                await feed.queue.put(item)

    async def _retrying(
        self,
        where: str,
        call: Callable[[Sequence[ResultItem]], Awaitable[None]],
        batch: list[ResultItem],
    ) -> None:
        # Never drop: a failing sink is retried with backoff while the bounded
        # queue behind it fills up and slows the runs down.
        attempt = 0
        while True:
            try:
                await call(batch)
                return
            except Exception as exc:
                attempt += 1
                self.delivery_errors += 1
                wait = backoff_delay(attempt, 0.1, 2.0, max_delay=30.0, jitter=True)
                _log.error(
                    f"could not hand results to the {where}; retrying",
                    results=len(batch),
                    attempt=attempt,
                    retry_in_seconds=round(wait, 3),
                    error=repr(exc),
                )
                await asyncio.sleep(wait)
