"""Notifications from the real daemon, seen from outside: the outbox survives a restart,
dead letters are listed and retried through the CLI and the HTTP API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from checkpointd.actions.signing import verify
from tests.e2e.harness import free_port, run_daemon, wait_for
from tests.integration.test_actions_delivery import Reply, ThreadedReceiver

pytestmark = pytest.mark.timeout(180)

SECRET = "whsec-e2e-0123456789"
TOKEN = "e2e-token-abcdef"

CONFIG = """
daemon:
  state_dir: {state}
  graceful_shutdown_timeout: 5s
  log: {{format: json, level: debug}}
  actions:
    poll_interval: 100ms
    backoff: {{initial: 50ms, max: 300ms}}
checkpoints:
  - name: orders
    data_source: {{type: inline, rows: [{{amount: 5}}, {{amount: -3}}]}}
    validators:
      - {{type: range, column: amount, min: 0}}
    actions:
      list:
        - {{type: webhook, url: "http://127.0.0.1:{port}/hook", notify_on: failure,
            secret: {secret}, max_attempts: {max_attempts}}}
"""


@pytest.fixture
def receiver():
    rec = ThreadedReceiver()
    yield rec
    rec.close()


def deliveries(daemon, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    resp = daemon.get(f"/api/v1/deliveries?{qs}")
    assert resp.status == 200, resp.body
    return list(resp.json()["deliveries"])


def cli(config_path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHECKPOINTD_HTTP_LISTEN": f"127.0.0.1:{port}",
           "CHECKPOINTD_HTTP_TOKEN": TOKEN}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "checkpointd", *args, "-c", str(config_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_delivery_pending_while_the_receiver_is_down_is_delivered_once_after_a_restart(
    receiver, tmp_path
):
    port = free_port()
    receiver.receiver.port = port  # not listening yet: the receiver is down
    text = CONFIG.format(state=tmp_path / "state", port=port, secret=SECRET, max_attempts=100)
    # Each test picks one loop (see tests/e2e/conftest.py): this one uvloop, the next asyncio.
    with run_daemon(text, tmp_path, loop="uvloop") as daemon:
        run_id = daemon.post_run("orders")
        failed = wait_for(
            lambda: [d for d in deliveries(daemon) if d["attempts"] >= 1],
            what="a failed attempt against the down receiver",
        )
        (pending,) = failed
        assert pending["status"] == "pending"
        assert pending["run_id"] == run_id
        assert "ClientConnectorError" in pending["last_error"]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0

        receiver.start()  # the receiver comes back while the daemon is down
        again = daemon.restart()
        try:
            delivered = wait_for(
                lambda: deliveries(again, status="delivered"), what="delivery after the restart"
            )
            time.sleep(0.5)  # nothing more comes
            sent = again.metric(
                "checkpointd_action_deliveries_total",
                action="orders.webhook[0]",
                result="delivered",
            )
        finally:
            again.signal(signal.SIGTERM)
            assert again.wait(timeout=30) == 0
    assert [d["id"] for d in delivered] == [pending["id"]]
    assert sent == 1.0
    (seen,) = receiver.seen("/hook")
    assert seen.headers["Idempotency-Key"] == pending["id"]
    assert verify(SECRET, seen.headers["X-Checkpointd-Signature"], seen.body, time.time())
    body = seen.json()
    assert body["run_id"] == run_id
    assert body["status"] == "failure"
    assert body["validators"][0]["failed_count"] == 1
    assert SECRET not in (tmp_path / "daemon.log").read_text()


def test_dead_letters_are_listed_and_retried_through_the_cli_and_the_api(receiver, tmp_path):
    receiver.start()
    receiver.script("/hook", then=Reply(500))
    text = CONFIG.format(
        state=tmp_path / "state", port=receiver.port, secret=SECRET, max_attempts=2
    )
    env = {"CHECKPOINTD_HTTP_TOKEN": TOKEN}
    with run_daemon(text, tmp_path, env=env, token=TOKEN, loop="asyncio") as daemon:
        daemon.post_run("orders")
        (dead,) = wait_for(lambda: deliveries(daemon, status="dead"), what="a dead letter")
        assert dead["attempts"] == 2
        assert "answered HTTP 500" in dead["last_error"]
        wait_for(lambda: daemon.metric("checkpointd_action_dead_letters") == 1.0,
                 what="the dead-letter gauge")  # fmt: skip

        listed = cli(daemon.config_path, daemon.port, "deliveries", "--status", "dead",
                     "--output", "json")  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert [d["id"] for d in json.loads(listed.stdout)["deliveries"]] == [dead["id"]]

        assert daemon.post("/api/v1/deliveries/retry", token="wrong",
                           body=b'{"all_dead": true}').status == 401  # fmt: skip
        assert daemon.get(f"/api/v1/deliveries/{dead['id']}").json()["status"] == "dead"

        receiver.script("/hook", then=Reply(200))
        retried = cli(daemon.config_path, daemon.port, "deliveries", "retry", "--all-dead")
        assert retried.returncode == 0, retried.stderr
        assert "through the running daemon" in retried.stdout

        wait_for(
            lambda: daemon.get(f"/api/v1/deliveries/{dead['id']}").json()["status"] == "delivered",
            what="the retried delivery",
        )
        again = daemon.post(f"/api/v1/deliveries/{dead['id']}/retry")
        assert again.status == 409  # delivered: nothing to retry
        wait_for(lambda: daemon.metric("checkpointd_action_dead_letters") == 0.0,
                 what="the dead-letter gauge back to 0")  # fmt: skip
        keys = {s.headers["Idempotency-Key"] for s in receiver.seen("/hook")}
        assert keys == {dead["id"]}
        assert len(receiver.seen("/hook")) == 3
