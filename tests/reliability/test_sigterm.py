"""SIGTERM under load: files landing, slow runs filling the pool, HTTP clients hammering.

The daemon must exit 0 within its drain timeout (``graceful_shutdown_timeout``, plus a
little slack for the process to end) and print nothing that betrays a sloppy shutdown:
no "Task was destroyed", no "Unclosed ...", no ResourceWarning (made visible with
``PYTHONWARNINGS``), no traceback.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.datagen import SLOW_VALIDATORS, write_big_csv
from tests.e2e.harness import DaemonProcess, free_port, start_daemon, stop_quietly, wait_for
from tests.reliability.support import WARNINGS_ENV, FileFeeder, log_mentions

GRACE_SECONDS = 3
EXIT_SLACK_SECONDS = 4
"""Beyond the grace time: cancelling runs, the last store flush, interpreter exit."""

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 4
  graceful_shutdown_timeout: {grace}s
  log: {{format: json, level: info}}
checkpoints:
  - name: slow
    data_source: {{type: csv, path: {big}}}
    overlap: allow
    validators:
{validators}
    triggers:
      - {{type: manual}}
  - name: landing
    data_source: {{type: csv, path: "{{trigger.path}}"}}
    validators:
      - {{type: unique, columns: [id]}}
    triggers:
      - {{type: file, directory: {incoming}, pattern: "*.csv", stable_for: 100ms,
          poll_interval: 50ms}}
  - name: ticking
    data_source: {{type: inline, rows: [{{id: 1}}, {{id: 2}}]}}
    validators:
      - {{type: not_null, columns: [id]}}
    triggers:
      - {{type: schedule, interval: 200ms}}
"""


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data that takes SLOW_VALIDATORS about a second per run."""
    return write_big_csv(tmp_path_factory.mktemp("data") / "big.csv", 300_000)


class Hammer(threading.Thread):
    """HTTP clients on a loop: reads of every kind, and manual runs of the slow checkpoint."""

    PATHS = ("/healthz", "/readyz", "/metrics", "/api/v1/checkpoints", "/api/v1/runs?limit=20")

    def __init__(self, daemon: DaemonProcess, index: int) -> None:
        super().__init__(name=f"hammer-{index}", daemon=True)
        self.server = daemon
        self.index = index
        self.stopped = threading.Event()
        self.answered = 0

    def run(self) -> None:
        n = self.index
        while not self.stopped.is_set():
            n += 1
            try:
                if n % 7 == 0:
                    self.server.post("/api/v1/checkpoints/slow/runs", timeout=5)
                else:
                    self.server.get(self.PATHS[n % len(self.PATHS)], timeout=5)
                self.answered += 1
            except (OSError, urllib.error.URLError):
                # The server goes away mid-request during the stop: expected.
                time.sleep(0.01)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_sigterm_under_load_exits_0_within_the_drain_timeout_without_leaks(
    tmp_path, big_csv, loop, figures
):
    incoming, staging = tmp_path / "incoming", tmp_path / "staging"
    incoming.mkdir()
    staging.mkdir()
    config = tmp_path / "checkpointd.yaml"
    config.write_text(
        CONFIG.format(
            state=tmp_path / "state",
            grace=GRACE_SECONDS,
            big=big_csv,
            validators=SLOW_VALIDATORS,
            incoming=incoming,
        )
    )
    daemon = start_daemon(
        config, port=free_port(), log_path=tmp_path / "daemon.log", env=WARNINGS_ENV, loop=loop
    )
    feeder = FileFeeder(incoming, staging, interval=0.02, seed=7)
    hammers = [Hammer(daemon, i) for i in range(4)]
    try:
        # Load is real: files keep landing and being checked, then slow runs fill the pool.
        feeder.start()
        wait_for(
            lambda: (
                (
                    daemon.metric("checkpointd_runs_total", checkpoint="landing", status="success")
                    or 0
                )
                >= 5
            ),
            timeout=60,
            what="landed files being checked",
        )
        for hammer in hammers:
            hammer.start()
        wait_for(
            lambda: (daemon.metric("checkpointd_runs_in_flight") or 0) >= 3,
            timeout=60,
            what="slow runs in flight",
        )
        in_flight = daemon.metric("checkpointd_runs_in_flight")

        # The clients stop with the signal (requests in flight finish or fail): clients
        # still connecting while the server closes are the storm test's subject, below.
        for hammer in hammers:
            hammer.stopped.set()
        asked = time.monotonic()
        daemon.signal(signal.SIGTERM)
        try:
            code: int | None = daemon.wait(timeout=GRACE_SECONDS + EXIT_SLACK_SECONDS)
        except subprocess.TimeoutExpired:
            code = None  # still running after the drain timeout and the slack
        took = time.monotonic() - asked
    finally:
        feeder.stop()
        for hammer in hammers:
            hammer.stopped.set()
        for hammer in hammers:
            hammer.join(timeout=10)
        stop_quietly(daemon)

    output = daemon.log()
    figures["loop"] = loop
    figures["runs_in_flight_at_sigterm"] = in_flight
    figures["http_requests_answered"] = sum(h.answered for h in hammers)
    figures["files_landed"] = len(feeder.fed)
    figures["seconds_to_exit"] = round(took, 2)
    figures["drain_timeout_seconds"] = GRACE_SECONDS
    assert code == 0, f"exit {code} after {took:.1f}s:\n{output[-3000:]}"
    assert log_mentions(output) == [], output[-3000:]


STORM_CONFIG = """
daemon:
  state_dir: {state}
  graceful_shutdown_timeout: 1s
  log: {{format: json, level: info}}
