"""OverlapCheckpoint: what each overlap policy does with a run fired while another runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.config.models import CheckpointConfig
from checkpointd.daemon.metrics import Metrics
from checkpointd.events import TriggerEvent
from checkpointd.runtime.overlap import OverlapCheckpoint, is_catch_up, reads_event_data

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIXED = {"type": "csv", "path": "data/orders.csv"}
PER_FILE = {"type": "csv", "path": "{trigger.path}"}


def config(overlap: str = "skip", source: dict[str, Any] | None = None) -> CheckpointConfig:
    return CheckpointConfig.model_validate(
        {"name": "orders", "data_source": source or FIXED, "overlap": overlap}
    )


class HeldCheckpoint:
    """Stands in for a Checkpoint: each run lasts until the test releases it."""

    def __init__(self, cfg: CheckpointConfig) -> None:
        self.config = cfg
        self.release = asyncio.Event()
        self.active = 0
        self.most_active = 0
        self.started: list[TriggerEvent] = []

    @property
    def name(self) -> str:
        return self.config.name

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult:
        assert event is not None
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.started.append(event)
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        return CheckpointResult(
            run_id=event.run_id or "?",
            checkpoint=self.name,
            status=Status.SUCCESS,
            started_at=T0,
            finished_at=T0,
            trigger=event.info(),
        )


def event(key: str, **params: str) -> TriggerEvent:
    return TriggerEvent(type="schedule", key=key, fired_at=T0, checkpoint="orders", params=params)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, process_metrics=False)


def guard(held: HeldCheckpoint, metrics: Metrics, **kw: Any) -> OverlapCheckpoint:
    return OverlapCheckpoint(held, metrics=metrics, **kw)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_skip_records_a_run_fired_while_the_previous_one_runs_as_skipped(metrics, registry):
    held = HeldCheckpoint(config("skip"))
    guarded = guard(held, metrics)
    first = asyncio.create_task(guarded.run_async(event("a")))
    await settle()
    assert guarded.running == 1

    second = await guarded.run_async(event("b"))
    assert second.status is Status.SKIPPED
    assert second.trigger is not None
    assert second.trigger.key == "b"
    assert "overlap: skip" in (second.error or "")
    assert registry.get_sample_value("checkpointd_runs_skipped_total", {"reason": "overlap"}) == 1

    held.release.set()
    assert (await first).status is Status.SUCCESS
    assert guarded.running == 0
    assert (await guarded.run_async(event("c"))).status is Status.SUCCESS  # free again
    assert [e.key for e in held.started] == ["a", "c"]


async def test_skip_never_drops_a_run_whose_data_comes_from_its_event(metrics):
    held = HeldCheckpoint(config("skip", PER_FILE))
    guarded = guard(held, metrics)
    runs = [asyncio.create_task(guarded.run_async(event(k, path=f"/in/{k}.csv"))) for k in "ab"]
    await settle()
    assert held.active == 2  # two different files: both checked, side by side
    held.release.set()
    assert [(await r).status for r in runs] == [Status.SUCCESS, Status.SUCCESS]


async def test_skip_lets_catch_up_fires_wait_their_turn_instead_of_dropping_them(metrics):
    held = HeldCheckpoint(config("skip"))
    guarded = guard(held, metrics)
    runs = [
        asyncio.create_task(guarded.run_async(event(f"fire{n}", catch_up="true"))) for n in range(3)
    ]
    await settle()
    assert held.active == 1
    # An ordinary fire arriving meanwhile is still skipped.
    assert (await guarded.run_async(event("on-time"))).status is Status.SKIPPED
    held.release.set()
    results = [await r for r in runs]
    assert [r.status for r in results] == [Status.SUCCESS] * 3
    assert held.most_active == 1
    assert [e.key for e in held.started] == ["fire0", "fire1", "fire2"]


async def test_queue_runs_every_run_one_after_the_other(metrics):
    held = HeldCheckpoint(config("queue"))
    guarded = guard(held, metrics)
    runs = [asyncio.create_task(guarded.run_async(event(k))) for k in "abc"]
    await settle()
    assert held.active == 1
    held.release.set()
    assert [(await r).status for r in runs] == [Status.SUCCESS] * 3
    assert held.most_active == 1


async def test_allow_lets_runs_overlap(metrics, registry):
    held = HeldCheckpoint(config("allow"))
    guarded = guard(held, metrics)
    runs = [asyncio.create_task(guarded.run_async(event(k))) for k in "abc"]
    await settle()
    assert held.active == 3
    assert guarded.running == 3
    assert registry.get_sample_value("checkpointd_runs_in_flight") == 3
    held.release.set()
    assert [(await r).status for r in runs] == [Status.SUCCESS] * 3
    assert registry.get_sample_value("checkpointd_runs_in_flight") == 0


async def test_a_replacement_shares_the_gate_so_a_run_on_the_old_config_still_counts(metrics):
    old_held = HeldCheckpoint(config("skip"))
    old = guard(old_held, metrics)
    in_flight = asyncio.create_task(old.run_async(event("a")))
    await settle()

    new = guard(HeldCheckpoint(config("skip")), metrics, gate=old.gate)
    assert new.running == 1
    assert (await new.run_async(event("b"))).status is Status.SKIPPED
    unrelated = guard(HeldCheckpoint(config("skip")), metrics)  # no gate handed over
    assert unrelated.running == 0

    old_held.release.set()
    await in_flight
    assert new.running == 0


async def test_each_run_carries_the_run_id_of_its_event_or_gets_one(metrics):
    held = HeldCheckpoint(config("allow"))
    held.release.set()
    guarded = guard(held, metrics)
    given = TriggerEvent(type="manual", key="manual:x", fired_at=T0, run_id="run-given")
    assert (await guarded.run_async(given)).run_id == "run-given"
    made = await guarded.run_async(event("k"))
    assert made.run_id
    assert held.started[-1].run_id == made.run_id
    without_event = await guarded.run_async(None)
    assert held.started[-1].type == "manual"
    assert held.started[-1].run_id == without_event.run_id


@pytest.mark.parametrize(
    ("source", "per_event"),
    [
        (FIXED, False),
        (PER_FILE, True),
        ({"type": "parquet", "path": "landing/{trigger.date}/*.parquet"}, True),
        ({"type": "ndjson", "path": "events/{date}.ndjson"}, False),  # not a trigger param
        ({"type": "inline", "rows": [{"id": 1}]}, False),
        ({"type": "kafka_batch"}, True),
    ],
)
def test_which_data_sources_read_data_named_by_the_event(source, per_event):
    assert reads_event_data(config(source=source).data_source) is per_event


@pytest.mark.parametrize(
    ("params", "late"),
    [({"catch_up": "true"}, True), ({"catch_up": "false"}, False), ({}, False)],
)
def test_a_catch_up_fire_is_recognised_by_its_param(params, late):
    assert is_catch_up(event("k", **params)) is late
    assert is_catch_up(None) is False
