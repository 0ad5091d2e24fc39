"""Workload 2, validation throughput: rows/s and peak RSS on 1M and 10M rows.

The same parquet and CSV files (``id``, ``amount``, ``email`` with planted defects) are
validated with not_null(id) + range(amount, 0..100000) + unique(id) + regex(email) by:

- ``checkpointd``: a real ``Checkpoint`` with a parquet/csv data source, ``run_async``;
- ``polars``: the limit, one hand-written ``select`` of the same counts and samples, with
  the same polars as checkpointd (2.x);
- ``truthound``: truthound 3.2's ``th.check`` with NotNull, Between, Unique and Regex
  validators, in its own venv (polars 1.x);
- ``polars 1.x``: the hand-written query again in truthound's venv: it tells how much of
  the truthound figure is its polars version rather than truthound (smallest size only).

Every repetition is a fresh process that warms up on a 10,000-row file first; the
counts each contender finds are checked against the hand-written ones. truthound's
``unique`` counts surplus rows (n - distinct), checkpointd every row of a repeated key,
so their unique counts differ by design and are not compared.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import (
    TRUTHOUND_WORKER,
    Settings,
    Target,
    WorkerError,
    log,
    median,
    module_worker,
    ratio,
    run_worker,
    worker_main,
    write_result,
)

WORKLOAD = "validation_throughput"
PATTERN = r"^[a-z0-9.]+@[a-z]+\.[a-z]+$"
CONTENDERS = ("checkpointd", "polars", "truthound", "polars 1.x")
VALIDATORS: list[dict[str, Any]] = [
    {"type": "not_null", "columns": ["id"]},
    {"type": "range", "column": "amount", "min": 0, "max": 100_000},
    {"type": "unique", "columns": ["id"]},
    {"type": "regex", "column": "email", "pattern": PATTERN},
]


def write_data(directory: Path, rows: int) -> dict[str, Path]:
    """``rows`` rows as parquet and CSV: every 1000th id null, every 997th repeats its
    neighbour, every 500th amount negative, every 250th email malformed."""
    import polars as pl

    frame = pl.DataFrame({"i": pl.int_range(0, rows, eager=True)}).select(
        id=pl.when(pl.col("i") % 1000 == 999)
        .then(None)
        .when(pl.col("i") % 997 == 1)
        .then(pl.col("i") - 1)
        .otherwise(pl.col("i")),
        amount=pl.when(pl.col("i") % 500 == 7)
        .then(-1.5)
        .otherwise((pl.col("i") * 37 % 100_000).cast(pl.Float64)),
        email=pl.when(pl.col("i") % 250 == 3)
        .then(pl.lit("not-an-email"))
        .otherwise(pl.format("user{}@example.com", pl.col("i"))),
    )
    paths = {"parquet": directory / f"{rows}.parquet", "csv": directory / f"{rows}.csv"}
    frame.write_parquet(paths["parquet"])
    frame.write_csv(paths["csv"])
    return paths


# ---------------------------------------------------------------- worker side


def _scan(path: str) -> Any:
    import polars as pl

    return pl.scan_parquet(path) if path.endswith(".parquet") else pl.scan_csv(path)


def hand_written(path: str) -> dict[str, int]:
    """The four validators' counts and samples, written directly: the limit."""
    import polars as pl

    n = 5
    id_, amount, email = pl.col("id"), pl.col("amount"), pl.col("email")
    outside = ((amount < 0) | (amount > 100_000)).fill_null(False)
    dup = id_.is_duplicated() & id_.is_not_null()
    mismatch = (~email.str.contains(PATTERN)).fill_null(False)
    row = (
        _scan(path)
        .select(
            rows=pl.len(),
            not_null=id_.is_null().sum(),
            null_rows=id_.is_null().arg_true().head(n).implode(),
            amount_checked=amount.is_not_null().sum(),
            range=outside.sum(),
            range_sample=amount.filter(outside).head(n).implode(),
            id_checked=id_.is_not_null().sum(),
            unique=dup.sum(),
            unique_sample=id_.filter(dup).unique(maintain_order=True).head(n).implode(),
            email_checked=email.is_not_null().sum(),
            regex=mismatch.sum(),
            regex_sample=email.filter(mismatch).head(n).implode(),
        )
        .collect()
        .row(0, named=True)
    )
    return {k: int(row[k]) for k in ("not_null", "range", "unique", "regex")}


def with_checkpoint(path: str) -> dict[str, int]:
    from checkpointd.checkpoints.checkpoint import Checkpoint

    kind = "parquet" if path.endswith(".parquet") else "csv"
    checkpoint = Checkpoint.from_dict(
        {"name": "orders", "data_source": {"type": kind, "path": path}, "validators": VALIDATORS}
    )
    result = asyncio.run(checkpoint.run_async())
    if result.error:
        raise SystemExit(f"checkpoint error: {result.error}")
    return {v.type: v.failed_count for v in result.validators}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    fn = with_checkpoint if spec["contender"] == "checkpointd" else hand_written
    fn(spec["warmup_path"])
    started = time.perf_counter()
    found = fn(spec["path"])
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows_per_s": int(spec["rows"]) / elapsed, "found": found}


