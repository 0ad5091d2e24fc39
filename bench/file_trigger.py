"""Workload 4, file trigger: detection latency and per-poll cost.

Part of ``python -m bench`` (one fresh process on uvloop); alone:
``python -m bench.file_trigger [--files 10000] [--rate 500] [--present 100000]
[--poll-interval 1s] [--stable-for 2s] [--inotify] [--loop uvloop|asyncio] [--json OUT]``

Two measurements, each in its own temporary directory:

- landing: a producer process writes ``--files`` files at ``--rate`` per second the way writers
  should (``name.csv.part``, then rename), while a FileSource polls the directory. Latency is
  the moment ``emit`` is called minus the file's mtime. It cannot be below ``stable_for``:
  a file is stable once two scans ``stable_for`` apart saw it unchanged.
- steady: ``--present`` files already in the directory, all already fired; then it times
  ``--polls`` scans of the unchanged directory (``time.process_time``, which counts the
  worker thread too, and wall time) and how many store queries they made (should be 0).
  Memory is the process's peak RSS growth while holding that listing's state; loop lag is how
  late a 10 ms timer fires during those scans (the event loop must stay responsive).

``emit`` records and returns at once and trigger state is kept in memory, so this measures
the trigger (listing, lstat, stability, has_seen cache), not the journal. Prints a table;
``--json`` also writes it. Each steady poll is a repetition (median of ``--polls``); each
landed file is one latency sample.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from bench.common import peak_rss_mib
from checkpointd.config.durations import parse_duration
from checkpointd.config.models import FileTrigger
from checkpointd.events import TriggerEvent
from checkpointd.triggers.file import FileSource

LAG_PROBE = 0.01


class MemoryState:
    """Seen keys in a set (the bench measures the trigger, not SQLite)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.queries = 0

    async def get_state(self, namespace: str, key: str) -> str | None:
        return None

    async def set_state(self, namespace: str, key: str, value: str) -> None:
        return None

    async def has_seen(self, namespace: str, key: str) -> bool:
        self.queries += 1
        return key in self.seen

    async def mark_seen(self, namespace: str, keys: Sequence[str]) -> None:
        self.seen.update(keys)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def produce(directory: str, files: int, rate: float) -> None:
    """Write ``files`` files at ``rate`` per second, each as ``.part`` then renamed."""
    body = b"id,amount\n" + b"".join(b"%d,%d\n" % (i, i * 3) for i in range(50))
    start = time.monotonic()
    for i in range(files):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        part = os.path.join(directory, f"f{i:06}.csv.part")
        with open(part, "wb") as out:
            out.write(body)
        os.rename(part, os.path.join(directory, f"f{i:06}.csv"))


