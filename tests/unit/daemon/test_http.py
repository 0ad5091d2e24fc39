"""The HTTP surface on a fake daemon: routes, status codes, JSON errors, the bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.daemon.http import ServiceUnavailable, build_app, is_loopback

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RUN_ID = "0192f0a4-0000-7000-8000-000000000001"


def a_result(run_id: str = RUN_ID, status: Status = Status.SUCCESS) -> CheckpointResult:
    return CheckpointResult(
        run_id=run_id,
        checkpoint="orders",
        status=status,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
    )


@dataclass
class Outcome:
    ok: bool
    summary: str
    errors: list[str] = field(default_factory=list)


@dataclass
class FakeDaemon:
    """A DaemonApi that answers from its fields and records what it was asked."""

    healthy: bool = True
    ready: bool = True
    taking_runs: bool = True
    reload_outcome: Outcome = field(default_factory=lambda: Outcome(True, "no changes"))
    runs: list[CheckpointResult] = field(default_factory=lambda: [a_result()])
    manual: list[str] = field(default_factory=list)
    reloads: list[str] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.healthy, {"event_loop_lag_seconds": 0.002, "dead_critical_task": None}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, {"draining": not self.ready}

    async def checkpoints_overview(self) -> list[dict[str, Any]]:
        return [{"name": "orders", "next_fire_time": "2026-03-01T12:15:00.000Z"}]

    async def trigger_manual(self, name: str) -> str | None:
        if not self.taking_runs:
            raise ServiceUnavailable("checkpointd is not taking runs now (draining)")
        if name != "orders":
            return None
        self.manual.append(name)
        return RUN_ID

    async def reload(self, reason: str) -> Outcome:
        self.reloads.append(reason)
        return self.reload_outcome

    async def list_runs(
        self, *, checkpoint: str | None, status: str | None, limit: int
    ) -> list[CheckpointResult]:
        self.queries.append({"checkpoint": checkpoint, "status": status, "limit": limit})
        return self.runs

    async def get_run(self, run_id: str) -> CheckpointResult | None:
        return next((r for r in self.runs if r.run_id == run_id), None)

    def render_metrics(self) -> tuple[bytes, str]:
        return b"checkpointd_build_info 1.0\n", "text/plain; version=0.0.4; charset=utf-8"


Client = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    started: list[TestClient[Any, Any]] = []

    async def make(api: FakeDaemon, token: Any = None) -> TestClient[Any, Any]:
        c: TestClient[Any, Any] = TestClient(
            TestServer(build_app(api, token=token, max_body_bytes=4096))
        )
        await c.start_server()
        started.append(c)
        return c

    yield make
    for c in started:
        await c.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------ health and readiness


@pytest.mark.parametrize(
    ("healthy", "code", "status"), [(True, 200, "ok"), (False, 503, "unhealthy")]
)
async def test_healthz_answers_200_when_healthy_and_503_when_not(client, healthy, code, status):
    c = await client(FakeDaemon(healthy=healthy))
    resp = await c.get("/healthz")
    assert resp.status == code
    body = await resp.json()
    assert body["status"] == status
    assert body["event_loop_lag_seconds"] == 0.002


@pytest.mark.parametrize(
    ("ready", "code", "status"), [(True, 200, "ready"), (False, 503, "not ready")]
)
async def test_readyz_answers_503_while_not_ready(client, ready, code, status):
    c = await client(FakeDaemon(ready=ready))
    resp = await c.get("/readyz")
    assert resp.status == code
    body = await resp.json()
    assert body["status"] == status
    assert body["draining"] is (not ready)


async def test_metrics_are_served_with_the_exposition_content_type(client):
    c = await client(FakeDaemon())
    resp = await c.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert await resp.text() == "checkpointd_build_info 1.0\n"


async def test_checkpoints_are_listed(client):
    c = await client(FakeDaemon())
    resp = await c.get("/api/v1/checkpoints")
    assert (await resp.json())["checkpoints"][0]["name"] == "orders"


# ------------------------------------------------------------------ manual runs


async def test_posting_a_run_answers_202_with_its_id_and_where_to_find_it(client):
    api = FakeDaemon()
    c = await client(api)
    resp = await c.post("/api/v1/checkpoints/orders/runs")
    assert resp.status == 202
    assert await resp.json() == {
        "run_id": RUN_ID,
        "checkpoint": "orders",
        "status": "accepted",
        "href": f"/api/v1/runs/{RUN_ID}",
    }
    assert api.manual == ["orders"]


async def test_posting_a_run_of_an_unknown_checkpoint_is_404(client):
    c = await client(FakeDaemon())
    resp = await c.post("/api/v1/checkpoints/nope/runs")
    assert resp.status == 404
    assert (await resp.json())["error"] == "no checkpoint named 'nope'"


async def test_a_malformed_checkpoint_name_is_400_and_never_reaches_the_daemon(client):
    api = FakeDaemon()
    c = await client(api)
    resp = await c.post("/api/v1/checkpoints/-bad$/runs")
    assert resp.status == 400
    assert "invalid checkpoint name" in (await resp.json())["error"]
    assert api.manual == []


async def test_posting_a_run_while_the_daemon_drains_is_503(client):
    c = await client(FakeDaemon(taking_runs=False))
    resp = await c.post("/api/v1/checkpoints/orders/runs")
    assert resp.status == 503
    assert "draining" in (await resp.json())["error"]


# ------------------------------------------------------------------ the bearer token


@pytest.mark.parametrize("path", ["/api/v1/checkpoints/orders/runs", "/-/reload"])
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}],
    ids=["none", "wrong", "no-scheme", "basic"],
)
async def test_mutating_calls_without_the_right_token_are_401(client, path, headers):
    api = FakeDaemon()
    c = await client(api, token="s3cret")
    resp = await c.post(path, headers=headers)
    assert resp.status == 401
    assert "bearer token" in (await resp.json())["error"]
    assert api.manual == []
    assert api.reloads == []


async def test_the_right_token_is_accepted_and_the_scheme_is_case_insensitive(client):
    api = FakeDaemon()
    c = await client(api, token="s3cret")
    assert (await c.post("/api/v1/checkpoints/orders/runs", headers=bearer("s3cret"))).status == 202
    resp = await c.post("/-/reload", headers={"Authorization": "bearer s3cret"})
    assert resp.status == 200
    assert api.reloads == ["http"]


async def test_reads_need_no_token(client):
    c = await client(FakeDaemon(), token="s3cret")
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/checkpoints", "/api/v1/runs"):
        assert (await c.get(path)).status == 200, path


async def test_a_token_source_is_asked_at_every_request_so_a_reload_can_rotate_it(client):
    current = {"token": "old"}
    c = await client(FakeDaemon(), token=lambda: current["token"])
    path = "/api/v1/checkpoints/orders/runs"
    assert (await c.post(path, headers=bearer("old"))).status == 202
    current["token"] = "new"
    assert (await c.post(path, headers=bearer("old"))).status == 401
    assert (await c.post(path, headers=bearer("new"))).status == 202
    current["token"] = None  # no token configured: mutating calls are open (loopback only)
    assert (await c.post(path)).status == 202


# ------------------------------------------------------------------ reload


async def test_a_successful_reload_is_200_with_its_summary(client):
    c = await client(FakeDaemon(reload_outcome=Outcome(True, "added fresh")))
    resp = await c.post("/-/reload")
    assert resp.status == 200
    assert await resp.json() == {"result": "success", "summary": "added fresh", "errors": []}


async def test_a_refused_reload_is_400_with_every_error(client):
    errors = ["c.yaml:3: checkpoints[0].name: field required", "c.yaml:9: bad cron"]
    outcome = Outcome(False, "config invalid; still running the previous one", errors)
    c = await client(FakeDaemon(reload_outcome=outcome))
    resp = await c.post("/-/reload")
    assert resp.status == 400
    body = await resp.json()
    assert body["result"] == "failure"
    assert body["errors"] == errors


# ------------------------------------------------------------------ runs


async def test_runs_are_listed_with_the_filters_passed_on(client):
    api = FakeDaemon()
    c = await client(api)
    resp = await c.get("/api/v1/runs?checkpoint=orders&status=failure&limit=5")
    assert resp.status == 200
    assert [r["run_id"] for r in (await resp.json())["runs"]] == [RUN_ID]
    assert api.queries == [{"checkpoint": "orders", "status": "failure", "limit": 5}]
    await c.get("/api/v1/checkpoints/orders/runs")
    assert api.queries[-1] == {"checkpoint": "orders", "status": None, "limit": 50}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be an integer from 1 to 1000"),
        ("limit=1001", "limit must be an integer from 1 to 1000"),
        ("limit=ten", "limit must be an integer from 1 to 1000"),
        ("status=great", "unknown status 'great'"),
        ("checkpoint=a%20b", "invalid checkpoint name 'a b'"),
    ],
)
async def test_bad_run_queries_are_400_and_say_what_is_allowed(client, query, message):
    api = FakeDaemon()
    c = await client(api)
    resp = await c.get(f"/api/v1/runs?{query}")
    assert resp.status == 400
    assert message in (await resp.json())["error"]
    assert api.queries == []


async def test_a_run_is_found_by_id(client):
    c = await client(FakeDaemon())
    resp = await c.get(f"/api/v1/runs/{RUN_ID}")
    assert resp.status == 200
    body = await resp.json()
    assert body["run_id"] == RUN_ID
    assert body["status"] == "success"


@pytest.mark.parametrize(
    ("run_id", "code"), [("not-a-uuid", 400), ("0192f0a4-0000-7000-8000-00000000ffff", 404)]
)
async def test_a_bad_or_unknown_run_id_is_an_error(client, run_id, code):
    c = await client(FakeDaemon())
    resp = await c.get(f"/api/v1/runs/{run_id}")
    assert resp.status == code
    assert "error" in await resp.json()


async def test_unknown_paths_and_methods_get_json_errors(client):
    c = await client(FakeDaemon())
    missing = await c.get("/nope")
    assert missing.status == 404
    assert "error" in await missing.json()
    wrong_method = await c.get("/-/reload")
    assert wrong_method.status == 405
    assert "error" in await wrong_method.json()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_only_loopback_hosts_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback
