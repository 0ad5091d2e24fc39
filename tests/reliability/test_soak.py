"""Soak: steady load for a long while, watching for slow leaks.

Files land five times a second (and are moved away once checked), a schedule fires every
second, an HTTP client reads every endpoint and asks for a manual run each second. Every
``soak_sample_every`` seconds the test samples the daemon's resident memory, open file
descriptors, threads and asyncio tasks (``checkpointd_asyncio_tasks``). After a warm-up the
descriptors and tasks must stay flat, the threads Python starts must stay under what the
configured pools allow, and the RSS slope is reported (and must stay under a generous ceiling
that only a real leak crosses). CI soaks for 3 minutes, the full run for 30.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
import urllib.error

from tests.e2e.harness import (
    DaemonProcess,
    free_port,
    query_state,
    start_daemon,
    stop_quietly,
    wait_for,
)
from tests.reliability.support import (
    WARNINGS_ENV,
    FileFeeder,
    log_mentions,
    open_fds,
    proc_status,
    slope_per_minute,
    thread_kinds,
)

FLAT_TOLERANCE = {"fds": 6, "tasks": 10}
"""How far the median of the last third of the samples may sit above the first third's."""

MAX_CONCURRENT = 4
PYTHON_THREAD_CEILING = 1 + 2 + (MAX_CONCURRENT + 2) + min(32, (os.cpu_count() or 1) + 4) + 2
"""Threads the interpreter may start: the main one, one per SQLite connection (aiosqlite),
the run executor (max_concurrent_checkpoints + 2), asyncio's default executor, and two to
spare. Executors start threads lazily, so the count climbs for a while; a leak passes this.
(polars' own pools, e.g. tokio's blocking threads, grow and shrink with the load; their count
is reported, not judged.)"""

RSS_SLOPE_CEILING_MIB_PER_MIN = 3.0
"""A leak of ~50 KiB per run at this load crosses it; allocator noise stays far below."""

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: {slots}
  graceful_shutdown_timeout: 10s
  log: {{format: json, level: warning}}
checkpoints:
  - name: landing
    data_source: {{type: csv, path: "{{trigger.path}}"}}
    validators:
      - {{type: not_null, columns: [id]}}
      - {{type: unique, columns: [id]}}
    triggers:
      - {{type: file, directory: {incoming}, pattern: "*.csv", stable_for: 200ms,
          poll_interval: 100ms, move_on_success: {done}, move_on_failure: {failed}}}
  - name: ticking
    data_source: {{type: inline, rows: [{{id: 1, v: 2.5}}, {{id: 2, v: 3.5}}]}}
    validators:
      - {{type: range, column: v, min: 0, max: 10}}
    triggers:
      - {{type: schedule, interval: 1s}}
  - name: manual
    data_source: {{type: inline, rows: [{{id: 1}}]}}
    overlap: allow
    validators:
      - {{type: not_null, columns: [id]}}
    triggers:
      - {{type: manual}}
