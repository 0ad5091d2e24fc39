"""A checkpoint as the daemon runs it: overlap policy, run context and metrics around a run.

``overlap`` decides what happens when a checkpoint fires while its previous
run still runs:

- ``skip`` (default): the new run is not executed; a ``skipped`` result is
  recorded (stored, counted, visible in the API), never a silent drop.
- ``queue``: the new run waits for the previous one, then runs.
- ``allow``: runs overlap freely.

``skip`` is about running the *same data* twice at once (a slow scheduled run
still going when the next fire comes). Two kinds of run are owed, not
optional, so ``skip`` never drops them:

- A run whose data comes from its event — a ``{trigger.*}`` path such as the
  file that landed, or a Kafka batch — checks data no other run checks;
  skipping it would leave that data unchecked for good. It runs at once
  (``queue`` still serialises it).
- A schedule catch-up fire (``catch_up: all`` emits every missed fire time
  back to back): the operator asked for each one. It waits for the run before
  it instead of overlapping it.

A checkpoint replaced by a config reload hands its :class:`OverlapGate` to its
successor, so a run that started on the old config still counts as running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable

from checkpointd.checkpoints.checkpoint import Checkpoint
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import DataSourceConfig, KafkaBatchSource
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7
from checkpointd.logs import bind_run
from checkpointd.protocols import RunMetrics

_PLACEHOLDER = re.compile(r"\{trigger\.[A-Za-z_][A-Za-z0-9_]*\}")


def reads_event_data(source: DataSourceConfig) -> bool:
    """Whether each run of a checkpoint with this data source checks data its event names."""
    if isinstance(source, KafkaBatchSource):
        return True
    path = getattr(source, "path", None)
    return isinstance(path, str) and _PLACEHOLDER.search(path) is not None


def is_catch_up(event: TriggerEvent | None) -> bool:
    """Whether ``event`` is a schedule fire emitted late to make up for missed time."""
    return event is not None and event.params.get("catch_up") == "true"


class OverlapGate:
    """The runs of one checkpoint in flight, across config reloads."""

    def __init__(self) -> None:
        self.running = 0
        self.lock = asyncio.Lock()
        """Held by a run that must not overlap another (``skip`` and ``queue``)."""

    @property
    def busy(self) -> bool:
        """Whether a run is executing or holds the turn."""
        return bool(self.running or self.lock.locked())


class OverlapCheckpoint:
    """Wraps a :class:`Checkpoint` for the daemon; satisfies ``RunnableCheckpoint``.

    ``gate`` is the predecessor's :attr:`gate` when this replaces a checkpoint of
    the same name at reload.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        metrics: RunMetrics,
        clock: Clock = SYSTEM_CLOCK,
        on_start: Callable[[TriggerEvent | None], None] | None = None,
        gate: OverlapGate | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self._metrics = metrics
        self._clock = clock
        self.gate = gate or OverlapGate()
        self._on_start = on_start

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def config(self) -> object:
        return self.checkpoint.config

    @property
    def running(self) -> int:
        """Runs of this checkpoint executing now (on this config or the one it replaced)."""
        return self.gate.running

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult:
        run_id = event.run_id if event is not None and event.run_id else uuid7()
        if event is not None and event.run_id is None:
            event = dataclasses.replace(event, run_id=run_id)
        config = self.checkpoint.config
        policy = config.overlap
        if policy == "allow" or (policy == "skip" and reads_event_data(config.data_source)):
            return await self._run(run_id, event)
        if policy == "skip" and self.gate.busy and not is_catch_up(event):
            self._metrics.run_skipped("overlap")
            return self._skipped(run_id, event)
        async with self.gate.lock:
            return await self._run(run_id, event)

    async def _run(self, run_id: str, event: TriggerEvent | None) -> CheckpointResult:
        self.gate.running += 1
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
            self.gate.running -= 1

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
