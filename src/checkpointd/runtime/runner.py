"""AsyncCheckpointRunner: events in, bounded runs, every result out.

::

    triggers (polled) ─┐
    submit_event() ────┼─▶ journal_accept ─▶ CheckpointPool ─▶ result queue ─▶ journal, sink,
    run_once_async() ──┘                     (bounded twice)   (bounded)       iterators

The runner owns one pool, one bounded result queue, one polling task per
trigger and (with a sink or journal) one result consumer. Every bound
pushes back on the stage before it: a full result queue stalls the pool, a
full pool stalls submitters, so overload shows as lag, never as memory.

Life cycle: ``start_async()`` (or ``async with runner``) → running →
``stop_async()``, which stops the triggers, lets admitted runs finish for up
to ``graceful_shutdown_timeout``, cancels the rest (each still produces a
``cancelled`` result), then delivers every result to the sink and journal
(again for up to ``graceful_shutdown_timeout``). The runner also stops by
itself on ``stop_on_error`` or ``max_consecutive_failures``; ``stop_reason``
says why. A stopped runner cannot be restarted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Self

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.errors import RunnerError
from checkpointd.events import TriggerEvent
from checkpointd.logs import get_logger
from checkpointd.protocols import ResultSink, RunJournal, RunnableCheckpoint, TriggerSource
from checkpointd.runtime.config import AsyncRunnerConfig
from checkpointd.runtime.contained import ResultItem, outcome_result
from checkpointd.runtime.parallel import CheckpointPool
from checkpointd.runtime.results import ResultRouter, ResultStream
from checkpointd.runtime.sources import SourceTasks
from checkpointd.runtime.stats import RunnerStats
from checkpointd.triggers.base import AsyncTrigger
from checkpointd.triggers.polled import PolledSource

__all__ = ["AsyncCheckpointRunner", "AsyncRunnerConfig", "RunnerStats"]

_log = get_logger(component="runner")

_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"
_STOP_CALLED = "stop_async() was called"
_FAILED = frozenset({Status.FAILURE, Status.ERROR, Status.TIMEOUT})


class AsyncCheckpointRunner:
    """Runs checkpoints on trigger events and on request, and hands every result on.

    Results go to ``journal.save_results`` then ``sink.handle`` in batches,
    and to every ``iter_results_async`` stream. Without sink and journal,
    results wait in the queue for ``iter_results_async``: up to
    ``result_queue_size`` of them, after which runs wait until they are read.
    """

    def __init__(
        self,
        checkpoints: Iterable[RunnableCheckpoint] = (),
        config: AsyncRunnerConfig | None = None,
        *,
        triggers: Mapping[str, Sequence[AsyncTrigger | TriggerSource]] | None = None,
        journal: RunJournal | None = None,
        sink: ResultSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config or AsyncRunnerConfig()
        self._checkpoints: dict[str, RunnableCheckpoint] = {}
        for checkpoint in checkpoints:
            if checkpoint.name in self._checkpoints:
                raise ValueError(f"two checkpoints are named {checkpoint.name!r}")
            self._checkpoints[checkpoint.name] = checkpoint
        self._journal = journal
        self._clock = clock
        self._state = _NEW
        self._sources = SourceTasks(self.submit_event, on_crash=self._request_stop)
        for name, listed in (triggers or {}).items():
            for trigger in listed:
                self.add_trigger(name, trigger)
        self._stop_reason: str | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopping = asyncio.Event()
        self._queue: asyncio.Queue[ResultItem | None] = asyncio.Queue(
            maxsize=self.config.result_queue_size
        )
        self._overflow: deque[ResultItem] = deque()
        self._pool = CheckpointPool(
            self.config.max_concurrent_checkpoints,
            result_queue=self._queue,
            on_result=self._on_result,
            before_run=self._mark_running if journal is not None else None,
            clock=clock,
        )
        self._router = ResultRouter(
            self._queue,
            self._overflow,
            sink=sink,
            journal=journal,
            subscriber_size=self.config.result_queue_size,
            on_crash=lambda exc: self._request_stop(f"the result consumer crashed: {exc!r}"),
        )
        self._by_status: Counter[Status] = Counter()
        self._consecutive_failures = 0
        self._duplicates = 0
        self._trigger_errors = 0
        self._overflowed = 0

    # ------------------------------------------------------------ inspection

    @property
    def checkpoints(self) -> Mapping[str, RunnableCheckpoint]:
        return dict(self._checkpoints)

    @property
    def state(self) -> str:
        """``new``, ``running``, ``stopping`` or ``stopped``."""
        return self._state

    @property
    def stop_reason(self) -> str | None:
        """Why the runner stopped (or is stopping); None while it runs."""
        return self._stop_reason

    @property
    def result_queue(self) -> asyncio.Queue[ResultItem | None]:
        """The bounded queue between the pool and the result consumer (for metrics)."""
        return self._queue

    @property
    def healthy(self) -> bool:
        """False once the runner stopped by itself (crashed consumer or poller)."""
        return self._state in (_NEW, _RUNNING, _STOPPING) or self._stop_reason == _STOP_CALLED

    def get_stats(self) -> RunnerStats:
        """A snapshot of counters and gauges (see :class:`RunnerStats`)."""
        pool, router = self._pool, self._router
        return RunnerStats(
            state=self._state,
            started=self._state != _NEW,
            stopped=self._state == _STOPPED,
            stop_reason=self._stop_reason,
            submitted=pool.submitted,
            completed=sum(self._by_status.values()),
            running=pool.running,
            by_status={status.value: n for status, n in self._by_status.items()},
            consecutive_failures=self._consecutive_failures,
            backlog=pool.backlog,
            backlog_capacity=pool.queue_size,
            waiting_submitters=pool.waiting_submitters,
            queue_depth=self._queue.qsize(),
            queue_capacity=self.config.result_queue_size,
            backpressure_wait_seconds=pool.submit_wait_seconds + pool.deliver_wait_seconds,
            duplicates=self._duplicates,
            trigger_errors=self._trigger_errors,
            delivered=router.delivered,
            delivery_errors=router.delivery_errors,
            overflowed=self._overflowed,
            undelivered=router.undelivered,
        )

    def iter_results_async(self, timeout: float | None = None) -> ResultStream:
        """Results as they finish, for ``async for``.

        Ends when the runner has stopped and the results are read, or after
        ``timeout`` seconds without a result. With a sink or journal, a
        stream sees the results finished after it was created; a stream that
        is not read holds the runner up, so leave the loop (or use
        ``async with``) when done.
        """
        return self._router.stream(timeout)

    # ------------------------------------------------------------ life cycle

    def add_trigger(self, name: str, trigger: AsyncTrigger | TriggerSource) -> None:
        """Run checkpoint ``name`` on the events of ``trigger`` (before ``start_async``).

        A polled trigger (``should_trigger_async``) is asked every
        ``trigger_poll_interval``; any other :class:`~checkpointd.protocols.TriggerSource`
        (the daemon's schedule, file and Kafka sources among them) pushes its events.
        """
        if self._state != _NEW:
            raise RunnerError("triggers can only be added before the runner starts")
        self._checkpoint(name)
        if isinstance(trigger, AsyncTrigger):
            trigger = PolledSource(
                trigger,
                interval=self.config.trigger_poll_interval,
                on_error=self._trigger_failed,
            )
        self._sources.add(name, trigger)

    def _trigger_failed(self, what: str, trigger: str, exc: Exception) -> None:
        self._trigger_errors += 1
        _log.error(what, trigger=trigger, error=repr(exc))

    async def start_async(self) -> None:
        """Start the pool, the result consumer, and one polling task per trigger."""
        if self._state != _NEW:
            raise RunnerError(f"the runner is {self._state}; build a new one to start again")
        self._state = _RUNNING
        await self._pool.start()
        self._router.start()
        try:
            await self._sources.start()
        except RunnerError as exc:
            self._stop_reason = str(exc)
            await self.stop_async()
            raise

    async def stop_async(self) -> None:
        """Stop triggers, drain or cancel runs, deliver every result; see the module docs."""
        if self._state == _NEW:
            self._state = _STOPPED
            self._stop_reason = self._stop_reason or _STOP_CALLED
            self._stopping.set()
            self._stopped.set()
            return
        if self._stop_task is None:
            self._stop_reason = self._stop_reason or _STOP_CALLED
            self._stopping.set()
            self._stop_task = asyncio.create_task(self._shutdown(), name="checkpointd-runner-stop")
        # Shielded: a caller giving up on waiting must not abort the shutdown halfway.
        await asyncio.shield(self._stop_task)

    async def wait_stopping(self) -> str:
        """Wait until the runner begins to stop (stop_async, or by itself); returns why."""
        await self._stopping.wait()
        assert self._stop_reason is not None
        return self._stop_reason

    async def wait_stopped(self) -> str:
        """Wait until the runner has stopped (by stop_async or by itself); returns stop_reason."""
        await self._stopped.wait()
        assert self._stop_reason is not None
        return self._stop_reason

    async def __aenter__(self) -> Self:
        await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()

    # ------------------------------------------------------------ running

    def add_checkpoint(self, checkpoint: RunnableCheckpoint) -> None:
        """Add or replace a checkpoint (config reload). Runs already admitted keep the object
        they were submitted with, so in-flight runs finish on the config they started with."""
        self._checkpoints[checkpoint.name] = checkpoint

    def resize(self, max_concurrent_checkpoints: int) -> None:
        """Run at most this many checkpoints at once from now on (a reload changed it).

        Runs in flight are never interrupted: a smaller pool reaches its size as they end.
        """
        self._pool.resize(max_concurrent_checkpoints)
        self.config = dataclasses.replace(
            self.config, max_concurrent_checkpoints=max_concurrent_checkpoints
        )

    def remove_checkpoint(self, name: str) -> None:
        """Stop accepting events for ``name``; its in-flight runs finish."""
        self._checkpoints.pop(name, None)

    def cancel_all(self) -> None:
        """Cut a draining stop short: cancel every run now (a second SIGINT)."""
        if self._state == _STOPPING:
            asyncio.get_running_loop().create_task(self._pool.cancel(self._spill))

    async def resubmit_event(self, name: str, event: TriggerEvent) -> None:
        """Queue a run for an event the journal already holds (recovery after a crash)."""
        checkpoint = self._checkpoint(name)
        self._require_running()
        await self._pool.enqueue(checkpoint, event)

    async def submit_event(self, name: str, event: TriggerEvent) -> bool:
        """Journal ``event`` for checkpoint ``name``, then queue its run (waiting for room).

        Returns False, and runs nothing, when the journal refuses the event's
        key as a duplicate. Only after this returns may a trigger acknowledge
        its source; if the journal raises, the error propagates and the event
        must not be acknowledged. Raises RunnerError when the runner is not
        running. If the runner starts stopping after the event was journaled,
        the event gets a ``cancelled`` result, which closes its journal row.
        """
        checkpoint = self._checkpoint(name)
        self._require_running()
        if self._journal is not None and not await self._journal.journal_accept(event, name):
            self._duplicates += 1
            return False
        try:
            await self._pool.enqueue(checkpoint, event)
        except RunnerError:  # stopping began while the journal was written
            self._cancelled_before_start(name, event)
        return True

    async def run_once_async(
        self, name: str, event: TriggerEvent | None = None
    ) -> CheckpointResult:
        """Run checkpoint ``name`` now (through the pool) and return its result.

        The result also goes to the sink, journal and streams. With a journal,
        an event whose key was already accepted is not run: the answer is a
        ``skipped`` result.
        """
        checkpoint = self._checkpoint(name)
        self._require_running()
        if (
            event is not None
            and self._journal is not None
            and not await self._journal.journal_accept(event, name)
        ):
            self._duplicates += 1
            now = self._clock.now()
            return outcome_result(
                name, event, Status.SKIPPED, now, now,
                f"duplicate event: key {event.key!r} was already accepted",
            )  # fmt: skip
        try:
            future = await self._pool.submit(checkpoint, event)
        except RunnerError:
            if event is None or self._journal is None:
                raise
            return self._cancelled_before_start(name, event)
        return await future

    async def run_all_async(self) -> list[CheckpointResult]:
        """Run every checkpoint once; results in registration order."""
        self._require_running()
        futures = [await self._pool.submit(cp) for cp in self._checkpoints.values()]
        return [await future for future in futures]

    # ------------------------------------------------------------ internals

    def _checkpoint(self, name: str) -> RunnableCheckpoint:
        try:
            return self._checkpoints[name]
        except KeyError:
            known = ", ".join(sorted(self._checkpoints)) or "none"
            raise RunnerError(f"no checkpoint named {name!r} (known: {known})") from None

    def _require_running(self) -> None:
        if self._state != _RUNNING:
            if self._state == _NEW:
                raise RunnerError(
                    "the runner is not started: use `async with runner:` "
                    "or `await runner.start_async()`"
                )
            raise RunnerError(
                f"the runner is {self._state} ({self._stop_reason}); it takes no runs"
            )

    def _on_result(self, result: CheckpointResult) -> None:
        # Called by a pool worker for every result; cheap and synchronous.
        status = result.status
        self._by_status[status] += 1
        if status in _FAILED:
            self._consecutive_failures += 1
        elif status.is_ok:
            self._consecutive_failures = 0
        if self._state != _RUNNING:
            return
        if status is Status.ERROR and self.config.stop_on_error:
            self._request_stop(
                f"stop_on_error: checkpoint {result.checkpoint!r} run {result.run_id} "
                f"ended with error: {result.error}"
            )
        limit = self.config.max_consecutive_failures
        if limit is not None and self._consecutive_failures >= limit:
            self._request_stop(
                f"max_consecutive_failures: {self._consecutive_failures} runs in a row did not "
                f"succeed (last: {result.checkpoint!r} {status.value})"
            )

    def _request_stop(self, reason: str) -> None:
        if self._stop_task is not None or self._state != _RUNNING:
            return
        self._stop_reason = reason
        self._stopping.set()
        _log.warning("runner stopping", reason=reason)
        # A task, not an await: this is called from inside a pool worker,
        # which the shutdown waits for.
        self._stop_task = asyncio.create_task(self._shutdown(), name="checkpointd-runner-stop")

    def _cancelled_before_start(self, name: str, event: TriggerEvent) -> CheckpointResult:
        # The event is journaled, so it must get a result that closes its row.
        now = self._clock.now()
        result = outcome_result(
            name, event, Status.CANCELLED, now, now, "cancelled before it started: runner stopping"
        )
        self._on_result(result)
        self._spill_or_queue((result, event))
        return result

    def _spill_or_queue(self, item: ResultItem) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._spill(item)

    def _spill(self, item: ResultItem) -> None:
        # Shutdown only: bounded by the runs in flight when it began.
        self._overflowed += 1
        self._overflow.append(item)

    async def _mark_running(
        self, checkpoint: RunnableCheckpoint, event: TriggerEvent | None
    ) -> None:
        if event is not None and self._journal is not None:
            await self._journal.journal_mark_running(event, checkpoint.name)

    async def _shutdown(self) -> None:
        self._state = _STOPPING
        grace = self.config.graceful_shutdown_timeout
        # 1. Triggers: no new events. Sources handing over an event finish that.
        await self._sources.stop_idle()
        # 2. Runs: finish within the grace period, then cancel (cancelled results
        #    that find the queue full spill over instead of waiting).
        drained = await self._pool.shutdown(grace, overflow=self._spill)
        if not drained:
            _log.warning("runs cancelled at shutdown", grace_seconds=grace)
        await self._sources.wait_busy(grace)
        # 3. Results: everything queued reaches the sink and journal.
        await self._router.finish(grace)
        self._state = _STOPPED
        self._stopped.set()
