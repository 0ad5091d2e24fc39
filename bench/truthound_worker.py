"""truthound 3.2 contenders, run by path in truthound's own venv (.venv-truthound).

truthound needs polars<2 and checkpointd polars 2, so this file imports nothing from
checkpointd or from the rest of ``bench``; the orchestrator runs
``.venv-truthound/bin/python bench/truthound_worker.py JSON`` in a scratch directory
holding a ``truthound.yaml`` that turns off run and docs persistence (truthound's
cheapest configuration: otherwise every run writes a JSON and an HTML file).

Modes (``spec["mode"]``):

- ``runner``: ``n`` trivial checkpoints (``AsyncCheckpoint`` over a 3-row DataFrame with
  one ``NotNullValidator``), through ``run_checkpoints_parallel`` (``path: parallel``) or
  ``CheckpointPool.submit_many`` (``path: pool``), 8 at a time, on ``loop``.
- ``check``: ``th.check`` of a parquet or CSV file with not_null + between + unique +
  regex; also ``hand``: the same counts in hand-written polars of truthound's polars
  version, to separate truthound's cost from its polars version's.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

import polars as pl

WORKERS = 8
ROWS = [{"id": 1, "amount": 1.5}, {"id": 2, "amount": 2.5}, {"id": 3, "amount": 3.5}]
PATTERN = r"^[a-z0-9.]+@[a-z]+\.[a-z]+$"


def peak_rss_mib() -> float:
    """VmHWM: unlike ``ru_maxrss``, not inherited from the process that forked this one."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))
    return ordered[int(rank)]


class Timed:
    """Wraps an AsyncCheckpoint to time each run from its start to its result."""

    def __init__(self, inner: Any, latencies: list[float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.latencies = latencies

    async def run_async(self, run_id: str | None = None, context: Any = None) -> Any:
        start = time.perf_counter()
        result = await self.inner.run_async(run_id=run_id, context=context)
        self.latencies.append(time.perf_counter() - start)
        return result


async def runner_case(path: str, n: int, latencies: list[float]) -> float:
    from truthound.checkpoint.async_checkpoint import AsyncCheckpoint  # type: ignore[import-not-found, unused-ignore]
    from truthound.checkpoint.async_runner import CheckpointPool, run_checkpoints_parallel  # type: ignore[import-not-found, unused-ignore]
    from truthound.validators.completeness.null import NotNullValidator  # type: ignore[import-not-found, unused-ignore]

    checkpoint = Timed(
        AsyncCheckpoint(
            name="trivial",
            data_source=pl.DataFrame(ROWS),
            validators=[NotNullValidator(columns=("id",))],
        ),
        latencies,
    )
    started = time.perf_counter()
    if path == "parallel":
        results = await run_checkpoints_parallel([checkpoint] * n, max_concurrent=WORKERS)
    else:
        async with CheckpointPool(workers=WORKERS) as pool:
            results = await pool.submit_many([checkpoint] * n)
    elapsed = time.perf_counter() - started
    bad = [r.status for r in results if str(getattr(r.status, "value", r.status)) != "success"]
    if len(results) != n or bad:
        raise SystemExit(f"truthound runs did not all succeed: {len(results)}/{n}, {bad[:3]}")
    return elapsed


def measure_runner(spec: dict[str, Any]) -> dict[str, Any]:
    n = int(spec["n"])
    if spec["loop"] == "uvloop":
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()
    with runner:
        runner.run(runner_case(spec["path"], min(n, int(spec.get("warmup", 100))), []))
        latencies: list[float] = []
        elapsed = runner.run(runner_case(spec["path"], n, latencies))
    return {
        "runs_per_s": n / elapsed,
        "seconds": elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def validators() -> list[Any]:
    from truthound.validators.completeness.null import NotNullValidator  # type: ignore[import-not-found, unused-ignore]
    from truthound.validators.distribution.range import BetweenValidator  # type: ignore[import-not-found, unused-ignore]
    from truthound.validators.string.regex import RegexValidator  # type: ignore[import-not-found, unused-ignore]
    from truthound.validators.uniqueness.unique import UniqueValidator  # type: ignore[import-not-found, unused-ignore]

    return [
        NotNullValidator(columns=("id",)),
        BetweenValidator(min_value=0, max_value=100_000, columns=("amount",)),
        UniqueValidator(columns=("id",)),
        RegexValidator(pattern=PATTERN, columns=("email",)),
    ]


def scan(path: str) -> pl.LazyFrame:
    return pl.scan_parquet(path) if path.endswith(".parquet") else pl.scan_csv(path)


def th_check(path: str) -> dict[str, int]:
    import truthound as th  # type: ignore[import-not-found, unused-ignore]

    report = th.check(scan(path), validators=validators())
    return {check.name: sum(int(issue.count) for issue in check.issues) for check in report.checks}


def hand(path: str) -> dict[str, int]:
    id_, amount, email = pl.col("id"), pl.col("amount"), pl.col("email")
    row = (
        scan(path)
        .select(
            not_null=id_.is_null().sum(),
            range=((amount < 0) | (amount > 100_000)).fill_null(False).sum(),
            unique=(id_.is_duplicated() & id_.is_not_null()).sum(),
            regex=(~email.str.contains(PATTERN)).fill_null(False).sum(),
        )
        .collect()
        .row(0, named=True)
    )
    return {k: int(v) for k, v in row.items()}


def measure_check(spec: dict[str, Any]) -> dict[str, Any]:
    fn = th_check if spec["contender"] == "truthound" else hand
    fn(spec["warmup_path"])  # warm-up on a small file: imports, polars thread pool, regex
    started = time.perf_counter()
    found = fn(spec["path"])
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows_per_s": int(spec["rows"]) / elapsed, "found": found}


def main() -> None:
    spec = json.loads(sys.argv[-1])
    result = measure_runner(spec) if spec["mode"] == "runner" else measure_check(spec)
    result["peak_rss_mib"] = peak_rss_mib()
    result["polars"] = pl.__version__
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
