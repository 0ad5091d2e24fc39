"""The real daemon as a subprocess, for the workloads that measure it from outside.

``Daemon.start(config_text, directory)`` writes the config, runs
``python -m checkpointd run -c FILE`` on a free loopback port, and waits for ``/readyz``.
RSS and CPU come from /proc, figures from ``/metrics`` (prometheus text format).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.common import cpu_seconds, rss_mib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    directory: Path
    started_at: float
    ready_seconds: float = float("nan")

    @classmethod
    def start(cls, config_text: str, directory: Path, *, ready_timeout: float = 300.0) -> Daemon:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "checkpointd.yaml"
        config.write_text(config_text)
        port = free_port()
        env = {**os.environ, "CHECKPOINTD_HTTP_LISTEN": f"127.0.0.1:{port}"}
        env.pop("NOTIFY_SOCKET", None)
        log = (directory / "daemon.log").open("ab")
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "checkpointd", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=directory,
            start_new_session=True,
        )
        log.close()
        daemon = cls(proc, port, directory, started)
        deadline = started + ready_timeout
        while not daemon.ready():
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}: {daemon.log()[-2000:]}")
            if time.monotonic() > deadline:
                daemon.kill()
                raise RuntimeError(f"daemon not ready after {ready_timeout}s")
            time.sleep(0.05)
        daemon.ready_seconds = time.monotonic() - started
        return daemon

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.directory / "daemon.log").read_text(errors="replace")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, timeout: float = 60.0) -> int:
        req = urllib.request.Request(self.url + path, method="POST", data=b"")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, summed over labels: ``{name: value}``."""
        _, body = self.get("/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            metric, _, value = line.rpartition(" ")
            name = metric.partition("{")[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                continue
        return out

    def rss_mib(self) -> float | None:
        return rss_mib(self.proc.pid)

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.proc.pid)

    def terminate(self, timeout: float = 120.0) -> float:
        """SIGTERM; seconds until the process has exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def daemon_yaml(
    checkpoints: str,
    *,
    workers: int = 8,
    queue: int = 1000,
    grace: str = "60s",
    loop: str = "uvloop",
) -> str:
    """A config with quiet logs and state in ./state, around a ``checkpoints:`` block."""
    return (
        "daemon:\n"
        f"  loop: {loop}\n"
        f"  max_concurrent_checkpoints: {workers}\n"
        f"  result_queue_size: {queue}\n"
        f"  graceful_shutdown_timeout: {grace}\n"
        "  state_dir: ./state\n"
        "  log: {format: json, level: warning}\n"
        "checkpoints:\n" + checkpoints
    )
