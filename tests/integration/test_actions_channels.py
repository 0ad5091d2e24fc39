"""Slack, PagerDuty and Python actions end to end through the outbox and dispatcher."""

from __future__ import annotations

import asyncio
import threading

import pytest

from checkpointd.actions.base import ActionResult, ActionStatus, AsyncBaseAction
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.errors import DeliveryError
from tests.integration.test_actions_delivery import (
    Receiver,
    Reply,
    make_config,
    make_result,
    running,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def receiver():
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


async def test_slack_gets_a_block_kit_message_with_the_failing_validators(receiver, tmp_path):
    url = receiver.script("/services/T000/B000/XXXXSECRET", then=Reply(200, body="ok"))
    action = {
        "type": "slack",
        "webhook_url": url,
        "notify_on": "failure_or_error",
        "base_url": "https://checkpointd.example",
    }
    async with running(make_config(tmp_path / "s", [action])) as h:
        await h.report(make_result(Status.SUCCESS), make_result(Status.FAILURE))
        await h.wait_until("the failure's message", delivered=1, pending=0)
        (seen,) = receiver.seen["/services/T000/B000/XXXXSECRET"]
        message = seen.json()
        assert "orders: failure" in message["text"]
        kinds = [b["type"] for b in message["blocks"]]
        assert kinds[0] == "header"
        assert "section" in kinds
        assert kinds[-1] == "context"
        flat = str(message)
        assert "2 of 100 rows failed" in flat
        assert "-1.5" in flat
        assert "https://checkpointd.example/api/v1/runs/" in flat
        (entry,) = await h.deliveries()
        assert entry.destination == f"http://127.0.0.1:{receiver.port}/***"


async def test_a_slack_404_no_service_is_a_dead_letter_at_once(receiver, tmp_path):
    url = receiver.script("/services/T/B/revoked", then=Reply(404, body="no_service"))
    action = {"type": "slack", "webhook_url": url, "notify_on": "always"}
    async with running(make_config(tmp_path / "s", [action])) as h:
        await h.report(make_result())
        await h.wait_until("dead letter", dead=1)
        (entry,) = await h.deliveries()
        assert entry.attempts == 1
        assert "answered HTTP 404" in entry.last_error
        assert "revoked" not in entry.last_error


async def test_pagerduty_triggers_then_resolves_the_same_incident(receiver, tmp_path):
    url = receiver.script("/v2/enqueue", then=Reply(202, body='{"status":"success"}'))
    action = {
        "type": "pagerduty",
        "routing_key": "R0UTING0KEY0000000000000000000000",
        "url": url,
        "severity": "critical",
    }
    config = make_config(tmp_path / "s", {"strategy": "sequential", "list": [action]})
    async with running(config) as h:
        for status in (Status.FAILURE, Status.FAILURE, Status.SUCCESS, Status.SUCCESS):
            await h.report(make_result(status))
        await h.wait_until("events", delivered=3, pending=0)
        events = sorted((s.json() for s in receiver.seen["/v2/enqueue"]),
                        key=lambda e: e["event_action"] == "resolve")  # fmt: skip
        assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
        assert {e["dedup_key"] for e in events} == {"checkpointd/orders"}
        assert {e["routing_key"] for e in events} == {"R0UTING0KEY0000000000000000000000"}
        assert events[0]["payload"]["severity"] == "critical"
        assert events[0]["payload"]["custom_details"]["failed_validators"][0]["column"] == "amount"


# ---------------------------------------------------------------- python actions

CALLS: list[tuple[str, str, str]] = []
FAIL_FIRST: dict[str, int] = {}


def record_sync(result: CheckpointResult) -> None:
    CALLS.append(("sync", result.run_id, threading.current_thread().name))


async def record_async(result: CheckpointResult, delivery=None) -> None:
    await asyncio.sleep(0)
    CALLS.append(("async", result.run_id, delivery.idempotency_key if delivery else ""))


def flaky(result: CheckpointResult) -> None:
    left = FAIL_FIRST.get(result.run_id, 0)
    if left:
        FAIL_FIRST[result.run_id] = left - 1
        raise ConnectionError("downstream said no")
    CALLS.append(("flaky", result.run_id, ""))


def refuses(result: CheckpointResult) -> None:
    raise DeliveryError("the ticket system rejected the payload", retryable=False)


class TicketAction(AsyncBaseAction):
    """A Python-API action used as a daemon `python` target."""

    action_type = "ticket"

    async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        CALLS.append(("class", checkpoint_result.run_id, ""))
        return self.make_result(ActionStatus.SUCCESS, "ticket opened")


def target(name: str) -> str:
    return f"{__name__}:{name}"


async def test_python_targets_sync_async_and_action_classes(tmp_path):
    CALLS.clear()
    actions = [
        {"type": "python", "target": target("record_sync"), "notify_on": "always"},
        {"type": "python", "target": target("record_async"), "notify_on": "always"},
        {"type": "python", "target": target("TicketAction"), "notify_on": "always"},
    ]
    async with running(make_config(tmp_path / "s", actions)) as h:
        run = make_result()
        await h.report(run)
        await h.wait_until("three calls", delivered=3)
        by_kind = {kind: (run_id, extra) for kind, run_id, extra in CALLS}
        assert set(by_kind) == {"sync", "async", "class"}
        assert {run_id for run_id, _ in by_kind.values()} == {run.run_id}
        assert by_kind["sync"][1].startswith("checkpointd-run-action")  # off the event loop
        entries = {e.action: e for e in await h.deliveries()}
        assert by_kind["async"][1] == entries["orders.python[1]"].id


async def test_python_failures_retry_and_deliberate_refusals_do_not(tmp_path):
    CALLS.clear()
    actions = [
        {"type": "python", "target": target("flaky"), "notify_on": "always", "name": "flaky"},
        {"type": "python", "target": target("refuses"), "notify_on": "always", "name": "no"},
        {"type": "python", "target": "no_such_module_xyz:fn", "notify_on": "always",
         "name": "missing"},
    ]  # fmt: skip
    async with running(make_config(tmp_path / "s", actions)) as h:
        run = make_result()
        FAIL_FIRST[run.run_id] = 2
        await h.report(run)
        await h.wait_until("settled", delivered=1, dead=2)
        entries = {e.action: e for e in await h.deliveries()}
        assert entries["flaky"].attempts == 3
        assert entries["no"].attempts == 1
        assert "rejected the payload" in entries["no"].last_error
        assert "cannot be loaded" in entries["missing"].last_error
