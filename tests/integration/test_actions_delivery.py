"""Deliveries to real HTTP receivers on 127.0.0.1: retries, Retry-After, timeouts,
per-destination limits, circuit breaker, dead letters, signatures, ordering.

Each test runs the real ActionService (outbox in a real SQLite store,
dispatcher, aiohttp client) against aiohttp servers that play the receiver.
Results go in through ``service.journal.save_results`` exactly as the runner
hands them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from checkpointd.actions.service import ActionService
from checkpointd.actions.signing import verify
from checkpointd.checkpoints.result import CheckpointResult, Status, ValidatorResult
from checkpointd.config.models import Config
from checkpointd.metrics_base import NAMESPACE
from checkpointd.store.sqlite.store import SqliteStore

pytestmark = pytest.mark.timeout(60)

# ---------------------------------------------------------------- the receiver


@dataclass
class Reply:
    """What the receiver answers to one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: asyncio.Event | None = None  # answer only once this is set
    body: str = "ok"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class Receiver:
    """An aiohttp server that answers each path from a script, and records every request."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Seen]] = defaultdict(list)
        self._scripts: dict[str, list[Reply]] = {}
        self._then: dict[str, Reply] = {}
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.port = 0
        self._runner: web.AppRunner | None = None

    def script(self, path: str, *replies: Reply, then: Reply | None = None) -> str:
        """Answer ``path`` with ``replies`` in order, then with ``then`` (200 by default)."""
        self._scripts[path] = list(replies)
        self._then[path] = then or Reply()
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await request.read()
        self.seen[path].append(Seen(path, dict(request.headers), body, time.monotonic()))
        script = self._scripts.get(path, [])
        reply = script.pop(0) if script else self._then.get(path, Reply())
        self.in_flight[path] += 1
        self.peak[path] = max(self.peak[path], self.in_flight[path])
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.hold is not None:
                await reply.hold.wait()
        finally:
            self.in_flight[path] -= 1
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ThreadedReceiver:
    """A Receiver on an event loop of its own, in a thread: for synchronous tests (the CLI,
    the daemon as a subprocess). ``stop()`` and ``start()`` again keep the port."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    @property
    def port(self) -> int:
        return self.receiver.port

    def start(self) -> ThreadedReceiver:
        self._call(self.receiver.start())
        return self

    def stop(self) -> None:
        self._call(self.receiver.stop())

    def script(self, path: str, *replies: Reply, then: Reply | None = None) -> str:
        async def script() -> str:
            return self.receiver.script(path, *replies, then=then)

        return str(self._call(script()))

    def seen(self, path: str) -> list[Seen]:
        async def copy() -> list[Seen]:
            return list(self.receiver.seen[path])

        return list(self._call(copy()))

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


# ---------------------------------------------------------------- the service under test

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count(1)

FAST = {"backoff": {"initial": "20ms", "max": "100ms"}}


def make_config(state_dir, actions: list[dict[str, Any]] | dict[str, Any], **daemon_actions):
    section = actions if isinstance(actions, dict) else {"list": actions}
    return Config.model_validate(
        {
            "daemon": {
                "state_dir": str(state_dir),
                "actions": {"poll_interval": "100ms", **FAST, **daemon_actions},
            },
            "checkpoints": [
                {
                    "name": "orders",
                    "data_source": {"type": "inline", "rows": []},
                    "validators": [{"type": "range", "column": "amount", "min": 0}],
                    "actions": section,
                }
            ],
        }
    )


def make_result(status: Status = Status.FAILURE, checkpoint: str = "orders") -> CheckpointResult:
    n = next(_ids)
    failing = status is Status.FAILURE
    return CheckpointResult(
        run_id=f"0190aaaa-0000-7000-8000-{n:012d}",
        checkpoint=checkpoint,
        status=status,
        started_at=T0 + timedelta(minutes=n),
        finished_at=T0 + timedelta(minutes=n, seconds=1),
        validators=(
            ValidatorResult(
                type="range",
                column="amount",
                status=Status.FAILURE if failing else Status.SUCCESS,
                checked_count=100,
                failed_count=2 if failing else 0,
                failed_ratio=0.02 if failing else 0.0,
                sample=(-1.5, -7.0) if failing else (),
            ),
        ),
    )


