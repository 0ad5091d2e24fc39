"""The HTTP surface under abuse: bad tokens, oversized bodies, hostile path parameters, and a
burst of 1,000 concurrent requests on loopback.

One daemon (with a token and a small body limit) serves the whole module.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.harness import (
    DaemonProcess,
    free_port,
    query_state,
    start_daemon,
    stop_quietly,
    wait_for,
)
from tests.reliability.support import open_fds

TOKEN = "s3cret-token"
MAX_BODY = 4096

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 4
  result_queue_size: 2000
  http: {{max_body_bytes: {max_body}}}
  log: {{format: json, level: warning}}
checkpoints:
  - name: tiny
    data_source: {{type: inline, rows: [{{id: 1}}, {{id: 2}}]}}
    overlap: allow
    validators:
      - {{type: not_null, columns: [id]}}
    triggers:
      - {{type: manual}}
"""

MUTATING = ("/api/v1/checkpoints/tiny/runs", "/-/reload")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("http")
    config = folder / "checkpointd.yaml"
    config.write_text(CONFIG.format(state=folder / "state", max_body=MAX_BODY))
    process = start_daemon(
        config,
        port=free_port(),
        log_path=folder / "daemon.log",
        env={"CHECKPOINTD_HTTP_TOKEN": TOKEN},
        token=TOKEN,
        loop="uvloop",
    )
    try:
        yield process
    finally:
        stop_quietly(process)


def _raw(daemon: DaemonProcess, request: bytes, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send a hand-written HTTP/1.1 request; (status, body). Reads until the server closes
    the connection or ``timeout`` seconds pass without a byte."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    response = b"".join(chunks)
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0
    return status, response.partition(b"\r\n\r\n")[2]


# ------------------------------------------------------------------ tokens


@pytest.mark.parametrize("path", MUTATING)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        TOKEN,
        f"Bearer {TOKEN.upper()}",
    ],
)
def test_mutating_endpoints_refuse_a_missing_or_wrong_token_with_401(daemon, path, authorization):
    header = b"" if authorization is None else f"Authorization: {authorization}\r\n".encode()
    runs_before = len(daemon.runs())
    status, body = _raw(
        daemon,
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n" + header + b"\r\n",
    )
    assert status == 401, body
    assert b"bearer token" in body
    assert len(daemon.runs()) == runs_before


@pytest.mark.parametrize("path", MUTATING)
def test_a_header_too_large_to_read_is_refused_before_any_handler(daemon, path):
    runs_before = len(daemon.runs())
    status, body = _raw(
        daemon,
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Connection: close\r\nAuthorization: Bearer " + b"A" * 10_000 + b"\r\n\r\n",
    )
    assert status == 400, body  # aiohttp's limit on a header line: 8190 bytes
    assert len(daemon.runs()) == runs_before


def test_the_right_token_is_accepted(daemon):
    runs_before = len(daemon.runs())
    assert daemon.post("/api/v1/checkpoints/tiny/runs").status == 202
    assert daemon.post("/-/reload").status == 200
    # The accepted run finishes in the background; wait for it so that later tests, which
    # count runs, do not see it land in the middle of their own count.
    wait_for(lambda: len(daemon.runs()) == runs_before + 1, what="the accepted run recorded")


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize("path", MUTATING)
@pytest.mark.parametrize("size", [MAX_BODY + 1, 1024**3])
def test_an_oversized_body_is_refused_with_413(daemon, path, size):
    # Only the first 64 KiB are sent: the declared length alone must be enough to refuse.
    runs_before = len(daemon.runs())
    status, body = _raw(
        daemon,
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {size}\r\n\r\n".encode()
        + b"x" * min(size, 65536),
        # The rest of the body never comes: a server that answered has answered by now.
        timeout=1.5,
    )
    assert status == 413, body[:200]
    assert len(daemon.runs()) == runs_before


def test_an_oversized_chunked_body_is_refused_with_413(daemon):
    chunk = b"y" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(64)) + b"0\r\n\r\n"
    runs_before = len(daemon.runs())
    status, answer = _raw(
        daemon,
        b"POST /api/v1/checkpoints/tiny/runs HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        + body,
    )
    assert status == 413, answer[:200]
    assert len(daemon.runs()) == runs_before


# ------------------------------------------------------------------ path parameters


