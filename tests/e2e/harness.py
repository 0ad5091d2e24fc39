"""Drive the real daemon from outside: a subprocess, its HTTP API, its signals.

``run_daemon(config_text, tmp_path, loop=...)`` writes the config, starts
``python -m checkpointd run -c FILE --loop LOOP`` on a free loopback port,
waits for ``/readyz`` and yields a ``DaemonProcess``. Tests take the loop from
the ``daemon_loop`` fixture (tests/e2e/conftest.py), so the suite runs under
both uvloop and asyncio; without ``loop=`` it is ``CHECKPOINTD_TEST_LOOP``.
``DaemonProcess.restart()`` starts the daemon again on the same config, port,
state dir and log, as an operator (or systemd) would after a stop or a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkpointd.store.sqlite.store import DB_FILE_NAME

LOOP = os.environ.get("CHECKPOINTD_TEST_LOOP", "asyncio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # conditions may race a starting daemon
            last_exc = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_exc}")


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class DaemonProcess:
    config_path: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    token: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    loop: str = LOOP
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: bytes | None = None,
        timeout: float = 10.0,
    ) -> Response:
        req = urllib.request.Request(self.url + path, method=method, data=body)
        tok = token if token is not None else self.token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Response(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read(), dict(exc.headers))

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.request("POST", path, body=kw.pop("body", b""), **kw)

    def runs(self, **query: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        resp = self.get(f"/api/v1/runs?limit=1000&{qs}")
        assert resp.status == 200, resp.body
        return list(resp.json()["runs"])

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from /metrics (None when absent)."""
        text = self.get("/metrics").body.decode()
        return parse_metric(text, name, labels)

    def ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=2).status == 200
        except OSError:
            return False

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def restart(self, *, wait_ready: bool = True) -> DaemonProcess:
        """Start the daemon again (this one must have exited) with the same everything."""
        assert self.proc.poll() is not None, "stop the daemon before restarting it"
        return start_daemon(
            self.config_path,
            port=self.port,
            log_path=self.log_path,
            env=self.extra_env,
            token=self.token,
            args=self.args,
            loop=self.loop,
            wait_ready=wait_ready,
        )

    def post_run(self, checkpoint: str) -> str:
        """POST a manual run; its run id."""
        resp = self.post(f"/api/v1/checkpoints/{checkpoint}/runs")
        assert resp.status == 202, (resp.status, resp.body)
        return str(resp.json()["run_id"])

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        resp = self.get("/api/v1/checkpoints")
        assert resp.status == 200, resp.body
        return {c["name"]: c for c in resp.json()["checkpoints"]}

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events


def parse_metric(text: str, name: str, labels: dict[str, str]) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        base, _, label_text = metric.partition("{")
        if base != name:
            continue
        got = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        got = {k: v.strip('"') for k, v in got.items()}
        if all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def query_state(state_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the daemon's SQLite state (only reads; WAL lets it run beside the daemon)."""
    conn = sqlite3.connect(state_dir / DB_FILE_NAME, timeout=10)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def start_daemon(
    config_path: Path,
    *,
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    token: str | None = None,
    args: list[str] | None = None,
    loop: str = LOOP,
    wait_ready: bool = True,
    timeout: float = 60.0,
) -> DaemonProcess:
    full_env = {
        **os.environ,
        "CHECKPOINTD_HTTP_LISTEN": f"127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    full_env.pop("NOTIFY_SOCKET", None) if "NOTIFY_SOCKET" not in (env or {}) else None
    cmd = [
        sys.executable,
        "-m",
        "checkpointd",
        "run",
        "-c",
        str(config_path),
        "--loop",
        loop,
        *(args or []),
    ]
    log = log_path.open("ab")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
    )
    log.close()
    daemon = DaemonProcess(
        config_path,
        port,
        proc,
        log_path,
        token=token,
        extra_env=dict(env or {}),
        loop=loop,
        args=list(args or []),
    )
    if wait_ready:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited {proc.returncode}:\n{daemon.log()[-4000:]}")
            return daemon.ready()

        try:
            wait_for(up, timeout=timeout, what="/readyz")
        except AssertionError:
            stop_quietly(daemon)
            raise
    return daemon


def stop_quietly(daemon: DaemonProcess) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)


@contextlib.contextmanager
def run_daemon(
    config_text: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    token: str | None = None,
    args: list[str] | None = None,
    loop: str = LOOP,
) -> Iterator[DaemonProcess]:
    """Start the daemon on ``config_text`` (written to tmp_path/checkpointd.yaml), stop it after."""
    config_path = tmp_path / "checkpointd.yaml"
    config_path.write_text(config_text)
    daemon = start_daemon(
        config_path,
        port=free_port(),
        log_path=tmp_path / "daemon.log",
        env=env,
        token=token,
        args=args,
        loop=loop,
    )
    try:
        yield daemon
    finally:
        stop_quietly(daemon)
