"""Fire-time accuracy of the schedule trigger with many schedules due at the same instant.

Usage: ``python bench/schedule_accuracy.py [--schedules 1000] [--seconds 60]
[--loop uvloop|asyncio] [--json OUT]``

Runs ``--schedules`` ScheduleSources, each ``interval: 1s``, for ``--seconds``. They are
armed in the same second, so every fire time has all of them due together — the worst
case, and the usual one for cron schedules (every ``*/15 * * * *`` fires at once).

- fire-time error: the moment ``emit`` is called minus the scheduled fire time, over all
  fires and over the steady state (after the first ``WARM_UP`` fire rounds, which overlap
  the start-up of all the sources);
- event-loop lag: how late a 50 ms timer wakes, sampled throughout;
- misfires: fire times later than the misfire grace (5 s), which should be none.

``emit`` records and returns at once and trigger state is kept in memory, so this measures
the trigger and the event loop, not the journal. Prints a table; ``--json`` also writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkpointd.clock import SystemClock
from checkpointd.config.models import ScheduleTrigger
from checkpointd.triggers.event import TriggerEvent
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(measure(args.schedules, args.seconds))
    else:
        result = asyncio.run(measure(args.schedules, args.seconds))
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
