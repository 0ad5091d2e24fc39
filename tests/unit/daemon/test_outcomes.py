"""The daemon's result sink: which trigger sources are asked to finish a run, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.daemon.metrics import Metrics
from checkpointd.daemon.outcomes import RunSink
from checkpointd.events import TriggerEvent
from checkpointd.protocols import Emit, FinishingSource, TriggerSource

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Source:
    """A trigger source with nothing to do after a run (a schedule, say)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def run(self, emit: Emit) -> None:
        raise AssertionError("not run in these tests")


class Finishing(Source):
    """A trigger source that finishes runs (as the file trigger moves files)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.finished: list[tuple[str, bool]] = []

    async def finish(self, event: TriggerEvent, status_ok: bool) -> str | None:
        self.finished.append((event.key, status_ok))
        return None


def _result(status: Status, checkpoint: str = "orders") -> CheckpointResult:
    return CheckpointResult(
        run_id="0190aaaa-0000-7000-8000-000000000001",
        checkpoint=checkpoint,
        status=status,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
    )


def _event(key: str = "file:a.csv") -> TriggerEvent:
    return TriggerEvent(type="file", key=key, fired_at=T0, checkpoint="orders")


def _sink(sources: list[TriggerSource]) -> RunSink:
    return RunSink(
        Metrics(CollectorRegistry()),
        sources=lambda name: sources if name == "orders" else [],
        known={"orders": object()},
    )


def test_only_the_finishing_sources_match_the_protocol():
    assert isinstance(Finishing("orders/file[0]"), FinishingSource)
    assert not isinstance(Source("orders/schedule[0]"), FinishingSource)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.SUCCESS, [("file:a.csv", True)]),
        (Status.FAILURE, [("file:a.csv", False)]),
        (Status.ERROR, [("file:a.csv", False)]),
        (Status.SKIPPED, []),
    ],
)
async def test_every_finishing_source_of_the_checkpoint_finishes_a_run_that_was_not_skipped(
    status, expected
):
    first, second = Finishing("orders/file[0]"), Finishing("orders/file[1]")
    sink = _sink([first, Source("orders/schedule[0]"), second])

    await sink.handle([(_result(status), _event())])

    assert first.finished == expected
    assert second.finished == expected


async def test_a_run_without_an_event_finishes_nothing():
    source = Finishing("orders/file[0]")

    await _sink([source]).handle([(_result(Status.SUCCESS), None)])

    assert source.finished == []