class Harness:
    def __init__(self, config: Config, store: SqliteStore, registry: CollectorRegistry) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.service = ActionService(lambda: self.config, store, registry=registry)

    async def report(self, *results: CheckpointResult) -> None:
        await self.service.journal.save_results([(r, None) for r in results])

    async def deliveries(self, **kw):
        return await self.service.list_deliveries(limit=1000, **kw)

    async def wait_until(self, what: str, within: float = 20.0, **counts: int) -> None:
        """Wait until the outbox holds exactly ``counts`` (e.g. delivered=1, pending=0)."""
        deadline = time.monotonic() + within
        while True:
            found = await self.service.counts()
            if all(found.get(k, 0) == v for k, v in counts.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {found}")
            await asyncio.sleep(0.02)

    async def wait_for(self, condition: Any, what: str, within: float = 20.0) -> None:
        """Wait until ``condition()`` is true."""
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(f"{NAMESPACE}_{name}", labels or None)


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Harness]:
    store = await SqliteStore.open(config.daemon.state_dir, synchronous="NORMAL")
    harness = Harness(config, store, CollectorRegistry())
    harness.service.start()
    try:
        yield harness
    finally:
        await harness.service.stop(grace=0)
        await store.close()


def hook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "notify_on": "always", **extra}


# ---------------------------------------------------------------- tests


async def test_500_three_times_then_200_is_one_delivery_of_four_attempts_one_key(
    receiver, tmp_path
):
    url = receiver.script("/hook", Reply(500), Reply(500), Reply(500), then=Reply(200))
    async with running(make_config(tmp_path / "s", [hook(url)])) as h:
        await h.report(make_result())
        await h.wait_until("delivery", delivered=1, pending=0)
        (entry,) = await h.deliveries()
        assert (entry.status, entry.attempts, entry.last_status_code) == ("delivered", 4, 200)
        seen = receiver.seen["/hook"]
        assert len(seen) == 4
        assert {s.headers["Idempotency-Key"] for s in seen} == {entry.id}
        assert h.metric("action_deliveries_total", action="orders.webhook[0]",
                        result="failed") == 3  # fmt: skip
        assert h.metric("action_deliveries_total", action="orders.webhook[0]",
                        result="delivered") == 1  # fmt: skip
        assert h.metric("action_delivery_duration_seconds_count",
                        action="orders.webhook[0]") == 4  # fmt: skip
        # Stays delivered: nothing is sent again.
        await asyncio.sleep(0.3)
        assert len(receiver.seen["/hook"]) == 4


async def test_retry_after_on_429_and_503_is_honoured(receiver, tmp_path):
    url = receiver.script(
        "/limited",
        Reply(429, headers={"Retry-After": "1"}),
        Reply(503, headers={"Retry-After": "1"}),
        then=Reply(200),
    )
    async with running(make_config(tmp_path / "s", [hook(url)])) as h:
        await h.report(make_result())
        await h.wait_until("delivery", delivered=1)
        at = [s.at for s in receiver.seen["/limited"]]
        assert len(at) == 3
        # The backoff alone would retry within 100 ms; the receiver asked for a second.
        assert at[1] - at[0] >= 0.9
        assert at[2] - at[1] >= 0.9


async def test_a_hanging_receiver_is_cut_off_by_the_timeout(receiver, tmp_path):
    never = asyncio.Event()
    url = receiver.script("/hang", Reply(hold=never), then=Reply(200))
    config = make_config(tmp_path / "s", [hook(url, timeout="300ms")])
    async with running(config) as h:
        await h.report(make_result())
        await h.wait_until("delivery after the timeout", delivered=1)
        (entry,) = await h.deliveries()
        assert entry.attempts == 2
        assert len(receiver.seen["/hang"]) == 2
        assert h.metric("action_deliveries_total", action="orders.webhook[0]",
                        result="failed") == 1  # fmt: skip
        never.set()


async def test_a_peer_that_accepts_and_never_answers_is_cut_off_by_the_read_timeout(tmp_path):
    # A raw TCP server: the connection succeeds, no byte ever comes back.
    held: list[asyncio.StreamWriter] = []

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        action = hook(f"http://127.0.0.1:{port}/void", timeout="300ms", max_attempts=2)
        async with running(make_config(tmp_path / "s", [action])) as h:
            await h.report(make_result())
            await h.wait_until("a dead letter", dead=1, within=10)
            (entry,) = await h.deliveries()
            assert entry.attempts == 2
            assert "no answer within the 0.3s timeout" in entry.last_error
            assert len(held) == 2  # both attempts connected: it was the read that timed out
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def other_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


