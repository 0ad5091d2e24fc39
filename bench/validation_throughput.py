"""Throughput of ``validators.evaluate`` against hand-written polars doing the same work.

Usage: ``python bench/validation_throughput.py [--rows N] [--repeat 5] [--json OUT]``

Writes an N-row parquet file with planted defects to a temporary directory,
then times (median of ``--repeat`` alternating runs after one warm-up) two ways of
computing the same aggregates in one select over a parquet scan:

- ``evaluate``: not_null(id) + range(amount, 0..100000) + unique(id) +
  regex(email), the way a checkpoint runs them (schema read, dry run, plan);
- hand-written: one ``select`` of the same counts and samples.

Prints a table of seconds and rows/s, and the ratio evaluate / hand-written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import TypeAdapter

from checkpointd.checkpoints.validators import evaluate
from checkpointd.config.models import ValidatorConfig

PATTERN = r"^[a-z0-9.]+@[a-z]+\.[a-z]+$"
VALIDATORS = TypeAdapter(list[ValidatorConfig]).validate_python(
    [
        {"type": "not_null", "columns": ["id"]},
        {"type": "range", "column": "amount", "min": 0, "max": 100_000},
        {"type": "unique", "columns": ["id"]},
        {"type": "regex", "column": "email", "pattern": PATTERN},
    ]
)


def write_data(path: Path, rows: int) -> None:
    """``rows`` rows; every 1000th id null, every 997th repeats its neighbour, every 500th
    amount negative, every 250th email malformed."""
    idx = pl.int_range(0, rows, eager=True)
    frame = pl.DataFrame({"i": idx}).select(
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
    frame.write_parquet(path)


def hand_written(frame: pl.LazyFrame) -> dict[str, Any]:
    """The same aggregates as the four validators, written directly."""
    n = 5
    id_, amount, email = pl.col("id"), pl.col("amount"), pl.col("email")
    outside = ((amount < 0) | (amount > 100_000)).fill_null(False)
    dup = id_.is_duplicated() & id_.is_not_null()
    mismatch = (~email.str.contains(PATTERN)).fill_null(False)
    return (
        frame.select(
            rows=pl.len(),
            id_nulls=id_.is_null().sum(),
            id_null_rows=id_.is_null().arg_true().head(n).implode(),
            amount_checked=amount.is_not_null().sum(),
            amount_failed=outside.sum(),
            amount_sample=amount.filter(outside).head(n).implode(),
            id_checked=id_.is_not_null().sum(),
            id_dups=dup.sum(),
            id_sample=id_.filter(dup).unique(maintain_order=True).head(n).implode(),
            email_checked=email.is_not_null().sum(),
            email_failed=mismatch.sum(),
            email_sample=email.filter(mismatch).head(n).implode(),
        )
        .collect()
        .row(0, named=True)
    )


def with_evaluate(frame: pl.LazyFrame) -> dict[str, Any]:
    evaluation = evaluate(frame, VALIDATORS, now=datetime.now(UTC))
    return {
        "rows": evaluation.row_count,
        **{f"{r.type}_failed": r.failed_count for r in evaluation.results},
    }


def timed(contenders: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each contender; runs alternate so load drift hits both alike."""
    for fn in contenders.values():
        fn()  # warm-up: page cache, polars thread pool, regex compilation
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "orders.parquet"
        write_data(path, args.rows)

        def scan() -> pl.LazyFrame:
            return pl.scan_parquet(path)

        got, want = with_evaluate(scan()), hand_written(scan())
        expected = {"not_null": want["id_nulls"], "range": want["amount_failed"]}
        expected |= {"unique": want["id_dups"], "regex": want["email_failed"]}
        for kind, count in expected.items():
            if got[f"{kind}_failed"] != count:
                raise SystemExit(
                    f"{kind}: evaluate found {got[f'{kind}_failed']}, expected {count}"
                )

        medians = timed(
            {"evaluate": lambda: with_evaluate(scan()), "hand": lambda: hand_written(scan())},
            args.repeat,
        )
        t_eval, t_hand = medians["evaluate"], medians["hand"]

    rows = args.rows
    print(f"{rows:,} rows, parquet, not_null + range + unique + regex, median of {args.repeat}")
    print(f"{'':14}{'seconds':>10}{'rows/s':>16}")
    print(f"{'evaluate':14}{t_eval:>10.4f}{rows / t_eval:>16,.0f}")
    print(f"{'hand-written':14}{t_hand:>10.4f}{rows / t_hand:>16,.0f}")
    print(f"ratio evaluate / hand-written time: {t_eval / t_hand:.3f}")
    print(f"failing rows found: {expected}")
    if args.json:
        report = {
            "rows": rows,
            "repeat": args.repeat,
            "evaluate_seconds": t_eval,
            "hand_written_seconds": t_hand,
            "evaluate_rows_per_second": rows / t_eval,
            "hand_written_rows_per_second": rows / t_hand,
            "ratio": t_eval / t_hand,
            "failed_counts": expected,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
