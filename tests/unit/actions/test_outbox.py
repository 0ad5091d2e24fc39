"""The outbox table on a real SQLite store: what is written, what is due, what operators do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from checkpointd.actions import outbox
from checkpointd.actions.outbox import Candidate
from checkpointd.actions.plan import ActionSpec, action_specs, plan
from checkpointd.actions.service import ActionService
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import FrozenClock
from checkpointd.config.models import Config
from checkpointd.errors import StoreError
from checkpointd.store.sqlite.store import SqliteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path):
    store = await SqliteStore.open(tmp_path / "state", synchronous="NORMAL")
    yield store
    await store.close()


_runs = iter(range(1, 10_000))


def result(status: Status, checkpoint: str = "orders") -> CheckpointResult:
    n = next(_runs)
    return CheckpointResult(
        run_id=f"0190aaaa-0000-7000-8000-{n:012d}",
        checkpoint=checkpoint,
        status=status,
        started_at=T0 + timedelta(seconds=n),
        finished_at=T0 + timedelta(seconds=n + 1),
    )


def spec(name: str, notify_on="always", stage=0, index=0) -> ActionSpec:
    return ActionSpec("orders", index, name, "webhook", stage, notify_on, False)


async def save(store: SqliteStore, *results: CheckpointResult, specs=()) -> None:
    candidates = [Candidate(r, [(s, f"http://dest-{s.name}") for s in specs]) for r in results]

    def planner(last):
        return outbox.plan_deliveries(candidates, last, T0)

    await store.save_results([(r, None) for r in results], deliveries=planner)


async def rows(store: SqliteStore, **kw):
    return await store.outbox.entries(limit=1000, **kw)


async def test_one_row_per_matching_action_in_the_results_transaction(store):
    specs = [spec("a", "always"), spec("b", "failure", index=1), spec("c", "success", index=2)]
    await save(store, result(Status.FAILURE), specs=specs)
    written = await rows(store)
    assert sorted(e.action for e in written) == ["a", "b"]
    assert {e.status for e in written} == {"pending"}
    assert {e.attempts for e in written} == {0}
    assert len({e.id for e in written}) == 2  # each its own idempotency key


async def test_status_change_compares_with_the_previous_verdict_even_inside_one_batch(store):
    watch = [spec("w", "status_change")]
    await save(store, result(Status.SUCCESS), result(Status.SUCCESS), specs=watch)
    await save(store, result(Status.FAILURE), specs=watch)
    await save(store, result(Status.SKIPPED), result(Status.CANCELLED), specs=watch)
    await save(store, result(Status.FAILURE), result(Status.SUCCESS), specs=watch)
    kinds = [(e.run_status, e.kind, e.previous_status) for e in reversed(await rows(store))]
    assert kinds == [
        ("success", "notify", None),  # first run
        ("failure", "notify", Status.SUCCESS),
        ("success", "recovered", Status.FAILURE),  # skipped/cancelled changed nothing
    ]


async def test_the_previous_status_is_kept_for_checkpoints_without_actions(store):
    await save(store, result(Status.FAILURE))  # no actions configured yet
    await save(store, result(Status.SUCCESS), specs=[spec("w", "status_change")])
    (entry,) = await rows(store)
    assert entry.kind == "recovered"


async def test_a_failed_save_leaves_neither_result_nor_deliveries(store):
    first = result(Status.FAILURE)
    await save(store, first, specs=[spec("a")])
    with pytest.raises(StoreError):
        await save(store, first, specs=[spec("b")])  # same run id: the insert fails
    assert [e.action for e in await rows(store)] == ["a"]


async def test_later_stages_wait_until_earlier_ones_are_delivered_or_dead(store):
    staged = [spec("first", stage=0), spec("second", stage=1, index=1)]
    await save(store, result(Status.FAILURE), specs=staged)
    later = T0 + timedelta(hours=1)
    due = await store.outbox.due(later)
    assert [e.action for e in due] == ["first"]
    first = due[0]
    await store.outbox.mark_failed(
        first.id, T0, attempts=8, error="gave up", status_code=500, retry_at=None
    )
    due = await store.outbox.due(later)
    assert [e.action for e in due] == ["second"]
    assert outbox.delivery_of(due[0]).result.checkpoint == "orders"


async def test_busy_ids_blocked_destinations_and_future_retries_are_not_due(store):
    await save(store, result(Status.FAILURE), specs=[spec("a"), spec("b", index=1)])
    a, b = sorted(await rows(store), key=lambda e: e.action)
    retry_at = T0 + timedelta(seconds=30)
    await store.outbox.mark_failed(
        b.id, T0, attempts=1, error="503", status_code=503, retry_at=retry_at
    )
    now = T0 + timedelta(seconds=1)
    assert [e.action for e in await store.outbox.due(now)] == ["a"]
    assert await store.outbox.due(now, busy=[a.id]) == []
    assert await store.outbox.due(now, blocked=["http://dest-a"]) == []
    assert await store.outbox.next_due(busy=[a.id]) == retry_at


async def test_requeue_brings_dead_deliveries_back_with_fresh_attempts(store):
    await save(store, result(Status.FAILURE), specs=[spec("a"), spec("b", index=1)])
    a, b = sorted(await rows(store), key=lambda e: e.action)
    for entry in (a, b):
        await store.outbox.mark_failed(
            entry.id, T0, attempts=3, error="HTTP 500", status_code=500, retry_at=None
        )
    counts = await store.outbox.counts()
    assert counts == {"pending": 0, "delivered": 0, "dead": 2}
    requeued = await store.outbox.requeue(T0, [a.id, "nope"])
    assert requeued == [a.id]
    again = await store.outbox.get(a.id)
    assert (again.status, again.attempts, again.last_error) == ("pending", 0, "HTTP 500")
    assert await store.outbox.requeue(T0, None) == [b.id]


async def test_delivered_rows_are_pruned_after_keep_delivered(store):
    await save(store, result(Status.FAILURE), specs=[spec("a"), spec("b", index=1)])
    a, b = sorted(await rows(store), key=lambda e: e.action)
    await store.outbox.mark_delivered(a.id, T0, attempts=1, status_code=200)
    pruned = await store.outbox.prune_delivered(T0 + timedelta(days=8))
    assert pruned == 1
    assert [e.id for e in await rows(store)] == [b.id]  # pending rows are never pruned


async def test_an_entry_shows_as_json_without_its_result(store):
    await save(store, result(Status.FAILURE), specs=[spec("a")])
    (entry,) = await rows(store, status="pending")
    shown = entry.to_dict()
    assert shown["run_status"] == "failure"
    assert shown["destination"] == "http://dest-a"
    assert "result" not in shown
    json.dumps(shown)
    with pytest.raises(ValueError, match="status must be one of"):
        await rows(store, status="lost")


def test_strategies_decide_the_stages():
    def stages(actions):
        cfg = Config.model_validate(
            {"checkpoints": [{"name": "cp", "data_source": {"type": "inline", "rows": []},
                              "actions": actions}]}
        )  # fmt: skip
        return [(s.name, s.stage) for s in action_specs(cfg.checkpoints[0])]

    hooks = [{"type": "webhook", "url": "http://h/1"}, {"type": "webhook", "url": "http://h/2"},
             {"type": "slack", "webhook_url": "http://h/3", "name": "team"}]  # fmt: skip
    assert stages({"strategy": "concurrent", "list": hooks}) == [
        ("cp.webhook[0]", 0), ("cp.webhook[1]", 0), ("team", 0)]  # fmt: skip
    assert [s for _, s in stages({"strategy": "sequential", "list": hooks})] == [0, 1, 2]
    pipeline = {"strategy": "pipeline", "stages": [[2], [0, 1]], "list": hooks}
    assert [s for _, s in stages(pipeline)] == [1, 1, 0]


def test_plan_keeps_only_the_actions_that_fire():
    specs = [spec("a", "failure"), spec("b", "status_change", index=1)]
    assert [(p.spec.name, p.kind) for p in plan(specs, Status.FAILURE, Status.FAILURE)] == [
        ("a", "notify")
    ]


async def test_the_journal_adapter_writes_deliveries_with_the_result(tmp_path):
    config = Config.model_validate(
        {"checkpoints": [{"name": "orders", "data_source": {"type": "inline", "rows": []},
                          "actions": {"list": [{"type": "webhook", "url": "http://127.0.0.1:9/h/SECRET",
                                                "notify_on": "always"}]}}]}
    )  # fmt: skip
    store = await SqliteStore.open(tmp_path / "state", synchronous="NORMAL")
    service = ActionService(lambda: config, store, clock=FrozenClock(T0))
    try:
        run = result(Status.FAILURE)
        await service.journal.save_results([(run, None)])
        assert await store.get_run(run.run_id) is not None
        (entry,) = await service.list_deliveries()
        assert entry.action == "orders.webhook[0]"
        assert entry.destination == "http://127.0.0.1:9/***"
    finally:
        await service.stop(0)
        await store.close()
