"""A checkpoint as the daemon runs it: overlap policy, run context and metrics around a run.

``overlap`` decides what happens when a checkpoint fires while its previous
run still runs:

- ``skip`` (default): the new run is not executed; a ``skipped`` result is
  recorded (stored, counted, visible in the API), never a silent drop.
- ``queue``: the new run waits for the previous one, then runs.
- ``allow``: runs overlap freely.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from checkpointd.checkpoints.checkpoint import Checkpoint
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.daemon.logging import bind_run
from checkpointd.daemon.metrics import Metrics
from checkpointd.ids import uuid7
from checkpointd.triggers.event import TriggerEvent


class GuardedCheckpoint:
    """Wraps a :class:`Checkpoint` for the daemon; satisfies ``RunnableCheckpoint``."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        metrics: Metrics,
        clock: Clock = SYSTEM_CLOCK,
        on_start: Callable[[TriggerEvent | None], None] | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self._metrics = metrics
        self._clock = clock
        self._running = 0
        self._lock = asyncio.Lock()
        self._on_start = on_start

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def config(self) -> object:
        return self.checkpoint.config

    @property
    def running(self) -> int:
        return self._running

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult:
        run_id = event.run_id if event is not None and event.run_id else uuid7()
        if event is not None and event.run_id is None:
            event = dataclasses.replace(event, run_id=run_id)
        policy = self.checkpoint.config.overlap
        if policy == "skip" and self._running:
            self._metrics.run_skipped("overlap")
            return self._skipped(run_id, event)
        if policy == "queue":
            async with self._lock:
                return await self._run(run_id, event)
        return await self._run(run_id, event)

    async def _run(self, run_id: str, event: TriggerEvent | None) -> CheckpointResult:
        self._running += 1
        try:
            with bind_run(run_id, self.name), self._metrics.run_in_flight():
                if self._on_start is not None:
                    self._on_start(event)
                if event is None:
                    event = TriggerEvent(
                        type="manual",
                        key=f"manual:{run_id}",
                        fired_at=self._clock.now(),
                        checkpoint=self.name,
                        run_id=run_id,
                    )
                return await self.checkpoint.run_async(event)
        finally:
            self._running -= 1

    def _skipped(self, run_id: str, event: TriggerEvent | None) -> CheckpointResult:
        now = self._clock.now()
        return CheckpointResult(
            run_id=run_id,
            checkpoint=self.name,
            status=Status.SKIPPED,
            started_at=now,
            finished_at=now,
            trigger=event.info() if event else None,
            error="skipped: the previous run of this checkpoint was still running (overlap: skip)",
        )
