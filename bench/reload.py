"""Reload of 1,000 checkpoints: how long ``POST /-/reload`` takes and how long it stalls the loop.

``python -m bench.reload [--checkpoints 1000] [--repeat 5] [--loop uvloop|asyncio] [--json]``

The real daemon runs in this process (so the loop can be watched from inside) with
``--checkpoints`` checkpoints, each with three inline rows and an ``interval: 1h``
schedule. Each repetition rewrites the config file so that half of them change — a
quarter their validators (the checkpoint is replaced), a quarter their schedule (the
trigger source is stopped and a new one started) — and calls ``POST /-/reload`` from a
worker thread, as an operator's ``curl`` would. Measured per repetition:

- ``request_seconds``: the reload request, sent to answered (parse, validate, diff,
  build, apply);
- ``max_stall_seconds``: the longest the event loop was blocked while the reload ran,
  from a probe timer of ``PROBE`` seconds in the daemon's loop (how late it woke);
- ``max_stall_loop_cpu_seconds``: the CPU time the loop's thread spent in that worst
  probe interval. On a busy machine the wall-clock stall includes time the process
  was not scheduled at all; this one does not (but it misses time the loop waited for
  the GIL, e.g. a garbage collection in the thread that parses the file);
- ``max_gc_pause_cpu_seconds``: the longest garbage collection (CPU time of the thread
  running it) during the reload. A collection stops every thread, the loop included,
  so it is a stall wherever it runs; measured in CPU time it does not depend on how
  busy the machine is;
- ``settled_seconds``: until every re-armed schedule has read and written its state
  (the daemon's store has no more writes queued for it).

The report gives the median of each over the repetitions. ``measure()`` is what
``bench/operations.py`` calls.

Figures on the 2-core dev machine (uvloop, 5 reps, medians; the machine was shared, so
wall-clock figures are noisy): the request takes 2.5-3 s, almost all of it the
pure-Python YAML parse in a worker thread; the worst loop stall is 0.03-0.06 s, garbage
collections at most 0.02 s of CPU. Before the daemon froze its start-up heap
(``gc.freeze()``) and paused the collector while parsing, collections during the parse
took 0.2-0.3 s of CPU each and stalled the loop 0.3-0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from checkpointd.config import load_config
from checkpointd.daemon.app import Daemon
from checkpointd.daemon.main import loop_factory
from checkpointd.logs import configure_logging

PROBE = 0.002
"""Seconds between two wake-ups of the stall probe."""


def config_text(state_dir: Path, checkpoints: int, variant: int) -> str:
    """``checkpoints`` schedule checkpoints; odd and even ``variant`` differ in half of them."""
    lines = [
        "daemon:",
        f"  state_dir: {state_dir}",
        '  http: {listen: "127.0.0.1:0"}',
        "  log: {format: json, level: warning}",
        "checkpoints:",
    ]
    for i in range(checkpoints):
        changed = variant % 2 == 1
        validator = (
            "{type: unique, columns: [id]}"
            if changed and i % 4 == 0
            else "{type: not_null, columns: [id]}"
        )
        interval = "2h" if changed and i % 4 == 1 else "1h"
        lines += [
            f"  - name: cp{i:05d}",
            "    data_source: {type: inline, rows: [{id: 1}, {id: 2}, {id: 3}]}",
            f"    validators: [{validator}]",
            f"    triggers: [{{type: schedule, interval: {interval}}}]",
        ]
    return "\n".join(lines) + "\n"


class GcPauses:
    """The longest garbage collection, in CPU time, between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._on = False
        self._began: dict[int, float] = {}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        thread = threading.get_ident()
        if phase == "start":
            self._began[thread] = time.thread_time()
        elif self._on and thread in self._began:
            self.worst = max(self.worst, time.thread_time() - self._began.pop(thread))

    def start(self) -> None:
        self.worst = 0.0
        self._on = True

    def stop(self) -> float:
        self._on = False
        return self.worst


class StallProbe:
    """The longest a ``PROBE`` timer woke late between :meth:`start` and :meth:`stop`, and
    the loop thread's CPU time in that interval."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_cpu = 0.0
        self._on = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(PROBE)
            late = loop.time() - start - PROBE
            if self._on and late > self.worst:
                self.worst, self.worst_cpu = late, time.thread_time() - cpu

    def start(self) -> None:
        self.worst = self.worst_cpu = 0.0
        self._on = True

    def stop(self) -> tuple[float, float]:
        self._on = False
        return self.worst, self.worst_cpu


def _post(url: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=300) as resp:
        return resp.status, json.loads(resp.read())


async def _measure(directory: Path, checkpoints: int, repeat: int) -> list[dict[str, float]]:
    path = directory / "checkpointd.yaml"
    state = directory / "state"
    path.write_text(config_text(state, checkpoints, 0))
    daemon = Daemon(load_config(path))
    serving = asyncio.create_task(daemon.serve())
    probe = StallProbe()
    probing = asyncio.create_task(probe.run())
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    reps: list[dict[str, float]] = []
    try:
        while not daemon.control.readiness()[0]:
            if serving.done():
                raise RuntimeError(f"the daemon stopped: {serving.result()}")
            await asyncio.sleep(0.05)
        assert daemon.http is not None
        url = f"http://127.0.0.1:{daemon.http.bound_port}/-/reload"
        await _settle(daemon)
        for rep in range(1, repeat + 1):
            await asyncio.to_thread(path.write_text, config_text(state, checkpoints, rep))
            probe.start()
            pauses.start()
            started = time.perf_counter()
            status, body = await asyncio.to_thread(_post, url)
            request = time.perf_counter() - started
            if status != 200:
                raise RuntimeError(f"reload failed: {body}")
            await _settle(daemon)
            settled = time.perf_counter() - started
            stall, stall_cpu = probe.stop()
            gc_pause = pauses.stop()
            reps.append(
                {
                    "request_seconds": request,
                    "max_stall_seconds": stall,
                    "max_stall_loop_cpu_seconds": stall_cpu,
                    "max_gc_pause_cpu_seconds": gc_pause,
                    "settled_seconds": settled,
                }
            )
    finally:
        daemon.handle_exit()
        await serving
        probing.cancel()
        gc.callbacks.remove(pauses)
    return reps


async def _settle(daemon: Daemon) -> None:
    """Wait until the re-armed schedules have done their state I/O and sleep till their fire."""
    store = daemon.store
    assert store is not None
    while True:
        await asyncio.sleep(0.02)
        sources = daemon.triggers.all_sources()
        if all(getattr(s, "next_fire_time", None) is not None for s in sources):
            # The writer commits in order: once this write is in, the sources' writes are too.
            await store.set_state("bench", "settle", str(time.time()))
            return


def measure(
    directory: Path, *, checkpoints: int = 1000, repeat: int = 5, loop: str = "uvloop"
) -> dict[str, float]:
    """Medians over ``repeat`` reloads (see the module docs), in a loop of its own."""
    configure_logging("warning", "json")
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        reps = runner.run(_measure(directory, checkpoints, repeat))
    out: dict[str, float] = {"checkpoints": float(checkpoints), "changed": checkpoints / 2}
    for key in reps[0]:
        out[key] = statistics.median(r[key] for r in reps)
        out[f"{key}_max"] = max(r[key] for r in reps)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="checkpointd-reload-") as tmp:
        figures = measure(
            Path(tmp), checkpoints=args.checkpoints, repeat=args.repeat, loop=args.loop
        )
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"reload of {args.checkpoints} checkpoints ({args.loop}, {args.repeat} reps):")
        for key, value in figures.items():
            print(f"  {key:<24} {value:10.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