"""


class Reader(threading.Thread):
    """An HTTP client that reads every endpoint five times a second and runs ``manual``
    once a second."""

    PATHS = ("/healthz", "/readyz", "/metrics", "/api/v1/checkpoints", "/api/v1/runs?limit=50")

    def __init__(self, daemon: DaemonProcess) -> None:
        super().__init__(name="soak-reader", daemon=True)
        self.server = daemon
        self.stopped = threading.Event()
        self.failures: list[str] = []
        self.run_ids: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stopped.wait(0.2):
            n += 1
            try:
                if n % 5 == 0:
                    self.run_ids.append(self.server.post_run("manual"))
                else:
                    answer = self.server.get(self.PATHS[n % len(self.PATHS)])
                    if answer.status != 200:
                        self.failures.append(f"{answer.status} {answer.body[:200]!r}")
            except (OSError, urllib.error.URLError, AssertionError) as exc:
                self.failures.append(repr(exc))


def _sample(daemon: DaemonProcess, started: float) -> dict[str, float]:
    status = proc_status(daemon.proc.pid)
    python_threads, native_threads = thread_kinds(daemon.proc.pid)
    return {
        "t": time.monotonic() - started,
        "rss_mib": status["VmRSS"] / 1024,
        "python_threads": float(python_threads),
        "native_threads": float(native_threads),
        "fds": float(open_fds(daemon.proc.pid)),
        "tasks": daemon.metric("checkpointd_asyncio_tasks") or 0.0,
    }


def _thirds(samples: list[dict[str, float]], key: str) -> tuple[float, float]:
    third = max(1, len(samples) // 3)
    first = statistics.median(s[key] for s in samples[:third])
    last = statistics.median(s[key] for s in samples[-third:])
    return first, last


def test_steady_load_leaks_no_fds_threads_or_tasks_and_rss_stays_flat(tmp_path, scale, figures):
    incoming, staging = tmp_path / "incoming", tmp_path / "staging"
    done, failed = tmp_path / "done", tmp_path / "failed"
    for folder in (incoming, staging):
        folder.mkdir()
    state = tmp_path / "state"
    config = tmp_path / "checkpointd.yaml"
    config.write_text(
        CONFIG.format(
            state=state, incoming=incoming, done=done, failed=failed, slots=MAX_CONCURRENT
        )
    )
    daemon = start_daemon(
        config, port=free_port(), log_path=tmp_path / "daemon.log", env=WARNINGS_ENV
    )
    feeder = FileFeeder(incoming, staging, interval=0.2, seed=11)
    reader = Reader(daemon)
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    try:
        feeder.start()
        reader.start()
        while time.monotonic() - started < scale.soak_seconds:
            time.sleep(scale.soak_sample_every)
            assert daemon.proc.poll() is None, daemon.log()[-3000:]
            samples.append(_sample(daemon, started))
    finally:
        reader.stopped.set()
        reader.join(timeout=30)
        fed = feeder.stop()

    try:
        wanted = {f.key for f in fed}
        wait_for(
            lambda: wanted <= {r[0] for r in query_state(state, "SELECT journal_key FROM runs")},
            timeout=120,
            interval=1.0,
            what="the last landed files' runs",
        )
        daemon.signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    finally:
        stop_quietly(daemon)

    steady = [s for s in samples if s["t"] >= scale.soak_warmup]
    rss_slope = slope_per_minute([s["t"] for s in steady], [s["rss_mib"] for s in steady])
    per_key = query_state(
        state, "SELECT journal_key, count(*) FROM runs GROUP BY journal_key HAVING count(*) > 1"
    )
    figures["soak_seconds"] = scale.soak_seconds
    figures["samples"] = len(samples)
    figures["files_landed"] = len(fed)
    figures["manual_runs"] = len(reader.run_ids)
    figures["runs_total"] = query_state(state, "SELECT count(*) FROM runs")[0][0]
    figures["rss_mib_first_last"] = [
        round(steady[0]["rss_mib"], 1),
        round(steady[-1]["rss_mib"], 1),
    ]
    figures["rss_slope_mib_per_min"] = round(rss_slope, 3)
    for key in (*FLAT_TOLERANCE, "python_threads", "native_threads"):
        low, high = min(s[key] for s in steady), max(s[key] for s in steady)
        figures[f"{key}_min_max"] = [low, high]
    figures["series"] = [{k: round(v, 2) for k, v in s.items()} for s in samples]

    assert code == 0, daemon.log()[-3000:]
    assert log_mentions(daemon.log()) == [], daemon.log()[-3000:]
    assert reader.failures == [], reader.failures[:5]
    assert per_key == [], f"events that ran twice: {per_key[:3]}"
    assert len(steady) >= 5, "too few samples after the warm-up to judge"
    for key, tolerance in FLAT_TOLERANCE.items():
        first, last = _thirds(steady, key)
        assert last - first <= tolerance, f"{key} grew from {first} to {last} under steady load"
    most_threads = max(s["python_threads"] for s in samples)
    assert most_threads <= PYTHON_THREAD_CEILING, f"{most_threads} Python threads"
    assert rss_slope < RSS_SLOPE_CEILING_MIB_PER_MIN, f"RSS grows {rss_slope:.2f} MiB/min"
