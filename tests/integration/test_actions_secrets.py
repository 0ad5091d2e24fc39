"""No secret and no webhook path ever shows: not in logs (even at DEBUG), not in the
store, not in metrics, not in the deliveries API, whatever goes wrong."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sqlite3

import pytest
from prometheus_client import generate_latest

from checkpointd.actions.routes import add_delivery_routes
from checkpointd.checkpoints.result import CheckpointResult
from checkpointd.logs import configure_logging, reset_logging
from checkpointd.store.sqlite.store import DB_FILE_NAME
from tests.integration.test_actions_delivery import (
    Receiver,
    Reply,
    make_config,
    make_result,
    running,
)

pytestmark = pytest.mark.timeout(60)

HOOK_PATH = "/hooks/PATHSECRET0001"
QUERY_TOKEN = "QUERYSECRET0002"
SIGNING = "SIGNINGSECRET0003"
HEADER = "HEADERSECRET0004"
SLACK_TOKEN = "SLACKTOKEN0005xyz"
ROUTING = "ROUTINGKEY0006abcdefabcdefabcdef"
SECRETS = [HOOK_PATH, QUERY_TOKEN, SIGNING, HEADER, SLACK_TOKEN, ROUTING, "PATHSECRET"]


def leaky_target(result: CheckpointResult) -> None:
    # User code that puts a secret into its error message: the scrubber must catch it.
    raise RuntimeError(f"could not post to https://hooks.slack.com/services/T/B/{SLACK_TOKEN}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    yield stream
    reset_logging()


async def test_every_error_path_keeps_secrets_out_of_logs_store_metrics_and_api(
    tmp_path, captured_logs
):
    receiver = Receiver()
    await receiver.start()
    try:
        base = f"http://127.0.0.1:{receiver.port}"
        receiver.script(HOOK_PATH, then=Reply(500, body=f"echo {HOOK_PATH}?token={QUERY_TOKEN}"))
        receiver.script(f"/services/T/B/{SLACK_TOKEN}", then=Reply(400, body="invalid_payload"))
        receiver.script("/pd", Reply(429, headers={"Retry-After": "0"}), then=Reply(500))
        receiver.script("/hang" + HOOK_PATH, then=Reply(delay=5))
        closed = _closed_port()
        common = {"notify_on": "always", "max_attempts": 2}
        actions = [
            {"type": "webhook", "name": "w500", "url": f"{base}{HOOK_PATH}?token={QUERY_TOKEN}",
             "secret": SIGNING, "headers": {"Authorization": f"Bearer {HEADER}"}, **common},
            {"type": "webhook", "name": "refused",
             "url": f"http://127.0.0.1:{closed}{HOOK_PATH}", **common},
            {"type": "webhook", "name": "hang", "url": f"{base}/hang{HOOK_PATH}",
             "timeout": "200ms", **common},
            {"type": "webhook", "name": "metadata",
             "url": f"http://169.254.169.254{HOOK_PATH}", **common},
            {"type": "webhook", "name": "not-allowed",
             "url": f"http://localhost:{receiver.port}{HOOK_PATH}", **common},
            {"type": "webhook", "name": "bad-url", "url": f"http://[::1{HOOK_PATH}", **common},
            {"type": "webhook", "name": "template", "url": f"{base}{HOOK_PATH}",
             "template": "{{ no_such_name }}", **common},
            {"type": "webhook", "name": "dns", "url": f"http://no-such-host.invalid{HOOK_PATH}",
             "timeout": "1s", **common},
            {"type": "slack", "name": "slack",
             "webhook_url": f"{base}/services/T/B/{SLACK_TOKEN}", **common},
            {"type": "pagerduty", "name": "pd", "routing_key": ROUTING, "url": f"{base}/pd",
             **common},
            {"type": "python", "name": "leaky", "target": f"{__name__}:leaky_target", **common},
        ]  # fmt: skip
        config = make_config(
            tmp_path / "s",
            actions,
            allow_hosts=["127.0.0.1", "169.254.169.254", "::1", "no-such-host.invalid"],
            breaker={"failures": 99},
        )
        async with running(config) as h:
            await h.report(make_result())
            await h.wait_until("every delivery dead", dead=len(actions), within=30)
            entries = await h.deliveries()
            api = json.dumps([e.to_dict() for e in entries])
            metrics = generate_latest(h.registry).decode()
            reasons = {e.action: e.last_error or "" for e in entries}

            # The API too, as served.
            from aiohttp import ClientSession, web

            app = web.Application()
            add_delivery_routes(app, h.service, lambda: None)
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            url = f"http://127.0.0.1:{port}/api/v1/deliveries"
            async with ClientSession() as session, session.get(url) as resp:
                served = await resp.text()
            await runner.cleanup()
        await asyncio.sleep(0)
    finally:
        await receiver.stop()

    with sqlite3.connect(tmp_path / "s" / DB_FILE_NAME) as conn:
        dump = "\n".join(conn.iterdump())
    logs = captured_logs.getvalue()

    # Every path really failed, and says why in words an operator can act on.
    assert "answered HTTP 500" in reasons["w500"]
    assert "ClientConnectorError" in reasons["refused"]
    assert "timeout" in reasons["hang"]
    assert "link-local" in reasons["metadata"]
    assert "allow_hosts" in reasons["not-allowed"]
    assert "not an absolute http(s) URL" in reasons["bad-url"]
    assert "template failed" in reasons["template"]
    assert reasons["dns"]
    assert "answered HTTP 400" in reasons["slack"]
    assert "answered HTTP 500" in reasons["pd"]
    assert "RuntimeError" in reasons["leaky"]
    assert "delivery is dead" in logs
    assert "will retry" in logs

    for where, text in {"logs": logs, "store": dump, "metrics": metrics, "api": api,
                        "served api": served}.items():  # fmt: skip
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into the {where}"
