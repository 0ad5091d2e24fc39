"""/api/v1/deliveries served by aiohttp over a real outbox."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from aiohttp import ClientSession, web

from checkpointd.actions.routes import add_delivery_routes
from tests.integration.test_actions_delivery import (
    Receiver,
    Reply,
    make_config,
    make_result,
    running,
)

pytestmark = pytest.mark.timeout(60)
TOKEN = "api-token-123"


@contextlib.asynccontextmanager
async def serve(service):
    app = web.Application()
    add_delivery_routes(app, service, lambda: TOKEN)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}") as session:
            yield session
    finally:
        await runner.cleanup()


async def test_list_show_and_retry_through_the_api(tmp_path):
    receiver = Receiver()
    await receiver.start()
    url = receiver.script("/hook", then=Reply(500))
    action = {"type": "webhook", "url": url, "notify_on": "always", "max_attempts": 1}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with running(make_config(tmp_path / "s", [action])) as h, serve(h.service) as api:
            await h.report(make_result(), make_result())
            await h.wait_until("two dead letters", dead=2)

            async with api.get("/api/v1/deliveries", params={"status": "dead"}) as resp:
                listed = await resp.json()
            assert resp.status == 200
            assert listed["counts"] == {"pending": 0, "delivered": 0, "dead": 2}
            first, second = (d["id"] for d in listed["deliveries"])

            async with api.get(f"/api/v1/deliveries/{first}") as resp:
                assert (await resp.json())["status"] == "dead"

            receiver.script("/hook", then=Reply(200))
            async with api.post(f"/api/v1/deliveries/{first}/retry") as resp:
                assert resp.status == 401  # no token
            async with api.post(f"/api/v1/deliveries/{first}/retry", headers=auth) as resp:
                assert resp.status == 200
                assert (await resp.json())["requeued"] == [first]
            async with api.post(
                "/api/v1/deliveries/retry", headers=auth, json={"ids": [second]}
            ) as resp:
                assert (await resp.json())["requeued"] == [second]
            await h.wait_until("both delivered", delivered=2)
            async with api.post(f"/api/v1/deliveries/{first}/retry", headers=auth) as resp:
                assert resp.status == 409
                assert "delivered" in (await resp.json())["error"]
    finally:
        await receiver.stop()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/v1/deliveries?status=lost", None, 400),
        ("GET", "/api/v1/deliveries?limit=0", None, 400),
        ("GET", "/api/v1/deliveries?limit=abc", None, 400),
        ("GET", "/api/v1/deliveries?checkpoint=../x", None, 400),
        ("GET", "/api/v1/deliveries/not-a-uuid", None, 400),
        ("GET", f"/api/v1/deliveries/{uuid.uuid4()}", None, 404),
        ("POST", f"/api/v1/deliveries/{uuid.uuid4()}/retry", None, 404),
        ("POST", "/api/v1/deliveries/retry", b"not json", 400),
        ("POST", "/api/v1/deliveries/retry", b"[1, 2]", 400),
        ("POST", "/api/v1/deliveries/retry", b'{"ids": []}', 400),
        ("POST", "/api/v1/deliveries/retry", b'{"ids": ["x"]}', 400),
        ("POST", "/api/v1/deliveries/retry", b'{"all_dead": true}', 200),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(tmp_path, method, path, body, status):
    config = make_config(tmp_path / "s", [])
    async with running(config) as h, serve(h.service) as api:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with api.request(method, path, data=body, headers=headers) as resp:
            assert resp.status == status
            answer = await resp.json()
            if status >= 400:
                assert answer["error"]