async def test_a_slow_receiver_does_not_delay_another(receiver, other_receiver, tmp_path):
    # Two receivers, two destinations (a destination is scheme://host:port).
    gate = asyncio.Event()
    slow = receiver.script("/slow", then=Reply(hold=gate))
    fast = other_receiver.script("/fast", then=Reply(200))
    actions = [hook(slow, name="slow", timeout="30s"), hook(fast, name="fast")]
    config = make_config(tmp_path / "s", actions, per_destination=2, max_in_flight=4)
    async with running(config) as h:
        # Twenty results: forty deliveries, twenty of them to the receiver that hangs.
        await h.report(*(make_result() for _ in range(20)))
        deadline = time.monotonic() + 15
        while len(other_receiver.seen["/fast"]) < 20:
            assert time.monotonic() < deadline, "the fast receiver was starved by the slow one"
            await asyncio.sleep(0.02)
        # ...while the slow receiver never had more than its per-destination share.
        assert receiver.peak["/slow"] <= 2
        assert len(receiver.seen["/slow"]) <= 2
        gate.set()
        await h.wait_until("all delivered", delivered=40, within=30)


async def test_deliveries_to_one_destination_respect_the_per_destination_limit(receiver, tmp_path):
    url = receiver.script("/busy", then=Reply(delay=0.1))
    config = make_config(tmp_path / "s", [hook(url)], per_destination=3)
    async with running(config) as h:
        await h.report(*(make_result() for _ in range(12)))
        await h.wait_until("all delivered", delivered=12)
        assert receiver.peak["/busy"] == 3


async def test_dead_letters_after_max_attempts_and_retry_delivers_them(receiver, tmp_path):
    url = receiver.script("/down", then=Reply(500))
    # A breaker that never opens here: this test is about attempts, not about the breaker.
    config = make_config(tmp_path / "s", [hook(url, max_attempts=3)], breaker={"failures": 99})
    async with running(config) as h:
        await h.report(make_result(), make_result())
        await h.wait_until("dead letters", dead=2, pending=0)
        dead = await h.deliveries(status="dead")
        assert {e.attempts for e in dead} == {3}
        assert all("answered HTTP 500" in (e.last_error or "") for e in dead)
        assert len(receiver.seen["/down"]) == 6
        await asyncio.sleep(0.3)  # housekeeping refreshes the gauges
        assert h.metric("action_dead_letters") == 2
        assert h.metric("action_deliveries_total", action="orders.webhook[0]",
                        result="dead") == 2  # fmt: skip

        receiver.script("/down", then=Reply(200))
        requeued = await h.service.retry()
        assert sorted(requeued) == sorted(e.id for e in dead)
        await h.wait_until("redelivery", delivered=2, dead=0)
        keys = [s.headers["Idempotency-Key"] for s in receiver.seen["/down"]]
        assert set(keys) == {e.id for e in dead}  # the same keys as before the retry


async def test_a_4xx_answer_is_dead_at_once(receiver, tmp_path):
    url = receiver.script("/gone", then=Reply(410))
    async with running(make_config(tmp_path / "s", [hook(url)])) as h:
        await h.report(make_result())
        await h.wait_until("dead letter", dead=1)
        (entry,) = await h.deliveries()
        assert entry.attempts == 1
        assert entry.last_status_code == 410


async def test_the_circuit_breaker_opens_then_probes_and_closes(receiver, tmp_path):
    url = receiver.script("/flaky", then=Reply(500))
    config = make_config(
        tmp_path / "s",
        [hook(url, max_attempts=50)],
        breaker={"failures": 2, "reset_after": "500ms"},
        per_destination=1,
    )
    async with running(config) as h:
        await h.report(make_result(), make_result(), make_result())
        deadline = time.monotonic() + 10
        while h.metric("action_circuit_open", action="orders.webhook[0]") != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        opened_with = len(receiver.seen["/flaky"])
        await asyncio.sleep(0.35)
        # Open: nothing is sent and no attempts are spent.
        assert len(receiver.seen["/flaky"]) == opened_with
        receiver.script("/flaky", then=Reply(200))
        await h.wait_until("delivery after the probe", delivered=3, within=10)
        assert h.metric("action_circuit_open", action="orders.webhook[0]") == 0
        entries = await h.deliveries()
        assert max(e.attempts for e in entries) < 50


async def test_the_receiver_verifies_the_hmac_signature(receiver, tmp_path):
    url = receiver.script("/signed")
    action = hook(url, secret="whsec-0123456789", headers={"X-Team": "data"})
    async with running(make_config(tmp_path / "s", [action])) as h:
        await h.report(make_result())
        await h.wait_until("delivery", delivered=1)
        (seen,) = receiver.seen["/signed"]
        header = seen.headers["X-Checkpointd-Signature"]
        assert verify("whsec-0123456789", header, seen.body, now=time.time())
        assert not verify("wrong-secret", header, seen.body, now=time.time())
        assert seen.headers["X-Team"] == "data"
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.json()["status"] == "failure"
        assert seen.json()["validators"][0]["sample"] == [-1.5, -7.0]


