"""`checkpointd actions test` and `checkpointd deliveries [retry]` without a daemon."""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

from checkpointd.actions.signing import verify
from checkpointd.cli import main
from checkpointd.config import load_config
from checkpointd.store.sqlite.store import SqliteStore
from tests.integration.test_actions_delivery import (
    Reply,
    ThreadedReceiver,
    make_result,
    running,
)

pytestmark = pytest.mark.timeout(60)

SLACK_TOKEN = "SLACKTOKENcli0001"
ROUTING = "ROUTINGcli0002"


@pytest.fixture
def receiver():
    rec = ThreadedReceiver().start()
    yield rec
    rec.close()


def write_config(tmp_path, port: int) -> str:
    path = tmp_path / "checkpointd.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            daemon:
              state_dir: {tmp_path / "state"}
              actions: {{poll_interval: 100ms, backoff: {{initial: 20ms, max: 100ms}}}}
            checkpoints:
              - name: orders
                data_source: {{type: inline, rows: [{{amount: 1}}]}}
                validators:
                  - {{type: range, column: amount, min: 0}}
                  - {{type: not_null, columns: [amount], severity: warning}}
                actions:
                  strategy: sequential
                  list:
                    - {{type: webhook, url: "http://127.0.0.1:{port}/hook",
                        secret: whsec-cli-123456, notify_on: failure_or_error}}
                    - {{type: slack, notify_on: status_change,
                        webhook_url: "http://127.0.0.1:{port}/services/T/B/{SLACK_TOKEN}"}}
                    - {{type: pagerduty, routing_key: {ROUTING},
                        url: "http://127.0.0.1:{port}/pd"}}
            """
        )
    )
    return str(path)


def test_actions_test_shows_what_fires_and_renders_payloads_without_sending(
    receiver, tmp_path, capsys
):
    config = write_config(tmp_path, receiver.port)
    assert main(["actions", "test", "-c", config, "orders", "--status", "failure"]) == 0
    out = capsys.readouterr().out
    assert "orders.webhook[0] [webhook, notify_on: failure_or_error] FIRES (notify)" in out
    assert "orders.slack[1] [slack, notify_on: status_change] FIRES (notify)" in out
    assert "orders.pagerduty[2] [pagerduty, notify_on: failure_or_error] FIRES" in out
    assert '"event_action": "trigger"' in out
    assert "X-Checkpointd-Signature: t=" in out
    assert "nothing was sent" in out
    assert SLACK_TOKEN not in out
    assert ROUTING not in out
    assert receiver.seen("/hook") == []


def test_actions_test_with_previous_shows_the_recovered_form(receiver, tmp_path, capsys):
    config = write_config(tmp_path, receiver.port)
    args = ["actions", "test", "-c", config, "orders", "--status", "success",
            "--previous", "failure", "--output", "json"]  # fmt: skip
    assert main(args) == 0
    shown = {a["action"]: a for a in json.loads(capsys.readouterr().out)["actions"]}
    assert shown["orders.webhook[0]"]["fires"] is False
    assert shown["orders.slack[1]"]["kind"] == "recovered"
    pd = shown["orders.pagerduty[2]"]
    assert pd["kind"] == "recovered"
    assert json.loads(pd["request"]["body"])["event_action"] == "resolve"


def test_actions_test_send_really_sends_once(receiver, tmp_path, capsys):
    config = write_config(tmp_path, receiver.port)
    receiver.script("/pd", then=Reply(202))
    args = ["actions", "test", "-c", config, "orders", "--status", "failure", "--send"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("sent: accepted") == 3
    (hook,) = receiver.seen("/hook")
    assert verify("whsec-cli-123456", hook.headers["X-Checkpointd-Signature"], hook.body,
                  now=__import__("time").time())  # fmt: skip
    assert len(receiver.seen(f"/services/T/B/{SLACK_TOKEN}")) == 1
    assert len(receiver.seen("/pd")) == 1


def test_actions_test_send_reports_a_refusal_and_exits_1(receiver, tmp_path, capsys):
    config = write_config(tmp_path, receiver.port)
    receiver.script("/hook", then=Reply(500))
    receiver.script("/pd", then=Reply(202))
    args = ["actions", "test", "-c", config, "orders", "--status", "error", "--send"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "sent: FAILED: webhook 'orders.webhook[0]' (http://127.0.0.1:" in out
    assert "answered HTTP 500" in out


def test_actions_test_names_an_unknown_checkpoint(receiver, tmp_path, capsys):
    config = write_config(tmp_path, receiver.port)
    assert main(["actions", "test", "-c", config, "nope", "--status", "failure"]) == 2
    assert "no checkpoint named 'nope'" in capsys.readouterr().err


def test_deliveries_lists_and_retry_requeues_in_the_state_dir(receiver, tmp_path, capsys):
    config_path = write_config(tmp_path, receiver.port)
    receiver.script("/hook", then=Reply(500))
    receiver.script("/pd", then=Reply(202))
    config = load_config(config_path)
    config = config.model_copy(
        update={"checkpoints": [config.checkpoints[0].model_copy(
            update={"actions": config.checkpoints[0].actions.model_copy(
                update={"items": [config.checkpoints[0].actions.items[0].model_copy(
                    update={"max_attempts": 2})]})})]}
    )  # fmt: skip

    async def produce_a_dead_letter():
        async with running(config) as h:
            await h.report(make_result())
            await h.wait_until("dead", dead=1)

    asyncio.run(produce_a_dead_letter())

    assert main(["deliveries", "-c", config_path, "--status", "dead"]) == 0
    table = capsys.readouterr().out
    assert "orders.webhook[0]" in table
    assert "answered HTTP 500" in table
    assert "0 pending, 0 delivered, 1 dead" in table

    assert main(["deliveries", "-c", config_path, "--output", "json"]) == 0
    (dead,) = json.loads(capsys.readouterr().out)["deliveries"]
    assert dead["status"] == "dead"
    assert dead["attempts"] == 2

    assert main(["deliveries", "retry", "-c", config_path, "--all-dead"]) == 0
    assert "requeued 1 dead delivery through the state dir" in capsys.readouterr().out
    assert main(["deliveries", "retry", "-c", config_path, dead["id"]]) == 1  # not dead now
    assert "not requeued" in capsys.readouterr().err
    assert main(["deliveries", "retry", "-c", config_path]) == 2  # neither ids nor --all-dead

    async def pending_now():
        async with await SqliteStore.open(tmp_path / "state") as store:
            return await store.outbox.get(dead["id"])

    again = asyncio.run(pending_now())
    assert (again.status, again.attempts) == ("pending", 0)


def test_deliveries_on_an_empty_state_dir(tmp_path, capsys):
    config = write_config(tmp_path, 9)
    assert main(["deliveries", "-c", config]) == 0
    assert "no deliveries to show (0 pending, 0 delivered, 0 dead)" in capsys.readouterr().out
