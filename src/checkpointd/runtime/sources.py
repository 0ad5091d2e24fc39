"""The trigger sources of one runner: a task each, started and stopped without losing an event.

Each source runs ``source.run(emit)`` in a task of its own. Stopping has two steps, as the
runner's shutdown needs them: :meth:`SourceTasks.stop_idle` cancels every source that is
not handing over an event (and then calls ``stop()`` of those that have one), so no new
event comes in; a source inside ``emit`` is left to finish that handover — its event is
journaled and queued, or refused, never half taken — and :meth:`SourceTasks.wait_busy`
gives those up to the grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from checkpointd.errors import RunnerError
from checkpointd.events import TriggerEvent
from checkpointd.logs import get_logger
from checkpointd.protocols import Emit, ManagedSource, TriggerSource

__all__ = ["SourceTasks"]

_log = get_logger(component="runner")

Submit = Callable[[str, TriggerEvent], Awaitable[bool]]
"""Journal and queue an event for the checkpoint of the given name (``submit_event``)."""


class SourceTasks:
    """One task per trigger source, each emitting for its own checkpoint."""

    def __init__(self, submit: Submit, *, on_crash: Callable[[str], None]) -> None:
        self._submit = submit
        self._on_crash = on_crash
        self._sources: list[tuple[str, TriggerSource]] = []
        self._started: list[ManagedSource] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        self._stopping = False

    def add(self, checkpoint: str, source: TriggerSource) -> None:
        """Run ``source`` for ``checkpoint`` from :meth:`start` on."""
        self._sources.append((checkpoint, source))

    async def start(self) -> None:
        """``start()`` each source that has one, then run them all.

        Raises RunnerError naming the source whose ``start()`` failed; the sources
        started before it are left for :meth:`stop_idle` to stop.
        """
        for checkpoint, source in self._sources:
            if isinstance(source, ManagedSource):
                try:
                    await source.start()
                except Exception as exc:
                    raise RunnerError(
                        f"trigger {source.name!r} of {checkpoint!r} failed to start: {exc!r}"
                    ) from exc
                self._started.append(source)
        for checkpoint, source in self._sources:
            task = asyncio.create_task(
                source.run(self._emitter(checkpoint)), name=f"poll:{source.name}"
            )
            self._tasks.add(task)
            self._idle.add(task)
            task.add_done_callback(self._done)

    async def stop_idle(self) -> None:
        """No new events: cancel the sources not handing one over; ``stop()`` the started."""
        self._stopping = True
        idle = list(self._idle)
        for task in idle:
            task.cancel()
        if idle:
            await asyncio.wait(idle)
        for source in self._started:
            try:
                await source.stop()
            except Exception as exc:
                _log.error("trigger failed to stop", trigger=source.name, error=repr(exc))

    async def wait_busy(self, grace: float) -> None:
        """Let sources still inside ``emit`` finish for ``grace`` s, then cancel them."""
        busy = [task for task in self._tasks if not task.done()]
        if busy:  # only sources stuck in a journal write can still be here
            _done, stuck = await asyncio.wait(busy, timeout=grace)
            for task in stuck:
                task.cancel()

    def _emitter(self, checkpoint: str) -> Emit:
        async def emit(event: TriggerEvent) -> bool:
            me = asyncio.current_task()
            assert me is not None
            self._idle.discard(me)
            try:
                return await self._submit(checkpoint, event)
            finally:
                if self._stopping:
                    me.cancel()  # handed over; the source ends at its next wait
                else:
                    self._idle.add(me)

        return emit

    def _done(self, task: asyncio.Task[None]) -> None:
        self._idle.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._on_crash(f"trigger poller {task.get_name()!r} crashed: {task.exception()!r}")
