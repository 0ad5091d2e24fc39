"""Retention sweeps: the store deletes what ``daemon.retention`` no longer keeps.

The daemon runs :meth:`RetentionSweeper.run` as a critical task for its whole life,
whether retention is configured or not (a reload may turn it on, and a sweep
without it costs nothing). It sweeps every ``RETENTION_EVERY`` seconds, and at
once when a reload changed what to keep (:meth:`RetentionSweeper.sweep_now`).
A failed sweep is logged and tried again at the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Protocol

import structlog

from checkpointd.errors import CheckpointdError
from checkpointd.store.model import RetentionReport

if TYPE_CHECKING:
    from checkpointd.config.models import RetentionConfig

__all__ = ["RETENTION_EVERY", "RetainingStore", "RetentionSweeper"]

log = structlog.get_logger("checkpointd.daemon")

RETENTION_EVERY = 600.0
"""Seconds between retention sweeps."""


class RetainingStore(Protocol):
    """A store that applies a retention config (the daemon's SQLite store)."""

    retention: RetentionConfig | None

    async def apply_retention(self) -> RetentionReport:
        """Delete what the retention config no longer keeps; return the counts."""
        ...


class RetentionSweeper:
    """Sweeps ``store`` while :meth:`run` runs."""

    def __init__(self, store: RetainingStore, *, every: float = RETENTION_EVERY) -> None:
        self._store = store
        self._every = every
        self._wake = asyncio.Event()

    def sweep_now(self, retention: RetentionConfig) -> None:
        """Keep what ``retention`` says from now on, starting with a sweep at once."""
        self._store.retention = retention
        self._wake.set()

    async def run(self) -> None:
        """Sweep, then wait for the next sweep, until cancelled."""
        while True:
            try:
                report = await self._store.apply_retention()
                if report != RetentionReport():
                    log.info("retention applied", report=str(report))
            except CheckpointdError as exc:
                log.error("retention failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every):
                    await self._wake.wait()
            self._wake.clear()
