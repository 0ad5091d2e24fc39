"""Workload 1, runner overhead: N trivial checkpoints, runs/s, run latency, peak RSS.

A trivial checkpoint is a real one: three inline rows and one ``not_null`` validator,
so every run builds a polars frame and evaluates it. N runs, 8 at a time, through:

- ``checkpointd``: ``AsyncCheckpointRunner.submit_event`` (the daemon's path: bounded
  pool, bounded result queue, batching consumer into a sink), no store;
- ``checkpointd+store``: the same with the durable SQLite store as journal (the daemon's
  settings: WAL, ``synchronous=FULL``, group commit): each run is journaled on
  admission, marked running, and its result saved before the sink sees it;
- ``truthound pool`` / ``truthound parallel``: truthound 3.2's ``CheckpointPool.submit_many``
  and ``run_checkpoints_parallel`` on its cheapest equivalent (``AsyncCheckpoint`` over a
  3-row DataFrame with one ``NotNullValidator``, run and docs persistence off);
- ``floor``: ``asyncio.gather`` under a Semaphore(8), each task building the same 3-row
  frame and collecting what a not_null validator needs (rows, nulls, first null
  positions) inline, on the loop, with polars' fastest engine for it (in-memory): the
  least any runner can do.

Run latency is from the moment a run starts (it left the queue) until its result is
delivered (for checkpointd: after the journal, when the sink gets it). Each repetition
is a fresh process (its own peak RSS) that warms up on a short batch first.
A contender is measured at a size only when its rate at the size before predicts a
repetition under ``MAX_REP_SECONDS`` (truthound at 100k runs would take many minutes);
past the first size only truthound's faster path is measured, and the largest size runs
on uvloop only (the daemon's default loop): the full run has to fit in about half an hour.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Settings,
    Target,
    WorkerError,
    log,
    median,
    module_worker,
    percentile,
    ratio,
    run_worker,
    worker_main,
    write_result,
)

WORKLOAD = "runner_overhead"
WORKERS = 8
SUBMITTERS = 16
ROWS = [{"id": 1, "amount": 1.5}, {"id": 2, "amount": 2.5}, {"id": 3, "amount": 3.5}]
CONTENDERS = ("checkpointd", "checkpointd+store", "truthound pool", "truthound parallel", "floor")
MAX_REP_SECONDS = {False: 25.0, True: 4.0}
# The largest size runs on the daemon's default loop only, with a longer cap: 100k runs
# on both loops for every contender would take most of an hour on two cores.
LARGEST_LOOPS = ("uvloop",)
LARGEST_CAP = 90.0


# ---------------------------------------------------------------- worker side


def _checkpoint() -> Any:
    from checkpointd.checkpoints.checkpoint import Checkpoint

    return Checkpoint.from_dict(
        {
            "name": "trivial",
            "data_source": {"type": "inline", "rows": ROWS},
            "validators": [{"type": "not_null", "columns": ["id"]}],
        }
    )


class _Timed:
    """Records when each run starts (by run id); the sink records when it is delivered."""

    def __init__(self, inner: Any, starts: dict[str, float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.starts = starts

    async def run_async(self, event: Any = None) -> Any:
        self.starts[event.run_id] = time.perf_counter()
        return await self.inner.run_async(event)


class _Sink:
    def __init__(self, starts: dict[str, float]) -> None:
        self.starts = starts
        self.latencies: list[float] = []
        self.bad = 0

    async def handle(self, items: Any) -> None:
        now = time.perf_counter()
        for result, _event in items:
            self.latencies.append(now - self.starts.pop(result.run_id))
            self.bad += result.status.value != "success"


async def _checkpointd(n: int, store_dir: Path | None, tag: str) -> tuple[float, list[float]]:
    from datetime import UTC, datetime

    from checkpointd.events import TriggerEvent
    from checkpointd.runtime.runner import AsyncCheckpointRunner, AsyncRunnerConfig
    from checkpointd.store.sqlite.store import SqliteStore

    starts: dict[str, float] = {}
    sink = _Sink(starts)
    store = await SqliteStore.open(store_dir) if store_dir is not None else None
    runner = AsyncCheckpointRunner(
        [_Timed(_checkpoint(), starts)],
        AsyncRunnerConfig(max_concurrent_checkpoints=WORKERS),
        journal=store,
        sink=sink,
    )
    at = datetime.now(UTC)
    events = [
        TriggerEvent(type="bench", key=f"{tag}:{i}", fired_at=at, run_id=f"{tag}{i}")
        for i in range(n)
    ]

    async def submit(share: list[Any]) -> None:
        for event in share:
            await runner.submit_event("trivial", event)

    started = time.perf_counter()
    async with runner, asyncio.TaskGroup() as group:
        for k in range(SUBMITTERS):
            group.create_task(submit(events[k::SUBMITTERS]))
    elapsed = time.perf_counter() - started
    if store is not None:
        await store.close()
    if len(sink.latencies) != n or sink.bad:
        raise SystemExit(f"{len(sink.latencies)}/{n} results, {sink.bad} not successful")
    return elapsed, sink.latencies


async def _floor(n: int) -> tuple[float, list[float]]:
    import polars as pl

    semaphore = asyncio.Semaphore(WORKERS)
    latencies: list[float] = []
    # What a not_null validator must compute: rows, nulls, the first null positions.
    nulls = pl.col("id").is_null()
    exprs = [pl.len(), nulls.sum().alias("n"), nulls.arg_true().head(5).implode().alias("s")]

    async def one() -> int:
        async with semaphore:
            start = time.perf_counter()
            frame = pl.DataFrame(ROWS).lazy()
            row = frame.select(exprs).collect(engine="in-memory").row(0)
            nulls = int(row[1])
            latencies.append(time.perf_counter() - start)
            return nulls

    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    if len(results) != n or any(results):
        raise SystemExit(f"floor: {len(results)}/{n} results, {sum(results)} nulls found")
    return elapsed, latencies


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.common import loop_runner

    n, contender = int(spec["n"]), spec["contender"]
    warmup = min(n, 200)
    with tempfile.TemporaryDirectory(prefix="cpd-bench-") as tmp, loop_runner(spec["loop"]) as lr:
        if contender == "floor":
            lr.run(_floor(warmup))
            elapsed, latencies = lr.run(_floor(n))
        else:
            durable = contender == "checkpointd+store"
            lr.run(_checkpointd(warmup, Path(tmp, "warm") if durable else None, "w"))
            elapsed, latencies = lr.run(_checkpointd(n, Path(tmp, "st") if durable else None, "r"))
    return {
        "runs_per_s": n / elapsed,
        "seconds": elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


# ---------------------------------------------------------------- orchestrator


def _argv(settings: Settings, contender: str) -> list[str] | None:
    if contender.startswith("truthound"):
        if settings.truthound_python is None:
            return None
        from bench.common import TRUTHOUND_WORKER

        return [settings.truthound_python, str(TRUTHOUND_WORKER)]
    return module_worker(settings, WORKLOAD)


def _spec(contender: str, n: int, loop: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"contender": contender, "n": n, "loop": loop}
    if contender.startswith("truthound"):
        spec |= {"mode": "runner", "path": contender.split()[1]}
    return spec


def run(settings: Settings) -> dict[str, Any]:
    sizes = [200, 1_000] if settings.quick else [1_000, 10_000, 100_000]
    th_dir = settings.workdir / "truthound"
    reps: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    rate_seen: dict[tuple[str, str], float] = {}
    for n in sizes:
        largest = n == sizes[-1] and not settings.quick
        for loop in LARGEST_LOOPS if largest else settings.loops:
            cap = LARGEST_CAP if largest else MAX_REP_SECONDS[settings.quick]
            active = []
            for contender in CONTENDERS:
                key = f"{contender}|{loop}|{n}"
                argv = _argv(settings, contender)
                if argv is None:
                    skipped[key] = "truthound is not installed (scripts/bench installs it)"
                    continue
                seen = rate_seen.get((contender, loop)) or rate_seen.get((contender, "any"))
                if seen is not None and n / seen > cap:
                    skipped[key] = f"a repetition would take ~{n / seen:.0f}s (> {cap:.0f}s)"
                    continue
                slower = _slower_truthound_path(contender, loop, rate_seen)
                if slower:
                    skipped[key] = f"the other truthound path was faster at N={sizes[0]:,}"
                    continue
                active.append((contender, key, argv))
            log(f"{WORKLOAD}: n={n} loop={loop}: {[c for c, _, _ in active]}")
            for _rep in range(settings.repeat):
                for contender, key, argv in active:
                    if key in skipped:
                        continue
                    try:
                        out = run_worker(
                            argv, _spec(contender, n, loop), timeout=cap * 10 + 120, cwd=th_dir
                        )
                    except WorkerError as exc:
                        skipped[key] = f"failed: {str(exc)[-300:]}"
                        log(f"{key} failed: {exc}")
                        continue
                    reps.setdefault(key, []).append(out)
            for contender, key, _ in active:
                if reps.get(key) and key not in skipped:
                    rate = median([r["runs_per_s"] for r in reps[key]])
                    rate_seen[(contender, loop)] = rate
                    rate_seen[(contender, "any")] = rate
    return summarize(settings, sizes, reps, skipped)


def _slower_truthound_path(
    contender: str, loop: str, rate_seen: dict[tuple[str, str], float]
) -> bool:
    """Past the first size, only truthound's faster async path is measured (time budget)."""
    if not contender.startswith("truthound"):
        return False
    other = "truthound pool" if contender == "truthound parallel" else "truthound parallel"
    mine, theirs = rate_seen.get((contender, loop)), rate_seen.get((other, loop))
    return mine is not None and theirs is not None and mine < theirs


