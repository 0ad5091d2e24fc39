"""How much the runner costs per run, next to the cheapest possible asyncio code.

100k trivial checkpoints (``run_async`` returns a precomputed result) go
through:

- ``floor``: ``asyncio.gather`` of one coroutine per run under a Semaphore;
  no bounds on waiting work, no result delivery: the least any runner can do.
- ``runner.submit_event``: the daemon's path: the runner's bounded pool, the
  bounded result queue and a batching consumer into a (no-op) sink.
- ``runner.run_all_async``: one future per run, awaited by the caller.
- ``pool.submit_many``: the bare CheckpointPool with futures.

Each figure is the median of 5 repetitions, on asyncio and uvloop. Run:
``.venv/bin/python bench/runner_overhead.py [--runs 100000] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.daemon.pool import CheckpointPool
from checkpointd.daemon.runner import AsyncCheckpointRunner, AsyncRunnerConfig
from checkpointd.triggers.event import TriggerEvent

WORKERS = 8
LOOPS = ("asyncio", "uvloop")
_AT = datetime(2026, 1, 1, tzinfo=UTC)


class Trivial:
    """A checkpoint whose run costs nothing: it returns a result built beforehand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._result = CheckpointResult(
            run_id="bench", checkpoint=name, status=Status.SUCCESS, started_at=_AT, finished_at=_AT
        )

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult:
        return self._result


class CountingSink:
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, items: Sequence[tuple[CheckpointResult, TriggerEvent | None]]) -> None:
        self.count += len(items)


# Each case builds its inputs, then times only the runs: from the first
# submission until every result has been delivered (runner start and stop
# included, since a stop is what waits for the last delivery).


async def floor(n: int) -> float:
    checkpoint = Trivial("t")
    semaphore = asyncio.Semaphore(WORKERS)

    async def one() -> CheckpointResult:
        async with semaphore:
            return await checkpoint.run_async()

    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    assert len(results) == n
    return elapsed


async def runner_submit_event(n: int) -> float:
    sink = CountingSink()
    runner = AsyncCheckpointRunner(
        [Trivial("t")], AsyncRunnerConfig(max_concurrent_checkpoints=WORKERS), sink=sink
    )
    event = TriggerEvent(type="bench", key="k", fired_at=_AT)
    started = time.perf_counter()
    async with runner:
        for _ in range(n):
            await runner.submit_event("t", event)
    elapsed = time.perf_counter() - started
    assert sink.count == n, (sink.count, n)
    return elapsed


async def runner_run_all(n: int) -> float:
    sink = CountingSink()
    runner = AsyncCheckpointRunner(
        [Trivial(f"t{i}") for i in range(n)],
        AsyncRunnerConfig(max_concurrent_checkpoints=WORKERS),
        sink=sink,
    )
    started = time.perf_counter()
    async with runner:
        results = await runner.run_all_async()
    elapsed = time.perf_counter() - started
    assert len(results) == sink.count == n
    return elapsed


async def pool_submit_many(n: int) -> float:
    checkpoints = [Trivial("t")] * n
    started = time.perf_counter()
    async with CheckpointPool(WORKERS) as pool:
        results = await pool.submit_many(checkpoints)
    elapsed = time.perf_counter() - started
    assert len(results) == n
    return elapsed


CASES: dict[str, Callable[[int], Awaitable[float]]] = {
    "floor (gather+Semaphore)": floor,
    "runner.submit_event": runner_submit_event,
    "runner.run_all_async": runner_run_all,
    "pool.submit_many": pool_submit_many,
}


def run_once(loop_name: str, case: Callable[[int], Awaitable[float]], n: int) -> float:
    """Runs per second of one repetition, on a fresh event loop."""
    if loop_name == "uvloop":
        import uvloop

        runner: Any = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()
    with runner:
        elapsed: float = runner.run(case(n))
    return n / elapsed


def measure(n: int, repeat: int) -> dict[str, dict[str, float]]:
    """Median runs/s per loop and case; cases take turns, so background load hits all alike."""
    rates: dict[str, dict[str, list[float]]] = {
        loop_name: {name: [] for name in CASES} for loop_name in LOOPS
    }
    for _ in range(repeat):
        for loop_name in LOOPS:
            for name, case in CASES.items():
                rates[loop_name][name].append(run_once(loop_name, case, n))
    return {
        loop_name: {name: statistics.median(values) for name, values in cases.items()}
        for loop_name, cases in rates.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = measure(args.runs, args.repeat)
    width = max(len(name) for name in CASES)
    print(f"{args.runs} trivial runs, median of {args.repeat}; runs/s (ratio to floor)")
    for loop_name, rows in figures.items():
        print(f"\n{loop_name}")
        base = rows["floor (gather+Semaphore)"]
        for name, rate in rows.items():
            print(f"  {name:<{width}}  {rate:>10,.0f}  ({rate / base:.2f}x)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": args.runs, "repeat": args.repeat, "runs_per_second": figures}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
