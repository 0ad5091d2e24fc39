"""Workload 6, overload: triggers at 10× what the pool can run, RSS and queues over time.

The real daemon (subprocess, uvloop, 2 pool slots, result queue of 100) runs K
checkpoints that each validate the same 200,000-row parquet file on an ``interval: 1s``
schedule. K is ten times the pool's capacity, calibrated first by timing that checkpoint
in this process (capacity = slots / seconds per run, at most one run per core at once).
For the whole window the bench samples, once a second: the daemon's RSS (/proc), the
result queue depth, runs in flight and runs finished (/metrics), and schedule misfires.
Overload must show as lag (late and coalesced fires, misfires), never as growth:
flat RSS (the median of the window's last third against its middle third; the slope
over the second half is reported too) and a bounded queue.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from bench.common import Settings, Target, log, median, write_result
from bench.daemon_proc import Daemon, daemon_yaml

WORKLOAD = "overload"
SLOTS = 2
QUEUE = 100
ROWS = 200_000


def calibrate(path: Path) -> float:
    """Median seconds of one run of the overload checkpoint, measured here."""
    from checkpointd.checkpoints.checkpoint import Checkpoint

    checkpoint = Checkpoint.from_dict(_checkpoint_dict("calibrate", path))
    checkpoint.run()
    times = []
    for _ in range(5):
        started = time.perf_counter()
        checkpoint.run()
        times.append(time.perf_counter() - started)
    return median(times)


def _checkpoint_dict(name: str, path: Path) -> dict[str, Any]:
    return {
        "name": name,
        "data_source": {"type": "parquet", "path": str(path)},
        "validators": [
            {"type": "not_null", "columns": ["id"]},
            {"type": "range", "column": "amount", "min": 0, "max": 100_000},
            {"type": "unique", "columns": ["id"]},
        ],
    }


def _config(k: int, path: Path) -> str:
    block = "".join(
        f"  - name: load{i:04d}\n"
        f"    data_source: {{type: parquet, path: '{path}'}}\n"
        "    validators:\n"
        "      - {type: not_null, columns: [id]}\n"
        "      - {type: range, column: amount, min: 0, max: 100000}\n"
        "      - {type: unique, columns: [id]}\n"
        "    triggers:\n"
        "      - {type: schedule, interval: 1s}\n"
        for i in range(k)
    )
    return daemon_yaml(block, workers=SLOTS, queue=QUEUE, grace="10s")


def run(settings: Settings) -> dict[str, Any]:
    from bench.validation_throughput import write_data

    seconds = 15.0 if settings.quick else 60.0
    directory = settings.workdir / "overload"
    directory.mkdir(parents=True, exist_ok=True)
    path = write_data(directory, ROWS)["parquet"]
    per_run = calibrate(path)
    capacity = min(SLOTS, os.cpu_count() or 1) / per_run
    k = math.ceil(10 * capacity)
    log(f"{WORKLOAD}: a run takes {per_run * 1000:.0f} ms, capacity ~{capacity:.1f}/s, K={k}")
    daemon = Daemon.start(_config(k, path), directory / "daemon")
    samples = []
    try:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            m = daemon.metrics()
            samples.append(
                {
                    "t": round(elapsed, 2),
                    "rss_mib": daemon.rss_mib(),
                    "result_queue_depth": m.get("checkpointd_result_queue_depth"),
                    "runs_in_flight": m.get("checkpointd_runs_in_flight"),
                    "runs_finished": m.get("checkpointd_runs_total"),
                    "misfires": m.get("checkpointd_schedule_misfires_total"),
                    "cpu_s": daemon.cpu_seconds(),
                }
            )
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
        exit_seconds = daemon.terminate()
    finally:
        daemon.kill()
    return summarize(samples, k=k, capacity=capacity, per_run=per_run, exit_seconds=exit_seconds)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y), per minute."""
    if len(points) < 2:
        return math.nan
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 60 * sum((t - mt) * (y - my) for t, y in points) / den if den else math.nan


def summarize(samples: list[dict[str, Any]], **facts: Any) -> dict[str, Any]:
    rss = [(s["t"], s["rss_mib"]) for s in samples if s["rss_mib"] is not None]
    second_half = [p for p in rss if p[0] >= rss[-1][0] / 2] if rss else []
    depth = [s["result_queue_depth"] or 0 for s in samples]
    finished = [s["runs_finished"] or 0 for s in samples]
    window = samples[-1]["t"] - samples[0]["t"] if len(samples) > 1 else math.nan
    throughput = (finished[-1] - finished[0]) / window if window == window and window else math.nan
    slope = _slope(second_half)
    rss_values = [y for _, y in rss]
    # Each run allocates and frees a frame, so RSS jitters by tens of MiB from one
    # sample to the next; growth is judged on medians of thirds of the window, which
    # that jitter does not move (a leak moves them).
    third = max(1, len(rss_values) // 3)
    middle = median(rss_values[third : 2 * third]) if rss_values else math.nan
    last = median(rss_values[2 * third :]) if rss_values else math.nan
    growth = 100 * (last - middle) / middle if middle == middle and middle else math.nan
    summary = {
        "triggers_per_s": facts["k"],
        "capacity_runs_per_s": facts["capacity"],
        "offered_load_ratio": facts["k"] / facts["capacity"],
        "run_seconds_calibrated": facts["per_run"],
        "runs_per_s_achieved": throughput,
        "rss_first_mib": rss_values[0] if rss_values else math.nan,
        "rss_max_mib": max(rss_values) if rss_values else math.nan,
        "rss_last_mib": rss_values[-1] if rss_values else math.nan,
        "rss_slope_second_half_mib_per_min": slope,
        "rss_median_middle_third_mib": middle,
        "rss_median_last_third_mib": last,
        "rss_growth_last_vs_middle_third_pct": growth,
        "queue_depth_max": max(depth) if depth else math.nan,
        "queue_capacity": QUEUE,
        "misfires": samples[-1]["misfires"] if samples else None,
        "sigterm_exit_seconds": facts["exit_seconds"],
    }
    targets = [
        Target(
            "overload: RSS flat",
            "median RSS of the last third ≤ the middle third's + 10%",
            f"{middle:.0f} → {last:.0f} MiB ({growth:+.1f}%; max {summary['rss_max_mib']:.0f})",
            growth <= 10 if growth == growth else None,
        ),
        Target(
            "overload: queue depth bounded",
            f"≤ result_queue_size ({QUEUE})",
            f"max {summary['queue_depth_max']:.0f}",
            summary["queue_depth_max"] <= QUEUE,
        ),
    ]
    return {
        "description": __doc__,
        "summary": summary,
        "samples": samples,
        "targets": [t.as_dict() for t in targets],
    }


def main(settings: Settings) -> Path:
    return write_result(WORKLOAD, settings, run(settings))