async def landing(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cpd-file-bench-") as tmp:
        directory = Path(tmp)
        latencies: list[float] = []
        done = asyncio.Event()

        async def emit(event: TriggerEvent) -> bool:
            latencies.append((time.time_ns() - int(event.params["mtime_ns"])) / 1e9)
            if len(latencies) >= args.files:
                done.set()
            return True

        spec = FileTrigger(
            type="file",
            directory=directory,
            pattern="*.csv",
            poll_interval=args.poll_interval,
            stable_for=args.stable_for,
            use_inotify=args.inotify,
        )
        source = FileSource("bench", 0, spec, state=MemoryState())

        cpu0, wall0 = time.process_time(), time.monotonic()
        task = asyncio.create_task(source.run(emit))
        # The producer is another process, as a real writer is: its file I/O must not share
        # the trigger's event loop or GIL.
        producer = multiprocessing.get_context("spawn").Process(
            target=produce, args=(str(directory), args.files, args.rate)
        )
        producer.start()
        try:
            async with asyncio.timeout(args.files / args.rate + 120):
                await done.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            producer.join(timeout=10)
            if producer.is_alive():
                producer.kill()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return {
        "files": args.files,
        "rate_per_s": args.rate,
        "fired": len(latencies),
        "latency_p50_s": round(statistics.median(latencies), 4),
        "latency_p99_s": round(percentile(latencies, 99), 4),
        "latency_max_s": round(max(latencies), 4),
        "scans": source.scans,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
    }


async def steady(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cpd-file-bench-") as tmp:
        directory = Path(tmp)
        for i in range(args.present):
            fd = os.open(directory / f"f{i:07}.csv", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"id\n1\n")
            os.close(fd)
        state = MemoryState()
        fired = 0

        async def emit(event: TriggerEvent) -> bool:
            nonlocal fired
            fired += 1
            return True

        spec = FileTrigger(
            type="file", directory=directory, pattern="*.csv", stable_for="0s", poll_interval="1h"
        )
        source = FileSource("bench", 0, spec, state=state)
        rss0 = peak_rss_mib()
        t0 = time.monotonic()
        while await source.scan_once(emit) is False:
            pass  # the first scan fires everything; "False" only means it took long
        first_scan_s = time.monotonic() - t0
        queries_before = state.queries
        cpu_per_poll, wall_per_poll, lags = [], [], []

        async def probe() -> None:
            # How late a short timer fires while scans run: the event loop must stay free.
            while True:
                t = time.monotonic()
                await asyncio.sleep(LAG_PROBE)
                lags.append(time.monotonic() - t - LAG_PROBE)

        prober = asyncio.create_task(probe())
        for _ in range(args.polls):
            cpu, wall = time.process_time(), time.monotonic()
            await source.scan_once(emit)
            cpu_per_poll.append(time.process_time() - cpu)
            wall_per_poll.append(time.monotonic() - wall)
        prober.cancel()
        rss_growth_mib = peak_rss_mib() - rss0
    return {
        "present": args.present,
        "fired_first_scan": fired,
        "first_scan_and_fire_s": round(first_scan_s, 3),
        "polls": args.polls,
        "cpu_per_poll_ms_median": round(statistics.median(cpu_per_poll) * 1000, 1),
        "cpu_per_poll_ms_max": round(max(cpu_per_poll) * 1000, 1),
        "wall_per_poll_ms_median": round(statistics.median(wall_per_poll) * 1000, 1),
        "loop_lag_ms_max": round(max(lags) * 1000, 1),
        "store_queries_in_steady_polls": state.queries - queries_before,
        "peak_rss_growth_mib": round(rss_growth_mib, 1),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for part, figures in results.items():
        lines.append(part)
        lines.extend(f"  {name:<32} {value}" for name, value in figures.items())
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    if args.files:
        results["landing"] = await landing(args)
    if args.present:
        results["steady"] = await steady(args)
    return results


def measure_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker entry: both measurements with the spec's sizes, on uvloop."""
    from bench.common import loop_runner

    args = argparse.Namespace(
        files=spec["files"],
        rate=spec["rate"],
        present=spec["present"],
        polls=spec["polls"],
        poll_interval=parse_duration("1s"),
        stable_for=parse_duration("2s"),
        inotify=False,
    )
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    with loop_runner(spec["loop"]) as runner:
        result: dict[str, Any] = runner.run(main(args))
    return result


def run(settings: Any) -> dict[str, Any]:
    from bench.common import log, module_worker, run_worker

    spec: dict[str, Any] = (
        {"files": 1000, "rate": 500.0, "present": 10_000, "polls": settings.repeat}
        if settings.quick
        else {"files": 10_000, "rate": 500.0, "present": 100_000, "polls": 10}
    )
    spec["loop"] = "uvloop"
    log(f"file_trigger: {spec}")
    out = run_worker(module_worker(settings, "file_trigger"), spec, timeout=900)
    return {"description": __doc__, "spec": spec, **out, "targets": []}


def write(settings: Any) -> Path:
    from bench.common import write_result

    return write_result("file_trigger", settings, run(settings))


if __name__ == "__main__" and "--worker" in sys.argv:
    from bench.common import worker_main

    worker_main(measure_spec)
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files landing (0: skip)")
    parser.add_argument("--rate", type=float, default=500.0, help="files landing per second")
    parser.add_argument("--present", type=int, default=100_000, help="steady files (0: skip)")
    parser.add_argument("--polls", type=int, default=10, help="steady polls timed")
    parser.add_argument("--poll-interval", type=parse_duration, default="1s")
    parser.add_argument("--stable-for", type=parse_duration, default="2s")
    parser.add_argument("--inotify", action="store_true", help="use_inotify (needs watchfiles)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    # Keep the per-file debug lines out of the table (and out of the timings).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    if options.loop == "uvloop":
        import uvloop

        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    outcome = runner(main(options))
    print(table(outcome))
    if options.json:
        options.json.write_text(json.dumps(outcome, indent=2) + "\n")
