"""Workload 7, operations: idle RSS, RSS with many checkpoints, SIGTERM drain, reload.

Each repetition starts the real daemon (subprocess, uvloop) afresh:

- ``idle``: one checkpoint (3 inline rows, a schedule every hour); RSS 2 s after ready.
- ``many``: 10,000 such checkpoints (1,000 in quick mode); start-up time to ``/readyz``
  and RSS 2 s after ready.
- ``drain``: 100 runs in flight (100 checkpoints, each run requested once over HTTP: 50
  pool slots running, 50 admitted in the backlog), each validating a 200,000-row parquet
  file; then SIGTERM: seconds until the process exits, and how many of the 100 runs were
  recorded with a status other than skipped (all must be).
- ``reload``: ``bench/reload.py`` (another engineer's script, run as a subprocess when it
  exists): 1,000 checkpoints (200 in quick mode), half of them changed per reload;
  request time and the longest event-loop stall, medians of its repetitions.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH, ROOT, Settings, Target, log, median, write_result
from bench.daemon_proc import Daemon, daemon_yaml

WORKLOAD = "operations"
SETTLE = 2.0
MIB = 2**20 / 10**6  # MB per MiB


def _trivial(n: int) -> str:
    return "".join(
        f"  - name: cp{i:05d}\n"
        "    data_source: {type: inline, rows: [{id: 1}, {id: 2}, {id: 3}]}\n"
        "    validators: [{type: not_null, columns: [id]}]\n"
        "    triggers: [{type: schedule, interval: 1h}]\n"
        for i in range(n)
    )


def rss_after_ready(directory: Path, checkpoints: int) -> dict[str, Any]:
    daemon = Daemon.start(daemon_yaml(_trivial(checkpoints)), directory)
    try:
        time.sleep(SETTLE)
        rss = daemon.rss_mib()
        exit_seconds = daemon.terminate()
    finally:
        daemon.kill()
    return {"ready_seconds": daemon.ready_seconds, "rss_mib": rss, "exit_seconds": exit_seconds}


def drain(directory: Path, parquet: Path, in_flight: int = 100) -> dict[str, Any]:
    # One checkpoint per run: runs of one checkpoint requested while it runs are coalesced.
    slots = in_flight // 2
    block = "".join(
        f"  - name: heavy{i:03d}\n"
        f"    data_source: {{type: parquet, path: '{parquet}'}}\n"
        "    validators:\n"
        "      - {type: not_null, columns: [id]}\n"
        "      - {type: unique, columns: [id]}\n"
        "      - {type: regex, column: email, pattern: '^[a-z0-9.]+@[a-z]+\\.[a-z]+$'}\n"
        for i in range(in_flight)
    )
    daemon = Daemon.start(daemon_yaml(block, workers=slots, grace="120s"), directory)
    try:
        statuses: list[int] = []

        def post(i: int) -> None:
            statuses.append(daemon.post(f"/api/v1/checkpoints/heavy{i:03d}/runs"))

        posters = [threading.Thread(target=post, args=(i,)) for i in range(in_flight)]
        for t in posters:
            t.start()
        for t in posters:
            t.join(timeout=120)
        admitted = sum(1 for s in statuses if s == 202)
        running = daemon.metrics().get("checkpointd_runs_in_flight")
        exit_seconds = daemon.terminate(timeout=300)
    finally:
        daemon.kill()
    with sqlite3.connect(directory / "state" / "checkpointd.sqlite3") as db:
        recorded = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    return {
        "admitted": admitted,
        "running_at_sigterm": running,
        "exit_seconds": exit_seconds,
        "recorded": recorded,
        "recorded_total": sum(v for k, v in recorded.items() if k != "skipped"),
    }


def reload_figures(settings: Settings) -> dict[str, Any] | None:
    """``bench/reload.py --json`` in a fresh process; None when the script is absent."""
    if not (BENCH / "reload.py").exists():
        return None
    checkpoints = 200 if settings.quick else 1000
    argv = [settings.python, "-m", "bench.reload", "--checkpoints", str(checkpoints)]
    argv += ["--repeat", str(settings.repeat), "--json"]
    log(f"{WORKLOAD}: {' '.join(argv[1:])}")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": f"bench/reload.py exited {proc.returncode}: {proc.stderr[-500:]}"}
    figures: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
    return figures


def run(settings: Settings) -> dict[str, Any]:
    from bench.validation_throughput import write_data

    many = 1_000 if settings.quick else 10_000
    directory = settings.workdir / "operations"
    directory.mkdir(parents=True, exist_ok=True)
    parquet = write_data(directory, 200_000)["parquet"]
    reps: dict[str, list[dict[str, Any]]] = {"idle": [], "many": [], "drain": []}
    for rep in range(settings.repeat):
        log(f"{WORKLOAD}: repetition {rep + 1}/{settings.repeat}")
        reps["idle"].append(rss_after_ready(directory / f"idle{rep}", 1))
        reps["many"].append(rss_after_ready(directory / f"many{rep}", many))
        reps["drain"].append(drain(directory / f"drain{rep}", parquet))
    summary = {
        "idle_rss_mib": median([r["rss_mib"] for r in reps["idle"]]),
        "idle_ready_seconds": median([r["ready_seconds"] for r in reps["idle"]]),
        "idle_exit_seconds": median([r["exit_seconds"] for r in reps["idle"]]),
        "many_checkpoints": many,
        "many_rss_mib": median([r["rss_mib"] for r in reps["many"]]),
        "many_ready_seconds": median([r["ready_seconds"] for r in reps["many"]]),
        "many_exit_seconds": median([r["exit_seconds"] for r in reps["many"]]),
        "drain_in_flight": 100,
        "drain_exit_seconds": median([r["exit_seconds"] for r in reps["drain"]]),
        "drain_recorded_min": min(r["recorded_total"] for r in reps["drain"]),
    }
    idle = summary["idle_rss_mib"]
    targets = [
        Target("idle RSS", "< 80 MB", f"{idle * MIB:.1f} MB", idle * MIB < 80),
        Target(
            "SIGTERM drain loses nothing",
            "every one of 100 in-flight runs recorded",
            f"{summary['drain_recorded_min']} of 100 (worst repetition)",
            summary["drain_recorded_min"] >= 100,
        ),
    ]
    return {
        "description": __doc__,
        "reps": reps,
        "summary": summary,
        "reload": reload_figures(settings),
        "targets": [t.as_dict() for t in targets],
    }


def main(settings: Settings) -> Path:
    return write_result(WORKLOAD, settings, run(settings))
