"""CheckpointPool: a fixed set of workers that run checkpoints, with bounded waiting.

Import it from ``checkpointd.runtime.parallel``.

::

    submit()/enqueue() ──▶ backlog ──▶ `workers` worker tasks ──▶ result_queue
     wait when full      (queue_size)   run_checkpoint_async      put() waits when full

Work held by the pool is bounded twice: at most ``workers`` runs execute and
at most ``queue_size`` wait in the backlog. ``submit`` itself waits for room,
so overload shows as callers waiting (the backpressure a trigger feels), never
as a growing pile of tasks: the pool owns one long-lived task per worker and
none per run. A worker keeps its slot until its result is in
``result_queue``, so a full result queue stalls the pool, and a full pool
stalls submitters.

Every submitted run ends with exactly one result: its own, ``timeout`` (the
pool's ``timeout``), ``error`` (the run broke its never-raise contract) or
``cancelled`` (the pool was cancelled before the run finished or started).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, Self

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.errors import RunnerError
from checkpointd.events import TriggerEvent
from checkpointd.logs import get_logger
from checkpointd.protocols import RunnableCheckpoint
from checkpointd.runtime.contained import ResultItem, outcome_result, run_contained

__all__ = ["CheckpointPool", "ResultQueue"]

_log = get_logger(component="pool")

_Job = tuple[RunnableCheckpoint, TriggerEvent | None, "asyncio.Future[CheckpointResult] | None"]
OnResult = Callable[[CheckpointResult], Any]
BeforeRun = Callable[[RunnableCheckpoint, TriggerEvent | None], Awaitable[None]]
Overflow = Callable[[ResultItem], None]

_NEW, _OPEN, _CLOSING, _CLOSED = "new", "open", "closing", "closed"


class ResultQueue(Protocol):
    """Where the pool puts ``(result, event)`` pairs; an ``asyncio.Queue`` fits."""

    def full(self) -> bool: ...

    def put_nowait(self, item: ResultItem, /) -> None: ...

    async def put(self, item: ResultItem, /) -> None: ...


class CheckpointPool:
    """Runs checkpoints on ``workers`` worker tasks with a backlog of ``queue_size``.

    Use it as ``async with CheckpointPool(4) as pool:``; leaving the block
    waits for every submitted run, or, when the block raised or was
    cancelled, cancels them. Results go to the futures ``submit`` returns and,
    when given, to ``result_queue`` as ``(result, event)`` pairs. ``timeout``
    bounds each run; ``semaphore`` is held around each run (share one to cap
    runs across pools); ``on_result`` is called with every result (an
    awaitable it returns is awaited); ``before_run`` is awaited before each run.
    """

    def __init__(
        self,
        workers: int,
        *,
        queue_size: int | None = None,
        result_queue: ResultQueue | None = None,
        timeout: float | None = None,
        semaphore: asyncio.Semaphore | None = None,
        on_result: OnResult | None = None,
        before_run: BeforeRun | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, found {workers}")
        if queue_size is not None and queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, found {queue_size}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds or None, found {timeout}")
        self.workers = workers
        self.queue_size = workers if queue_size is None else queue_size
        self._backlog: asyncio.Queue[_Job] = asyncio.Queue(maxsize=self.queue_size)
        self._result_queue = result_queue
        self._timeout = timeout
        self._semaphore = semaphore
        self._on_result = on_result
        self._before_run = before_run
        self._clock = clock
        self._state = _NEW
        self._tasks: list[asyncio.Task[None]] = []
        self._parked: set[asyncio.Task[None]] = set()
        """Workers waiting for a job (cancelling one of those loses nothing)."""
        self._idle = asyncio.Event()
        self._overflow: Overflow | None = None
        self._halted = False
        # Jobs between admission and delivery, including submitters still
        # waiting for backlog room: join() is done when this reaches zero.
        self._outstanding = 0
        self._waiting = 0
        #: Counters, read by the runner's stats.
        self.submitted = 0
        self.completed = 0
        self.running = 0
        self.submit_wait_seconds = 0.0
        self.deliver_wait_seconds = 0.0

    # ------------------------------------------------------------ life cycle

    @property
    def backlog(self) -> int:
        """Runs admitted but not started."""
        return self._backlog.qsize()

    @property
    def waiting_submitters(self) -> int:
        """Callers of submit/enqueue waiting for backlog room."""
        return self._waiting

    async def start(self) -> None:
        """Start the workers (``async with`` does this)."""
        if self._state != _NEW:
            raise RunnerError(f"the pool was already started (it is {self._state})")
        self._tasks = [self._spawn_worker(n) for n in range(self.workers)]
        self._state = _OPEN

    def resize(self, workers: int) -> None:
        """Run at most ``workers`` checkpoints at once from now on (a config reload).

        Growing starts the new workers at once. Shrinking stops idle workers at once and
        lets busy ones finish their run first: no run is interrupted or lost, and the
        pool is at its new size as soon as enough runs have ended. The backlog keeps
        its size.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, found {workers}")
        self.workers = workers
        if self._state != _OPEN:
            return  # start() starts self.workers; a closing pool only winds down
        while len(self._tasks) < workers:
            self._tasks.append(self._spawn_worker(len(self._tasks)))
        for task in list(self._parked):
            if len(self._tasks) <= workers:
                break
            self._retire(task)
            task.cancel()
        # Busy surplus workers retire themselves when their run has ended (see _work).

    def _spawn_worker(self, n: int) -> asyncio.Task[None]:
        return asyncio.create_task(self._work(), name=f"checkpointd-pool-worker-{n}")

    def _retire(self, task: asyncio.Task[None]) -> None:
        self._tasks.remove(task)
        self._parked.discard(task)

    def close(self) -> None:
        """Refuse new work; admitted work (and callers already waiting for room) continue."""
        if self._state in (_NEW, _OPEN):
            self._state = _CLOSING
        self._check_idle()

    async def join(self) -> None:
        """Close, wait until every admitted run has delivered its result, stop the workers."""
        self.close()
        if self._outstanding:
            await self._idle.wait()
        await self._stop_workers()

    def halt(self) -> None:
        """Start no more runs: every admitted run not yet started ends ``cancelled``
        instead (running ones go on; :meth:`cancel` stops those too)."""
        self._halted = True

    async def cancel(self, overflow: Overflow | None = None) -> None:
        """Close and cancel everything: running and waiting runs end as ``cancelled``.

        Cancelled results are put into ``result_queue`` without waiting when
        there is room; otherwise they are handed to ``overflow`` when given
        (so a stalled consumer cannot hang shutdown), else waited for.
        """
        self.close()
        self._overflow = overflow
        if self._tasks:
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks)
        # Jobs that never started: the backlog, and submitters still waiting
        # for room (each take frees room, which lets one of them in).
        while True:
            while not self._backlog.empty():
                checkpoint, event, future = self._backlog.get_nowait()
                now = self._clock.now()
                result = outcome_result(
                    checkpoint.name,
                    event,
                    Status.CANCELLED,
                    now,
                    now,
                    "cancelled before it started",
                )
                try:
                    await self._complete(result, event, future, cancelled=True)
                finally:
                    self._job_done()
            if not self._waiting:
                break
            await asyncio.sleep(0)
        self._state = _CLOSED

    async def shutdown(self, grace: float | None, overflow: Overflow | None = None) -> bool:
        """Join within ``grace`` seconds, then cancel what is left; True if none was cancelled."""
        self.close()
        try:
            async with asyncio.timeout(grace):
                await self.join()
        except TimeoutError:
            await self.cancel(overflow)
            return False
        return True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.join()
        else:
            await self.cancel()

    # ------------------------------------------------------------ submitting

    async def submit(
        self, checkpoint: RunnableCheckpoint, event: TriggerEvent | None = None
    ) -> asyncio.Future[CheckpointResult]:
        """Admit one run, waiting while the pool is full; await the returned future for its result.

        Cancelling the future does not stop the run (it belongs to the pool
        once admitted); cancel the pool for that.
        """
        future: asyncio.Future[CheckpointResult] = asyncio.get_running_loop().create_future()
        job = (checkpoint, event, future)
        if not self._admit_nowait(job):
            await self._admit_waiting(job)
        return future

    async def enqueue(
        self, checkpoint: RunnableCheckpoint, event: TriggerEvent | None = None
    ) -> None:
        """Like :meth:`submit`, for callers that read results from ``result_queue`` only."""
        job = (checkpoint, event, None)
        if not self._admit_nowait(job):  # the common case costs no extra coroutine
            await self._admit_waiting(job)

    async def run(
        self, checkpoint: RunnableCheckpoint, event: TriggerEvent | None = None
    ) -> CheckpointResult:
        """Submit one run and wait for its result."""
        return await (await self.submit(checkpoint, event))

    async def submit_many(
        self, checkpoints: Iterable[RunnableCheckpoint], event: TriggerEvent | None = None
    ) -> list[CheckpointResult]:
        """Submit every checkpoint (waiting for room as needed); results in input order."""
        futures = [await self.submit(checkpoint, event) for checkpoint in checkpoints]
        return [await future for future in futures]

    def _admit_nowait(self, job: _Job) -> bool:
        """Admit ``job`` if the backlog has room; False when the caller must wait."""
        if self._state != _OPEN:
            if self._state == _NEW:
                raise RunnerError(
                    "the pool is not started: use `async with pool` or `pool.start()`"
                )
            raise RunnerError("the pool is closed and takes no new runs")
        backlog = self._backlog
        if backlog.full():
            return False
        backlog.put_nowait(job)
        self._outstanding += 1
        self.submitted += 1
        return True

    async def _admit_waiting(self, job: _Job) -> None:
        # A waiting submitter counts as outstanding work, so join() waits
        # for it and cancel() turns it into a cancelled result.
        self._outstanding += 1
        self._waiting += 1
        waited_from = self._clock.monotonic()
        try:
            await self._backlog.put(job)
        except BaseException:
            self._job_done()
            raise
        finally:
            self._waiting -= 1
            self.submit_wait_seconds += self._clock.monotonic() - waited_from
        self.submitted += 1

    # ------------------------------------------------------------ working

    async def _work(self) -> None:
        get = self._backlog.get
        me = asyncio.current_task()
        assert me is not None
        parked = self._parked
        while True:
            if len(self._tasks) > self.workers and me in self._tasks:
                self._retire(me)  # the pool was made smaller while this worker ran
                return
            parked.add(me)
            try:
                checkpoint, event, future = await get()
            finally:
                parked.discard(me)
            try:
                await self._process(checkpoint, event, future)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not shrink the pool silently
                _log.exception("pool worker failed", checkpoint=checkpoint.name)
                if future is not None and not future.done():
                    now = self._clock.now()
                    future.set_result(
                        outcome_result(
                            checkpoint.name, event, Status.ERROR, now, now, "internal pool error"
                        )
                    )
            finally:
                self._job_done()

    async def _process(
        self,
        checkpoint: RunnableCheckpoint,
        event: TriggerEvent | None,
        future: asyncio.Future[CheckpointResult] | None,
    ) -> None:
        started = self._clock.now()
        if self._halted:
            result = outcome_result(
                checkpoint.name,
                event,
                Status.CANCELLED,
                started,
                started,
                "cancelled before it started",
            )
            await self._complete(result, event, future, cancelled=True)
            return
        self.running += 1
        try:
            if self._before_run is not None:
                await self._call_before_run(checkpoint, event)
            if self._semaphore is None:
                result = await run_contained(checkpoint, event, self._timeout, started, self._clock)
            else:
                async with self._semaphore:
                    result = await run_contained(
                        checkpoint, event, self._timeout, started, self._clock
                    )
        except asyncio.CancelledError:
            # Record, deliver, then re-raise: nothing in flight is lost.
            self.running -= 1
            cancelled = outcome_result(
                checkpoint.name,
                event,
                Status.CANCELLED,
                started,
                self._clock.now(),
                "cancelled while running: the pool was shut down",
            )
            await self._complete(cancelled, event, future, cancelled=True)
            raise
        self.running -= 1
        await self._complete(result, event, future)

    async def _call_before_run(
        self, checkpoint: RunnableCheckpoint, event: TriggerEvent | None
    ) -> None:
        assert self._before_run is not None
        try:
            await self._before_run(checkpoint, event)
        except Exception:  # bookkeeping must not stop the run itself
            _log.exception("before_run hook failed", checkpoint=checkpoint.name)

    async def _complete(
        self,
        result: CheckpointResult,
        event: TriggerEvent | None,
        future: asyncio.Future[CheckpointResult] | None,
        *,
        cancelled: bool = False,
    ) -> None:
        self.completed += 1
        if future is not None and not future.done():
            future.set_result(result)
        item: ResultItem = (result, event)
        delivered = False
        try:
            if self._on_result is not None:
                await self._call_on_result(result)
            queue = self._result_queue
            if queue is None:
                delivered = True
            elif cancelled:
                await self._deliver_without_waiting(item)
                delivered = True
            elif not queue.full():
                queue.put_nowait(item)
                delivered = True
            else:
                waited_from = self._clock.monotonic()
                try:
                    await queue.put(item)
                    delivered = True
                finally:
                    self.deliver_wait_seconds += self._clock.monotonic() - waited_from
        except asyncio.CancelledError:
            if not delivered:
                await self._deliver_without_waiting(item)
            raise

    async def _call_on_result(self, result: CheckpointResult) -> None:
        assert self._on_result is not None
        try:
            outcome = self._on_result(result)
            if outcome is not None and inspect.isawaitable(outcome):
                await outcome
        except Exception:
            _log.exception("on_result hook failed", checkpoint=result.checkpoint)

    async def _deliver_without_waiting(self, item: ResultItem) -> None:
        queue = self._result_queue
        if queue is None:
            return
        if not queue.full():
            queue.put_nowait(item)
        elif self._overflow is not None:
            self._overflow(item)
        else:
            await queue.put(item)

    def _job_done(self) -> None:
        self._outstanding -= 1
        self._check_idle()

    def _check_idle(self) -> None:
        if self._state != _OPEN and not self._outstanding:
            self._idle.set()

    async def _stop_workers(self) -> None:
        # Only called with nothing outstanding: every worker is parked on get().
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._state = _CLOSED