checkpoints:
  - name: tiny
    data_source: {{type: inline, rows: [{{id: 1}}]}}
    validators:
      - {{type: not_null, columns: [id]}}
    triggers:
      - {{type: manual}}
"""

STORM_CLIENTS = 32
STORM_STOPS = 6
"""Stops per test: with the asyncio loop each stop showed the bug about three times in four."""


def _storm(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = sock.recv(4096)
                while answer:  # read the whole answer, until the server closes
                    answer = sock.recv(4096)
        except OSError:
            time.sleep(0.001)  # refused once the site is closed: keep knocking


@pytest.mark.parametrize(
    "loop",
    [
        "uvloop",
        "asyncio",
    ],
)
def test_clients_connecting_while_the_daemon_stops_leave_nothing_unclosed(tmp_path, loop, figures):
    config = tmp_path / "checkpointd.yaml"
    config.write_text(STORM_CONFIG.format(state=tmp_path / "state"))
    took: list[float] = []
    for attempt in range(STORM_STOPS):
        log = tmp_path / f"daemon-{attempt}.log"
        daemon = start_daemon(config, port=free_port(), log_path=log, env=WARNINGS_ENV, loop=loop)
        stop = threading.Event()
        clients = [
            threading.Thread(target=_storm, args=(daemon.port, stop), daemon=True)
            for _ in range(STORM_CLIENTS)
        ]
        try:
            for client in clients:
                client.start()
            time.sleep(0.5)
            asked = time.monotonic()
            daemon.signal(signal.SIGTERM)
            try:
                code: int | None = daemon.wait(timeout=1 + EXIT_SLACK_SECONDS)
            except subprocess.TimeoutExpired:
                code = None
            took.append(round(time.monotonic() - asked, 2))
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=10)
            stop_quietly(daemon)
        figures["loop"] = loop
        figures["seconds_to_exit"] = took
        output = daemon.log()
        assert code == 0, f"stop {attempt + 1}: exit {code} after {took[-1]}s\n{output[-2000:]}"
        assert log_mentions(output) == [], f"stop {attempt + 1}:\n{output[-2000:]}"