@pytest.mark.parametrize(
    "name",
    [
        "a" * 129,
        "bad%20name",
        "%2e%2e",
        "..",
        "-leading-dash",
        "nul%00byte",
        "%C3%BCnicode",
        "semi;colon",
        "quote'%22",
        "%0d%0aInjected:%20header",
        "%ff%fe",
    ],
)
def test_a_bad_checkpoint_name_is_a_400_or_404_never_a_500(daemon, name):
    for method in ("GET", "POST"):
        answer = daemon.request(method, f"/api/v1/checkpoints/{name}/runs")
        assert answer.status in (400, 404), (method, name, answer.status, answer.body[:200])
        assert "error" in answer.json()


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=abc",
        "limit=1e3",
        "limit=" + "9" * 400,
        "status=bogus",
        "status=%00",
        "checkpoint=bad%20name",
        "checkpoint=" + "c" * 500,
    ],
)
def test_bad_query_parameters_are_a_400(daemon, query):
    answer = daemon.get(f"/api/v1/runs?{query}")
    assert answer.status == 400, (query, answer.status, answer.body[:200])
    assert "error" in answer.json()


@pytest.mark.parametrize(
    "run_id",
    [
        "not-a-uuid",
        "x" * 36,
        "'%20OR%201=1;--",
        "0" * 37,
        "%00" * 12,
        "0192f0a4-0000-7000-8000-00000000000g",
    ],
)
def test_a_bad_run_id_is_a_400(daemon, run_id):
    answer = daemon.get(f"/api/v1/runs/{run_id}")
    assert answer.status == 400, (run_id, answer.status, answer.body[:200])


def test_an_unknown_run_id_of_the_right_shape_is_a_404(daemon):
    answer = daemon.get("/api/v1/runs/0192f0a4-0000-7000-8000-000000000000")
    assert answer.status == 404
    assert "error" in answer.json()


# ------------------------------------------------------------------ burst


async def _burst(daemon: DaemonProcess, total: int) -> tuple[Counter[object], list[str]]:
    paths = ["/healthz", "/readyz", "/metrics", "/api/v1/checkpoints", "/api/v1/runs?limit=5"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    outcomes: Counter[object] = Counter()
    run_ids: list[str] = []
    start = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> None:
            await start.wait()  # all at once
            try:
                if i % 10 == 0:
                    url = f"{daemon.url}/api/v1/checkpoints/tiny/runs"
                    async with session.post(url, headers=headers) as resp:
                        outcomes[resp.status] += 1
                        if resp.status == 202:
                            run_ids.append((await resp.json())["run_id"])
                else:
                    async with session.get(daemon.url + paths[i % len(paths)]) as resp:
                        await resp.read()
                        outcomes[resp.status] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1

        tasks = [asyncio.create_task(one(i)) for i in range(total)]
        await asyncio.sleep(0.1)
        start.set()
        await asyncio.gather(*tasks)
    return outcomes, run_ids


async def test_the_server_survives_a_burst_of_concurrent_requests(daemon, scale, figures):
    fds_before = open_fds(daemon.proc.pid)
    outcomes, run_ids = await _burst(daemon, scale.burst_requests)

    figures["concurrent_requests"] = scale.burst_requests
    figures["outcomes"] = {str(k): v for k, v in outcomes.items()}
    assert daemon.proc.poll() is None, daemon.log()[-3000:]
    assert set(outcomes) <= {200, 202}, outcomes
    assert sum(outcomes.values()) == scale.burst_requests
    assert daemon.get("/healthz").status == 200

    # Every accepted manual run really ran, once.
    state = Path(daemon.config_path).parent / "state"
    keys = {f"manual:{run_id}" for run_id in run_ids}

    def all_done() -> bool:
        rows = query_state(state, "SELECT journal_key FROM runs WHERE checkpoint = 'tiny'")
        return keys <= {r[0] for r in rows}

    wait_for(all_done, timeout=60, what="every manual run of the burst")
    rows = query_state(state, "SELECT journal_key FROM runs WHERE checkpoint = 'tiny'")
    counted = Counter(r[0] for r in rows if r[0] in keys)
    assert set(counted.values()) == {1}
    # The connections are gone again (no leaked sockets).
    wait_for(
        lambda: open_fds(daemon.proc.pid) <= fds_before + 5,
        timeout=30,
        what=f"open fds back near {fds_before}",
    )
    figures["open_fds_before_after"] = [fds_before, open_fds(daemon.proc.pid)]


def test_after_all_that_the_daemon_still_stops_cleanly(daemon):
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0, daemon.log()[-3000:]