# ---------------------------------------------------------------- orchestrator


def run(settings: Settings) -> dict[str, Any]:
    sizes = [200_000, 1_000_000] if settings.quick else [1_000_000, 10_000_000]
    data = settings.workdir / "validation"
    data.mkdir(parents=True, exist_ok=True)
    warm = write_data(data, 10_000)
    reps: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for rows in sizes:
        log(f"{WORKLOAD}: writing {rows:,} rows")
        paths = write_data(data, rows)
        for fmt, path in paths.items():
            log(f"{WORKLOAD}: {rows:,} rows of {fmt}")
            for _rep in range(settings.repeat):
                for contender in CONTENDERS:
                    key = f"{contender}|{fmt}|{rows}"
                    if key in skipped:
                        continue
                    if contender == "polars 1.x" and rows != sizes[0]:
                        skipped[key] = f"the polars-version control runs at {sizes[0]:,} rows only"
                        continue
                    argv = _argv(settings, contender)
                    if argv is None:
                        skipped[key] = "truthound is not installed (scripts/bench installs it)"
                        continue
                    spec = {
                        "contender": contender.split()[0],
                        "mode": "check",
                        "rows": rows,
                        "path": str(path),
                        "warmup_path": str(warm[fmt]),
                    }
                    try:
                        out = run_worker(
                            argv, spec, timeout=900, cwd=settings.workdir / "truthound"
                        )
                    except WorkerError as exc:
                        skipped[key] = f"failed: {str(exc)[-300:]}"
                        log(str(exc))
                        continue
                    reps.setdefault(key, []).append(out)
        for path in paths.values():
            path.unlink(missing_ok=True)
    return summarize(sizes, reps, skipped)


def _argv(settings: Settings, contender: str) -> list[str] | None:
    if contender in ("truthound", "polars 1.x"):
        if settings.truthound_python is None:
            return None
        return [settings.truthound_python, str(TRUTHOUND_WORKER)]
    return module_worker(settings, WORKLOAD)


def summarize(
    sizes: list[int], reps: dict[str, list[dict[str, Any]]], skipped: dict[str, str]
) -> dict[str, Any]:
    rows_out = []
    mismatches = []
    for rows in sizes:
        for fmt in ("parquet", "csv"):
            limit = _med(reps, f"polars|{fmt}|{rows}")
            th = _med(reps, f"truthound|{fmt}|{rows}")
            want = (reps.get(f"polars|{fmt}|{rows}") or [{}])[0].get("found")
            for contender in CONTENDERS:
                key = f"{contender}|{fmt}|{rows}"
                rate = _med(reps, key)
                got = (reps.get(key) or [{}])[0].get("found")
                if want and got and contender in ("checkpointd", "polars 1.x") and got != want:
                    mismatches.append({"key": key, "found": got, "expected": want})
                rows_out.append(
                    {
                        "rows": rows,
                        "format": fmt,
                        "contender": contender,
                        "rows_per_s": rate,
                        "seconds": median([r["seconds"] for r in reps.get(key, [])]),
                        "peak_rss_mib": median([r["peak_rss_mib"] for r in reps.get(key, [])]),
                        "vs_polars": ratio(rate, limit),
                        "vs_truthound": ratio(rate, th),
                        "found": got,
                        "skipped": skipped.get(key),
                    }
                )
    return {
        "description": __doc__,
        "reps": reps,
        "skipped": skipped,
        "count_mismatches": mismatches,
        "rows": rows_out,
        "targets": [t.as_dict() for t in targets(rows_out)],
    }


def _med(reps: dict[str, list[dict[str, Any]]], key: str) -> float:
    return median([float(r["rows_per_s"]) for r in reps.get(key, [])])


def targets(rows: list[dict[str, Any]]) -> list[Target]:
    mine = [
        r for r in rows if r["contender"] == "checkpointd" and r["rows_per_s"] == r["rows_per_s"]
    ]

    def target(name: str, goal: str, field: str, ok: Any) -> Target:
        chosen = [r for r in mine if r[field] == r[field]]
        if not chosen:
            return Target(name, goal, "not measured", None)
        text = ", ".join(f"{r[field]:.2f}× ({r['format']}, {r['rows']:,})" for r in chosen)
        return Target(name, goal, text, all(ok(r[field]) for r in chosen))

    return [
        target(
            "validation time vs hand-written polars",
            "within 1.5× (rows/s ≥ 0.67×)",
            "vs_polars",
            lambda x: x >= 1 / 1.5,
        ),
        target(
            "validation rows/s vs truthound th.check",
            "faster (> 1×)",
            "vs_truthound",
            lambda x: x > 1,
        ),
    ]


def main(settings: Settings) -> Path:
    return write_result(WORKLOAD, settings, run(settings))


if __name__ == "__main__":
    worker_main(measure)
