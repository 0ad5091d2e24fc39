"""Test doubles for the pool and runner tests: instrumented checkpoints, an in-memory
journal and sink, and a polled trigger driven by the test."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.events import TriggerEvent
from checkpointd.triggers.base import AsyncBaseTrigger

T0 = datetime(2026, 1, 1, tzinfo=UTC)

Item = tuple[CheckpointResult, TriggerEvent | None]


def event(key: str, checkpoint: str | None = None) -> TriggerEvent:
    return TriggerEvent(type="test", key=key, fired_at=T0, checkpoint=checkpoint)


class Concurrency:
    """Counts how many runs are inside at once, and the most ever seen."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0

    def __enter__(self) -> Concurrency:
        self.current += 1
        self.peak = max(self.peak, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        self.current -= 1


class FakeCheckpoint:
    """A RunnableCheckpoint that sleeps, waits on a gate, hangs or raises, and records it all.

    ``statuses`` are returned in turn (then ``status``); ``log`` receives
    ``("start", name)`` / ``("end", name)`` entries when given.
    """

    def __init__(
        self,
        name: str,
        *,
        status: Status = Status.SUCCESS,
        statuses: Sequence[Status] = (),
        delay: float = 0.0,
        gate: asyncio.Event | None = None,
        hang: bool = False,
        raises: BaseException | None = None,
        tracker: Concurrency | None = None,
        log: list[tuple[str, str]] | None = None,
    ) -> None:
        self.name = name
        self.status = status
        self.statuses = list(statuses)
        self.delay = delay
        self.gate = gate
        self.hang = hang
        self.raises = raises
        self.tracker = tracker or Concurrency()
        self.log = log
        self.runs = 0
        self.finished = 0
        self.cancelled = 0
        self.events: list[TriggerEvent | None] = []

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult:
        self.runs += 1
        self.events.append(event)
        if self.log is not None:
            self.log.append(("start", self.name))
        with self.tracker:
            try:
                if self.gate is not None:
                    await self.gate.wait()
                if self.hang:
                    await asyncio.Event().wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.raises is not None:
            raise self.raises
        self.finished += 1
        if self.log is not None:
            self.log.append(("end", self.name))
        status = self.statuses.pop(0) if self.statuses else self.status
        return CheckpointResult(
            run_id=f"{self.name}-{self.runs}",
            checkpoint=self.name,
            status=status,
            started_at=T0,
            finished_at=T0,
            trigger=event.info() if event else None,
            error="boom" if status is Status.ERROR else None,
        )


class MemoryJournal:
    """A RunJournal in a dict; ``calls`` records the order of every call."""

    def __init__(self, calls: list[str] | None = None) -> None:
        self.keys: set[tuple[str, str]] = set()
        self.running: list[tuple[str, str]] = []
        self.saved: list[Item] = []
        self.calls = calls if calls is not None else []

    async def journal_accept(self, event: TriggerEvent, checkpoint: str) -> bool:
        self.calls.append(f"accept:{event.key}")
        if (checkpoint, event.key) in self.keys:
            return False
        self.keys.add((checkpoint, event.key))
        return True

    async def journal_mark_running(self, event: TriggerEvent, checkpoint: str) -> None:
        self.calls.append(f"running:{event.key}")
        self.running.append((checkpoint, event.key))

    async def save_results(self, items: Sequence[Item]) -> None:
        self.calls.append(f"save:{len(items)}")
        self.saved.extend(items)


class MemorySink:
    """A ResultSink that keeps what it is given; it can fail its first calls or be held."""

    def __init__(self, calls: list[str] | None = None, *, fail_first: int = 0) -> None:
        self.items: list[Item] = []
        self.batches: list[int] = []
        self.calls = calls if calls is not None else []
        self.fail_first = fail_first
        self.gate: asyncio.Event | None = None

    async def handle(self, items: Sequence[Item]) -> None:
        self.calls.append(f"sink:{len(items)}")
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_first:
            self.fail_first -= 1
            raise OSError("sink unavailable")
        self.batches.append(len(items))
        self.items.extend(items)

    def statuses(self) -> list[Status]:
        return [result.status for result, _ in self.items]


class ScriptedTrigger(AsyncBaseTrigger):
    """A polled trigger that hands out the events a test pushes; counts polls."""

    trigger_type = "scripted"

    def __init__(self, name: str = "scripted", *, fail_polls: int = 0) -> None:
        super().__init__(name)
        self.pending: list[TriggerEvent] = []
        self.polls = 0
        self.fail_polls = fail_polls
        self.started = 0
        self.stopped = 0

    async def should_trigger_async(self) -> TriggerEvent | None:
        self.polls += 1
        if self.fail_polls:
            self.fail_polls -= 1
            raise ConnectionError("source unreachable")
        return self.pending.pop(0) if self.pending else None

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1


async def wait_until(predicate: object, *, limit: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds (a hang guard, not a speed check)."""
    assert callable(predicate)
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - polls plain state the doubles keep
            await asyncio.sleep(0.005)
