"""Workload 3, schedule accuracy: fire-time error with many schedules due at the same instant.

Part of ``python -m bench`` (a fresh process per event loop); alone:
``python -m bench.schedule_accuracy [--schedules 1000] [--seconds 60] [--loop uvloop|asyncio]``.

Runs ``--schedules`` ScheduleSources, each ``interval: 1s``, for ``--seconds``. They are
armed in the same second, so every fire time has all of them due together — the worst
case, and the usual one for cron schedules (every ``*/15 * * * *`` fires at once).

- fire-time error: the moment ``emit`` is called minus the scheduled fire time, over all
  fires and over the steady state (after the first ``WARM_UP`` fire rounds, which overlap
  the start-up of all the sources);
- event-loop lag: how late a 50 ms timer wakes, sampled throughout;
- misfires: fire times later than the misfire grace (5 s), which should be none.

A repetition is one fire round (all schedules due at one second); the report gives the
percentiles over every fire after the warm-up rounds and the median of the rounds' p99.

``emit`` records and returns at once and trigger state is kept in memory, so this measures
the trigger and the event loop, not the journal. Prints a table; ``--json`` also writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from checkpointd.clock import SystemClock
from checkpointd.config.models import ScheduleTrigger
from checkpointd.events import TriggerEvent
from checkpointd.triggers.schedule import ScheduleSource

LAG_PROBE = 0.05
WARM_UP = 2


class MemoryState:
    """Trigger state in a dict (the bench measures timing, not SQLite)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    async def get_state(self, namespace: str, key: str) -> str | None:
        return self.values.get((namespace, key))

    async def set_state(self, namespace: str, key: str, value: str) -> None:
        self.values[(namespace, key)] = value

    async def has_seen(self, namespace: str, key: str) -> bool:
        return False

    async def mark_seen(self, namespace: str, keys: Sequence[str]) -> None:
        return None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


async def probe_loop_lag(samples: list[float]) -> None:
    """Sample how late a timer wakes, forever."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(LAG_PROBE)
        samples.append(time.monotonic() - start - LAG_PROBE)


async def measure(schedules: int, seconds: float) -> dict[str, Any]:
    clock, state = SystemClock(), MemoryState()
    errors: list[tuple[datetime, float]] = []
    misfires = 0

    def count_misfire() -> None:
        nonlocal misfires
        misfires += 1

    async def emit(event: TriggerEvent) -> bool:
        errors.append((event.fired_at, (clock.now() - event.fired_at).total_seconds()))
        return True

    sources = [
        ScheduleSource(
            f"bench{i:04d}",
            0,
            ScheduleTrigger(type="schedule", interval=1.0),
            state=state,
            clock=clock,
            on_misfire=count_misfire,
        )
        for i in range(schedules)
    ]
    lags: list[float] = []
    started = datetime.now(UTC)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(source.run(emit)) for source in sources]
        tasks.append(group.create_task(probe_loop_lag(lags)))
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
    lags.sort()
    first_rounds = sorted({fired_at for fired_at, _ in errors})[:WARM_UP]
    every_fire = sorted(error for _, error in errors)
    steady = sorted(error for fired_at, error in errors if fired_at not in first_rounds)
    rounds: dict[datetime, list[float]] = {}
    for fired_at, error in errors:
        if fired_at not in first_rounds:
            rounds.setdefault(fired_at, []).append(error)
    round_p99 = [percentile(sorted(v), 0.99) * 1000 for _, v in sorted(rounds.items())]
    return {
        "started_at": started.isoformat(),
        "schedules": schedules,
        "seconds": seconds,
        "loop": type(asyncio.get_running_loop()).__module__,
        "fires": len(errors),
        "misfires": misfires,
        "fire_error_ms": summary_ms(every_fire),
        "steady_fire_error_ms": summary_ms(steady),
        "loop_lag_ms": summary_ms(lags),
        "rounds": len(round_p99),
        "round_p99_ms": round_p99,
        "median_round_p99_ms": statistics.median(round_p99) if round_p99 else float("nan"),
    }


def summary_ms(sorted_seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of sorted seconds, in milliseconds."""
    return {
        "p50": percentile(sorted_seconds, 0.50) * 1000,
        "p99": percentile(sorted_seconds, 0.99) * 1000,
        "max": (sorted_seconds[-1] if sorted_seconds else float("nan")) * 1000,
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        f"schedules {result['schedules']} x interval 1s for {result['seconds']:g}s "
        f"on {result['loop']}: {result['fires']} fires, {result['misfires']} misfires",
        f"{'':24}{'p50':>10}{'p99':>10}{'max':>10}",
    ]
    for label, key in (
        ("fire-time error (ms)", "fire_error_ms"),
        (f"  after {WARM_UP} rounds (ms)", "steady_fire_error_ms"),
        ("loop lag (ms)", "loop_lag_ms"),
    ):
        stats = result[key]
        rows.append(f"{label:24}{stats['p50']:>10.2f}{stats['p99']:>10.2f}{stats['max']:>10.2f}")
    return "\n".join(rows)


def measure_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker entry: one run on the loop the spec names."""
    from bench.common import loop_runner

    with loop_runner(spec["loop"]) as runner:
        result: dict[str, Any] = runner.run(measure(spec["schedules"], spec["seconds"]))
    return result


def run(settings: Any) -> dict[str, Any]:
    from bench.common import Target, log, module_worker, run_worker

    schedules, seconds = (200, 10.0) if settings.quick else (1000, 60.0)
    per_loop = {}
    for loop in settings.loops:
        log(f"schedule_accuracy: {schedules} schedules for {seconds:g}s on {loop}")
        per_loop[loop] = run_worker(
            module_worker(settings, "schedule_accuracy"),
            {"schedules": schedules, "seconds": seconds, "loop": loop},
            timeout=seconds * 3 + 120,
        )
    p99 = {loop: r["steady_fire_error_ms"]["p99"] for loop, r in per_loop.items()}
    target = Target(
        f"fire-time error p99 with {schedules:,} schedules",
        "< 20 ms",
        ", ".join(f"{v:.1f} ms ({loop})" for loop, v in p99.items()),
        all(v < 20 for v in p99.values()),
    )
    return {"description": __doc__, "loops": per_loop, "targets": [target.as_dict()]}


def main(settings: Any) -> Any:
    from bench.common import write_result

    return write_result("schedule_accuracy", settings, run(settings))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    result = measure_spec({"schedules": args.schedules, "seconds": args.seconds, "loop": args.loop})
    print(table(result))


if __name__ == "__main__":
    import sys

    if "--worker" in sys.argv:
        from bench.common import worker_main

        worker_main(measure_spec)
    else:
        cli()
