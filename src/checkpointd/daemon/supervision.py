"""The daemon's long-lived tasks, all children of the one ``asyncio.TaskGroup`` of ``serve()``.

As in hypercorn, every long-lived task the daemon starts (the action dispatcher, the
loop-lag monitor, retention, the systemd watchdog, the config watcher, the watch on the
store and the runner, a SIGHUP reload, the shutdown trigger) is a child of one TaskGroup:
none outlives ``serve()`` and none ends unseen. Unlike hypercorn's, a child never raises
into the group. An error there would cancel every sibling at once, the action dispatcher
and the drain with them, where the daemon must stop in its fixed order (uvicorn style). So
each child is wrapped:

- a *critical* task that ends, by raising or by returning, is reported to ``on_death``
  (the daemon logs it and stops with exit code 1) and named by :attr:`dead`;
- any other task that raises is logged, never dropped silently.

Per-run tasks are not here: the pool bounds and owns them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

__all__ = ["TaskSupervisor"]

log = structlog.get_logger("checkpointd.daemon")

OnDeath = Callable[[str, str], None]
"""Called with the name of a critical task that ended and how (``repr`` of its error, or
``"returned"``)."""


class TaskSupervisor:
    """Starts the daemon's long-lived tasks in ``group`` and watches how they end."""

    def __init__(self, group: asyncio.TaskGroup, *, on_death: OnDeath) -> None:
        self._group = group
        self._on_death = on_death
        self._running: set[asyncio.Task[None]] = set()
        self._critical: set[asyncio.Task[None]] = set()
        self._dead: str | None = None
        self._closing = False

    @property
    def dead(self) -> str | None:
        """The name of the first critical task that ended (None while they all run)."""
        return self._dead

    @property
    def closed(self) -> bool:
        """True once :meth:`close` began: no task starts any more."""
        return self._closing

    def __len__(self) -> int:
        return len(self._running)

    def spawn(
        self, coro: Coroutine[Any, Any, object], name: str, *, critical: bool = False
    ) -> asyncio.Task[None]:
        """Run ``coro`` as a child of the group; ``critical``: it must run until shutdown."""
        if self._closing:
            coro.close()
            raise RuntimeError(f"the daemon is shutting down: task {name!r} not started")
        task = self._group.create_task(self._supervise(coro, name), name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        # A task cancelled before its first step never awaits ``coro``: close it, or Python
        # warns about a coroutine never awaited (a no-op for one that ran).
        task.add_done_callback(lambda _: coro.close())
        if critical:
            self._critical.add(task)
        return task

    def release(self, task: asyncio.Task[None]) -> None:
        """From now on ``task`` may end: its end is no failure (the config watcher turned off)."""
        self._critical.discard(task)

    async def close(self) -> None:
        """Shutdown: cancel every task still running and wait for them all."""
        self._closing = True
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _supervise(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        try:
            await coro
        except Exception as exc:
            if self._is_critical():
                self._ended(name, repr(exc))
            else:
                log.error("background task failed", task=name, error=repr(exc))
            return
        if self._is_critical():
            self._ended(name, "returned")

    def _is_critical(self) -> bool:
        return asyncio.current_task() in self._critical and not self._closing

    def _ended(self, name: str, how: str) -> None:
        if self._dead is None:
            self._dead = name
        self._on_death(name, how)
