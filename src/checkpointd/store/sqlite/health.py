"""What a failed write says about the store's resources: one bad op, or a store that cannot
write at all (a full disk, a read-only or failing file system), which the store reports as
unwritable (``/readyz``) until a write commits again."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable

import structlog

from checkpointd.errors import StoreError

__all__ = ["Writability", "resource_failure"]

_log = structlog.get_logger("checkpointd.store")

_RESOURCE_FAILURES = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "the file system reported an I/O error",
    sqlite3.SQLITE_READONLY: "the database is read-only",
}
"""Primary SQLite result codes that say the store cannot write at all (not one bad op)."""


def resource_failure(exc: BaseException) -> str | None:
    """What an exception (or one it was raised from) says about the store's resources."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(code, int):
            # Extended codes (SQLITE_IOERR_WRITE, ...) keep the primary code in the low byte.
            return _RESOURCE_FAILURES.get(code & 0xFF)
        seen = seen.__cause__
    return None


class Writability:
    """Whether the store's writes commit, told by every transaction's outcome.

    A write failing for lack of resources turns the store unwritable and starts a probe:
    a small real write every ``interval`` seconds (``probe``), because an idle daemon
    might write nothing else and would stay unready after space returns. Any write that
    commits, the probe's or another's, makes the store writable again.
    """

    def __init__(
        self,
        *,
        where: str,
        probe: Callable[[], Awaitable[object]],
        interval: float,
        may_probe: Callable[[], bool],
    ) -> None:
        self._where = where
        self._probe = probe
        self._interval = interval
        self._may_probe = may_probe
        self._task: asyncio.Task[None] | None = None
        self.reason: str | None = None
        """Why the store cannot write now (None while writes commit)."""

    def outcome(self, exc: BaseException | None) -> None:
        """Called by the writer after every transaction, on the event loop."""
        if exc is None:
            if self.reason is not None:
                _log.info("store writable again", state_dir=self._where)
                self.reason = None
            return
        reason = resource_failure(exc)
        if reason is None or self.reason is not None:
            return
        self.reason = f"cannot write {self._where}: {reason} ({exc})"
        _log.error(
            "store cannot write; refusing new work until it can",
            error=self.reason,
            probe_every_seconds=self._interval,
        )
        if self._may_probe() and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._probe_until_writable(), name="checkpointd-store-probe"
            )

    async def stop(self) -> None:
        """Stop probing (the store is closing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _probe_until_writable(self) -> None:
        while self.reason is not None and self._may_probe():
            await asyncio.sleep(self._interval)
            with contextlib.suppress(StoreError):
                await self._probe()