def summarize(
    settings: Settings,
    sizes: list[int],
    reps: dict[str, list[dict[str, Any]]],
    skipped: dict[str, str],
) -> dict[str, Any]:
    rows = []
    for n in sizes:
        for loop in settings.loops:
            floor = _med(reps, f"floor|{loop}|{n}", "runs_per_s")
            plain = _med(reps, f"checkpointd|{loop}|{n}", "runs_per_s")
            th_best = max(
                (
                    _med(reps, f"truthound {p}|{loop}|{n}", "runs_per_s")
                    for p in ("pool", "parallel")
                ),
                key=lambda x: -1.0 if x != x else x,
            )
            for contender in CONTENDERS:
                key = f"{contender}|{loop}|{n}"
                if key not in reps and key not in skipped:
                    continue
                rate = _med(reps, key, "runs_per_s")
                rows.append(
                    {
                        "n": n,
                        "loop": loop,
                        "contender": contender,
                        "runs_per_s": rate,
                        "p50_ms": _med(reps, key, "p50_ms"),
                        "p99_ms": _med(reps, key, "p99_ms"),
                        "peak_rss_mib": _med(reps, key, "peak_rss_mib"),
                        "vs_floor": ratio(rate, floor),
                        "vs_checkpointd": ratio(rate, plain),
                        "vs_truthound_best": ratio(rate, th_best),
                        "skipped": skipped.get(key),
                    }
                )
    return {
        "description": __doc__,
        "reps": reps,
        "skipped": skipped,
        "rows": rows,
        "targets": [t.as_dict() for t in targets(rows)],
    }


