"""The daemon's live trigger sources: built from config, supervised, replaced on reload.

Each source runs in its own task. A source that raises is logged and
restarted after a capped backoff: one flaky trigger must not take the daemon
down, and a trigger that dies silently would be a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from checkpointd.asyncutils import backoff_delay
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import (
    CheckpointConfig,
    FileTrigger,
    KafkaBatchSource,
    KafkaTrigger,
    ScheduleTrigger,
)
from checkpointd.errors import ConfigError, ConfigIssue
from checkpointd.protocols import Emit, RunMetrics, StateStore, TriggerSource
from checkpointd.triggers.file import FileSource
from checkpointd.triggers.kafka_source import KafkaSource
from checkpointd.triggers.schedule import ScheduleSource

if TYPE_CHECKING:
    from checkpointd.triggers.kafka import KafkaHub

log = structlog.get_logger("checkpointd.triggers")

BATCH = 50
"""Sources started or stopped per turn of the loop by ``start_many``/``stop_many``."""

SourceFactory = Callable[[CheckpointConfig, int, Any], TriggerSource | None]


@dataclass
class _Running:
    source: TriggerSource
    checkpoint: str
    task: asyncio.Task[None]


def build_sources(
    checkpoint: CheckpointConfig,
    *,
    state: StateStore,
    metrics: RunMetrics,
    clock: Clock = SYSTEM_CLOCK,
    extra: Iterable[SourceFactory] = (),
    kafka: KafkaHub | None = None,
) -> list[TriggerSource]:
    """The trigger sources of one checkpoint (manual triggers need none: HTTP serves them).

    Kafka triggers attach to ``kafka``, the daemon's one consumer.
    """
    sources: list[TriggerSource] = []
    for index, spec in enumerate(checkpoint.triggers):
        if isinstance(spec, ScheduleTrigger):
            sources.append(
                ScheduleSource(
                    checkpoint.name,
                    index,
                    spec,
                    catch_up=checkpoint.catch_up,
                    max_catch_up=checkpoint.max_catch_up,
                    state=state,
                    clock=clock,
                    on_misfire=metrics.schedule_misfire,
                )
            )
        elif isinstance(spec, FileTrigger):
            sources.append(
                FileSource(
                    checkpoint.name,
                    index,
                    spec,
                    state=state,
                    clock=clock,
                    on_refused=metrics.file_trigger_refused,
                )
            )
        elif isinstance(spec, KafkaTrigger):
            if kafka is None:
                raise ConfigError(
                    [
                        ConfigIssue(
                            "config",
                            f"checkpoints.{checkpoint.name}.triggers[{index}]",
                            "a kafka trigger needs the daemon's Kafka consumer (kafka: section)",
                        )
                    ]
                )
            source = checkpoint.data_source
            batch = source if isinstance(source, KafkaBatchSource) else None
            sources.append(KafkaSource(checkpoint.name, index, spec, hub=kafka, batch=batch))
        else:
            for factory in extra:
                built = factory(checkpoint, index, spec)
                if built is not None:
                    sources.append(built)
    return sources


class TriggerSet:
    """Owns the running source tasks, keyed by source name."""

    def __init__(self, emit: Emit, *, max_restart_delay: float = 30.0) -> None:
        self._emit = emit
        self._running: dict[str, _Running] = {}
        # checkpoint -> source name -> entry: lookups by checkpoint stay O(1) with
        # thousands of checkpoints (the API lists each one's sources, results look up theirs).
        self._by_checkpoint: dict[str, dict[str, _Running]] = {}
        self._max_delay = max_restart_delay

    def __len__(self) -> int:
        return len(self._running)

    def names(self, checkpoint: str | None = None) -> list[str]:
        if checkpoint is None:
            return list(self._running)
        return list(self._by_checkpoint.get(checkpoint, ()))

    def sources(self, checkpoint: str) -> list[TriggerSource]:
        return [r.source for r in self._by_checkpoint.get(checkpoint, {}).values()]

    def all_sources(self) -> list[TriggerSource]:
        """Every running source, of every checkpoint."""
        return [r.source for r in self._running.values()]

    def start(self, checkpoint: str, sources: Iterable[TriggerSource]) -> None:
        loop = asyncio.get_running_loop()
        for source in sources:
            if source.name in self._running:
                raise ValueError(f"trigger source {source.name} is already running")
            task = loop.create_task(self._supervise(source), name=f"trigger:{source.name}")
            entry = _Running(source, checkpoint, task)
            self._running[source.name] = entry
            self._by_checkpoint.setdefault(checkpoint, {})[source.name] = entry

    async def stop(self, checkpoint: str | None = None) -> None:
        """Stop the sources of one checkpoint, or all of them."""
        await self.stop_many(list(self._by_checkpoint) if checkpoint is None else [checkpoint])

    async def start_many(self, sources: Mapping[str, Iterable[TriggerSource]]) -> None:
        """Start the sources of many checkpoints (a reload), ``BATCH`` at a time.

        A new source's first step runs at once (a schedule reads its state); started
        together, a thousand first steps would hold the loop for one long turn.
        """
        started = 0
        for checkpoint, listed in sources.items():
            listed = list(listed)
            self.start(checkpoint, listed)
            started += len(listed)
            if started >= BATCH:
                started = 0
                await asyncio.sleep(0)

    async def stop_many(self, checkpoints: Iterable[str]) -> None:
        """Stop the sources of these checkpoints (a reload may stop hundreds).

        They are removed at once, so none fires after this began, and cancelled
        ``BATCH`` at a time, each batch awaited, so their clean-up is spread over
        several turns of the loop.
        """
        tasks = []
        for checkpoint in set(checkpoints):
            for name, entry in self._by_checkpoint.pop(checkpoint, {}).items():
                del self._running[name]
                tasks.append(entry.task)
        for first in range(0, len(tasks), BATCH):
            batch = tasks[first : first + BATCH]
            for task in batch:
                task.cancel()
            await asyncio.wait(batch)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("trigger source ended with an error", error=repr(task.exception()))

    def dead(self) -> list[str]:
        """Sources whose task ended (they should run until cancelled)."""
        return [n for n, r in self._running.items() if r.task.done()]

    async def _supervise(self, source: TriggerSource) -> None:
        failures = 0
        while True:
            try:
                await source.run(self._emit)
                log.warning("trigger source returned; restarting it", source=source.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("trigger source failed; restarting it", source=source.name)
            failures += 1
            delay = backoff_delay(
                failures, delay=0.5, backoff=2.0, max_delay=self._max_delay, jitter=False
            )
            await asyncio.sleep(delay)