async def test_status_change_sends_only_transitions_and_the_recovered_form(receiver, tmp_path):
    url = receiver.script("/changes")
    action = hook(url, notify_on="status_change")
    async with running(make_config(tmp_path / "s", [action])) as h:
        statuses = [Status.SUCCESS, Status.SUCCESS, Status.FAILURE, Status.FAILURE,
                    Status.ERROR, Status.SUCCESS, Status.SUCCESS]  # fmt: skip
        for status in statuses:
            await h.report(make_result(status))
        await h.wait_until("transitions", delivered=4, pending=0)
        seen = sorted(receiver.seen["/changes"], key=lambda s: s.json()["run_id"])
        got = [(s.json()["status"], s.headers["X-Checkpointd-Notification"],
                s.headers.get("X-Checkpointd-Previous-Status")) for s in seen]  # fmt: skip
        assert got == [
            ("success", "notify", None),
            ("failure", "notify", "success"),
            ("error", "notify", "failure"),
            ("success", "recovered", "error"),
        ]


async def test_sequential_actions_go_one_after_another_even_past_a_dead_one(receiver, tmp_path):
    first = receiver.script("/first", then=Reply(500))
    second = receiver.script("/second")
    actions = {
        "strategy": "sequential",
        "list": [hook(first, max_attempts=2), hook(second)],
    }
    async with running(make_config(tmp_path / "s", actions)) as h:
        await h.report(make_result())
        await h.wait_until("both settled", dead=1, delivered=1)
        assert len(receiver.seen["/first"]) == 2
        (second_seen,) = receiver.seen["/second"]
        assert second_seen.at > receiver.seen["/first"][-1].at


async def test_a_pipeline_runs_stage_after_stage(receiver, tmp_path):
    urls = [receiver.script(f"/p{i}", then=Reply(delay=0.15)) for i in range(3)]
    actions = {
        "strategy": "pipeline",
        "stages": [[0, 1], [2]],
        "list": [hook(u) for u in urls],
    }
    async with running(make_config(tmp_path / "s", actions)) as h:
        await h.report(make_result())
        await h.wait_until("all three", delivered=3)
        p0, p1, p2 = (receiver.seen[f"/p{i}"][0].at for i in range(3))
        assert abs(p0 - p1) < 0.14  # one stage: together
        assert p2 >= max(p0, p1) + 0.14  # next stage: after both answered


async def test_concurrent_max_concurrency_caps_one_runs_deliveries(receiver, tmp_path):
    urls = [receiver.script(f"/c{i}", then=Reply(delay=0.2)) for i in range(4)]
    actions = {"strategy": "concurrent", "max_concurrency": 2, "list": [hook(u) for u in urls]}
    async with running(make_config(tmp_path / "s", actions)) as h:
        await h.report(make_result())
        await h.wait_until("all four", delivered=4)
        starts = sorted(receiver.seen[f"/c{i}"][0].at for i in range(4))
        assert starts[2] - starts[0] >= 0.19  # the third waited for a slot


async def test_pending_deliveries_survive_a_restart_and_are_delivered_once(receiver, tmp_path):
    url = receiver.script("/later", then=Reply(503))
    config = make_config(tmp_path / "s", [hook(url, max_attempts=100)])
    async with running(config) as h:
        await h.report(make_result())
        await h.wait_for(lambda: len(receiver.seen["/later"]) >= 2, "two failed attempts")
    attempts_before = len(receiver.seen["/later"])
    receiver.script("/later", then=Reply(200))
    async with running(config) as h:
        await h.wait_until("delivery after restart", delivered=1, pending=0)
        await asyncio.sleep(0.3)
    oks = len(receiver.seen["/later"]) - attempts_before
    assert oks == 1


async def test_a_reload_redirects_pending_deliveries_and_kills_those_of_removed_actions(
    receiver, tmp_path
):
    old = receiver.script("/old", then=Reply(503))
    doomed = receiver.script("/doomed", then=Reply(503))
    new = receiver.script("/new")
    first = make_config(
        tmp_path / "s",
        [hook(old, name="main", max_attempts=100), hook(doomed, name="extra", max_attempts=100)],
        breaker={"failures": 99},
    )
    async with running(first) as h:
        await h.report(make_result())
        await h.wait_for(
            lambda: receiver.seen["/old"] and receiver.seen["/doomed"], "first attempts"
        )
        # The operator fixes the URL and drops the extra action (SIGHUP).
        h.config = make_config(tmp_path / "s", [hook(new, name="main")])
        await h.wait_until("settled", delivered=1, dead=1, pending=0)
        entries = {e.action: e for e in await h.deliveries()}
        assert entries["main"].status == "delivered"
        assert len(receiver.seen["/new"]) == 1
        assert "no longer configured" in entries["extra"].last_error
        assert h.metric("action_deliveries_total", action="extra", result="failed") is None