def _med(reps: dict[str, list[dict[str, Any]]], key: str, field: str) -> float:
    values = [float(r[field]) for r in reps.get(key, []) if r.get(field) is not None]
    return median(values)


def targets(rows: list[dict[str, Any]]) -> list[Target]:
    """Against the largest N at which each comparison was measured."""
    out = []

    def pick(contender: str, field: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["contender"] == contender and r[field] == r[field]]

    def best_n(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not candidates:
            return []
        top = max(r["n"] for r in candidates)
        return [r for r in candidates if r["n"] == top]

    def target(name: str, goal: str, chosen: list[dict[str, Any]], field: str, ok: Any) -> None:
        if not chosen:
            out.append(Target(name, goal, "not measured", None))
            return
        text = ", ".join(f"{r[field]:.2f}× ({r['loop']}, N={r['n']:,})" for r in chosen)
        out.append(Target(name, goal, text, all(ok(r[field]) for r in chosen)))

    target(
        "trivial runs/s vs truthound's best async path",
        "≥ 10×",
        best_n(pick("checkpointd", "vs_truthound_best")),
        "vs_truthound_best",
        lambda x: x >= 10,
    )
    target(
        "trivial runs/s vs the bare-asyncio floor",
        "within 3× (≥ 0.33×)",
        best_n(pick("checkpointd", "vs_floor")),
        "vs_floor",
        lambda x: x >= 1 / 3,
    )
    target(
        "durable store vs in-memory runs/s",
        "costs at most 2× (≥ 0.5×)",
        best_n(pick("checkpointd+store", "vs_checkpointd")),
        "vs_checkpointd",
        lambda x: x >= 0.5,
    )
    return out


def main(settings: Settings) -> Path:
    return write_result(WORKLOAD, settings, run(settings))


if __name__ == "__main__":
    worker_main(measure)
