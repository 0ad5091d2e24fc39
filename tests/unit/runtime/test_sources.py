"""One trigger model: the runner runs any TriggerSource, polled triggers through PolledSource."""

from __future__ import annotations

import asyncio

import pytest

from checkpointd.checkpoints.result import Status
from checkpointd.errors import RunnerError
from checkpointd.protocols import Emit, ManagedSource
from checkpointd.runtime.runner import AsyncCheckpointRunner, AsyncRunnerConfig
from checkpointd.triggers.polled import PolledSource
from tests.unit.runtime.runner_doubles import FakeCheckpoint, MemoryJournal, MemorySink, event

WAIT = 5.0  # a hang guard, not a speed assertion


class PushSource:
    """A TriggerSource that emits its events at once, then waits to be cancelled."""

    def __init__(self, name: str, keys: list[str]) -> None:
        self.name = name
        self.keys = keys
        self.accepted: list[bool] = []
        self.cancelled = False

    async def run(self, emit: Emit) -> None:
        try:
            for key in self.keys:
                self.accepted.append(await emit(event(key)))
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class ManagedPush(PushSource):
    def __init__(self, name: str, keys: list[str], *, fail: bool = False) -> None:
        super().__init__(name, keys)
        self.fail = fail
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail:
            raise ConnectionRefusedError("no server")

    async def stop(self) -> None:
        self.calls.append("stop")


async def until(predicate) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 (polls state that no event announces)
            await asyncio.sleep(0.005)


async def test_a_push_source_runs_its_checkpoint_once_per_new_key() -> None:
    sink, journal = MemorySink(), MemoryJournal()
    source = PushSource("push", ["k1", "k2", "k1"])
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], sink=sink, journal=journal)
    runner.add_trigger("a", source)
    async with runner:
        await until(lambda: len(sink.items) == 2)
    assert source.accepted == [True, True, False]  # the journal refused the repeated key
    assert sorted(r.trigger.key for r, _ in sink.items) == ["k1", "k2"]
    assert source.cancelled  # stopping the runner stopped the source


async def test_a_managed_source_is_started_before_and_stopped_after_it_runs() -> None:
    sink = MemorySink()
    source = ManagedPush("managed", ["k1"])
    assert isinstance(source, ManagedSource)
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")], sink=sink)
    runner.add_trigger("a", source)
    async with runner:
        await until(lambda: len(sink.items) == 1)
        assert source.calls == ["start"]
    assert source.calls == ["start", "stop"]


async def test_a_source_that_fails_to_start_fails_start_async_naming_it() -> None:
    runner = AsyncCheckpointRunner([FakeCheckpoint("a")])
    runner.add_trigger("a", ManagedPush("flaky", [], fail=True))
    with pytest.raises(RunnerError, match="trigger 'flaky' of 'a' failed to start"):
        await runner.start_async()
    assert runner.state == "stopped"


async def test_a_source_inside_emit_at_stop_finishes_its_handover() -> None:
    """Stopping cancels idle sources, never one handing over an event: that event runs."""
    gate, entered = asyncio.Event(), asyncio.Event()
    sink = MemorySink()

    class SlowJournal(MemoryJournal):
        async def journal_accept(self, ev, checkpoint):
            entered.set()
            await gate.wait()  # the journal write is slow
            return await super().journal_accept(ev, checkpoint)

    journal = SlowJournal()
    source = PushSource("push", ["k1"])
    runner = AsyncCheckpointRunner(
        [FakeCheckpoint("a")], sink=sink, journal=journal, config=AsyncRunnerConfig()
    )
    runner.add_trigger("a", source)
    await runner.start_async()
    await asyncio.wait_for(entered.wait(), WAIT)  # the source is inside emit
    stopping = asyncio.create_task(runner.stop_async())
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.wait_for(stopping, WAIT)
    assert source.accepted == [True]
    assert [(r.trigger.key, r.status) for r, _ in sink.items] in (
        [("k1", Status.SUCCESS)],
        [("k1", Status.CANCELLED)],  # journaled as stopping began: closed as cancelled
    )


async def test_a_polled_trigger_is_a_managed_source() -> None:
    class Once:
        name = "once"
        trigger_type = "test"

        def __init__(self) -> None:
            self.polls = 0

        async def should_trigger_async(self):
            self.polls += 1
            return event("k1") if self.polls == 1 else None

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

    errors: list[tuple[str, str, Exception]] = []
    source = PolledSource(Once(), interval=0.001, on_error=lambda *e: errors.append(e))
    assert isinstance(source, ManagedSource)
    emitted = []

    async def emit(ev):
        emitted.append(ev.key)
        return True

    task = asyncio.create_task(source.run(emit))
    await until(lambda: source.trigger.polls >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emitted == ["k1"]
    assert errors == []
