"""How evaluate runs: one pass over the data, and what happens when part of it cannot run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import polars as pl
import pytest
from polars.io.plugins import register_io_source

from checkpointd.checkpoints._builders import BUILDERS
from checkpointd.checkpoints.result import Status
from checkpointd.checkpoints.sources import load_frame
from checkpointd.checkpoints.validators import evaluate
from checkpointd.config.models import ParquetSource, ValidatorConfig
from checkpointd.errors import DataSourceError

from .conftest import NOW, Planted, orders_frame, validators

EVERY_KIND = (
    {"type": "not_null", "columns": ["id", "amount"]},
    {"type": "null_ratio", "columns": ["email"], "max": 0.5},
    {"type": "unique", "columns": ["id"]},
    {"type": "unique", "columns": ["id", "status"]},
    {"type": "range", "column": "amount", "min": 0, "max": 100000},
    {"type": "in_set", "column": "status", "values": ["new", "paid", "shipped"]},
    {"type": "regex", "column": "email", "pattern": "@example"},
    {"type": "expression", "expr": "amount >= 0"},
    {"type": "row_count", "min": 1},
    {"type": "schema", "columns": {"id": "Int64"}},
    {"type": "freshness", "column": "ts", "max_age": "1d"},
    {"type": "mean_between", "column": "amount", "min": 0},
    {"type": "stddev_between", "column": "amount", "min": 0},
)


def _counting_source(frame: pl.DataFrame, reads: list[list[str] | None]) -> pl.LazyFrame:
    """A LazyFrame whose every read of the underlying data is recorded in ``reads``."""

    def read(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        reads.append(with_columns)
        out = frame if with_columns is None else frame.select(with_columns)
        if predicate is not None:
            out = out.filter(predicate)
        yield out if n_rows is None else out.head(n_rows)

    return register_io_source(read, schema=frame.schema)


def test_every_validator_type_has_a_builder():
    kinds = {
        member.model_fields["type"].annotation.__args__[0]
        for member in get_args(get_args(ValidatorConfig)[0])
    }

    assert kinds == set(BUILDERS)
    assert len(kinds) == 12


# ---------------------------------------------------------------- one pass


def test_every_validator_reads_the_data_exactly_once():
    reads: list[list[str] | None] = []

    evaluation = evaluate(_counting_source(orders_frame(), reads), validators(*EVERY_KIND), now=NOW)

    assert len(reads) == 1
    assert len(evaluation.results) == 14
    assert all(r.status is not Status.ERROR for r in evaluation.results)
    # Samples came from that same read.
    assert evaluation.results[3].sample == (501, 601)


def test_a_validator_on_a_missing_column_does_not_cost_a_second_pass():
    reads: list[list[str] | None] = []

    evaluation = evaluate(
        _counting_source(orders_frame(), reads),
        validators(
            {"type": "range", "column": "price", "min": 0},
            {"type": "not_null", "columns": ["id"]},
        ),
        now=NOW,
    )

    assert len(reads) == 1
    assert [r.status for r in evaluation.results] == [Status.ERROR, Status.FAILURE]


def test_the_plan_of_a_parquet_file_has_a_single_scan(tmp_path, monkeypatch):
    path = tmp_path / "orders.parquet"
    orders_frame().write_parquet(path)
    plans: list[str] = []
    collect = pl.LazyFrame.collect

    def spy(self, *args, **kwargs):
        plans.append(self.explain())
        return collect(self, *args, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "collect", spy)

    evaluate(pl.scan_parquet(path), validators(*EVERY_KIND), now=NOW)

    reading = [p for p in plans if str(path) in p]
    assert len(reading) == 1, plans
    assert reading[0].count("SCAN") == 1


# ---------------------------------------------------------------- errors


def test_a_missing_column_is_an_error_that_names_it_while_the_others_run(run, orders):
    evaluation = run(
        orders,
        {"type": "not_null", "columns": ["id", "sku"]},
        {"type": "unique", "columns": ["id", "sku"]},
        {"type": "range", "column": "amount", "min": 0},
    )

    not_null_id, not_null_sku, unique, range_ = evaluation.results
    assert not_null_id.failed_count == Planted.id_nulls
    assert (not_null_sku.status, not_null_sku.column) == (Status.ERROR, "sku")
    assert not_null_sku.message == (
        "column 'sku' not found in the data (columns: id, amount, status, email, ts)"
    )
    assert (unique.status, unique.columns) == (Status.ERROR, ("id", "sku"))
    assert range_.failed_count == Planted.amount_negative


def test_the_listed_columns_are_truncated(run):
    frame = pl.DataFrame({f"c{i}": [1] for i in range(25)})

    (result,) = run(frame, {"type": "not_null", "columns": ["nope"]}).results

    assert result.message.endswith("c8, c9, ... (15 more))")


def test_a_validator_that_fails_on_the_data_itself_is_an_error_alone(run):
    frame = pl.DataFrame({"code": ["1", "2", "x"], "n": [1, None, 3]})

    evaluation = run(
        frame,
        {"type": "expression", "expr": "CAST(code AS INTEGER) > 0"},
        {"type": "not_null", "columns": ["n"]},
    )

    cast, not_null = evaluation.results
    assert cast.status is Status.ERROR
    assert cast.message.startswith("failed on the data: conversion from `str` to `i32` failed")
    assert (not_null.status, not_null.failed_count) == (Status.FAILURE, 1)
    assert evaluation.row_count == 3


def test_a_parquet_file_corrupt_past_its_footer_is_a_data_source_error(tmp_path):
    good, bad = tmp_path / "a.parquet", tmp_path / "b.parquet"
    orders_frame().write_parquet(good)
    orders_frame().write_parquet(bad)
    data = bytearray(bad.read_bytes())
    data[4:2000] = b"\xff" * 1996  # pages destroyed, footer intact: only reading finds out
    bad.write_bytes(bytes(data))
    frame = load_frame(ParquetSource(type="parquet", path=str(tmp_path / "*.parquet")), None)

    with pytest.raises(DataSourceError, match=r"^cannot read parquet .*\*\.parquet: "):
        evaluate(
            frame,
            validators({"type": "not_null", "columns": ["id", "email"]}),
            now=NOW,
            source=f"parquet {tmp_path}/*.parquet",
        )


def test_a_csv_value_that_does_not_parse_as_its_dtype_is_a_data_source_error(tmp_path, run):
    path = tmp_path / "x.csv"
    path.write_text("id,n\n1,2\n2,three\n")
    frame = pl.scan_csv(path, schema_overrides={"n": pl.Int64})

    with pytest.raises(DataSourceError, match="could not parse `three` as dtype `i64`"):
        run(
            frame,
            {"type": "not_null", "columns": ["id"]},
            {"type": "range", "column": "n", "min": 0},
        )


def test_a_parquet_value_that_does_not_cast_to_its_dtype_is_a_data_source_error(tmp_path):
    path = tmp_path / "x.parquet"
    pl.DataFrame({"n": ["1", "two"]}).write_parquet(path)
    frame = load_frame(ParquetSource(type="parquet", path=str(path), dtypes={"n": "Int64"}), None)

    with pytest.raises(DataSourceError, match="conversion from `str` to `i64` failed"):
        evaluate(frame, validators({"type": "range", "column": "n", "min": 0}), now=NOW)


def test_a_frame_whose_schema_cannot_be_read_is_a_data_source_error(tmp_path):
    frame = pl.scan_parquet(tmp_path / "nothing-*.parquet")

    with pytest.raises(DataSourceError, match="cannot read the data: "):
        evaluate(frame, validators({"type": "row_count", "min": 1}), now=NOW)


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_a_million_row_parquet_file_gives_exact_counts(tmp_path: Path):
    rows = 1_000_000
    i = pl.col("i")
    frame = pl.DataFrame({"i": pl.int_range(0, rows, eager=True)}).select(
        # null every 1000th; every 997th row repeats the id of the row before it
        id=pl.when(i % 1000 == 999).then(None).when(i % 997 == 1).then(i - 1).otherwise(i),
        amount=pl.when(i % 500 == 7).then(-1.5).otherwise((i % 1000).cast(pl.Float64)),
        email=pl.when(i % 250 == 3).then(pl.lit("broken")).otherwise(pl.format("u{}@x.io", i)),
        ts=pl.lit(datetime(2026, 3, 2, 11, 0)),
    )
    path = tmp_path / "big.parquet"
    frame.write_parquet(path)
    # Counted independently of the validator under test.
    repeated = (
        frame.filter(pl.col("id").is_not_null()).group_by("id").len().filter(pl.col("len") > 1)
    )
    expected_dups = int(repeated["len"].sum())

    evaluation = evaluate(
        pl.scan_parquet(path),
        validators(
            {"type": "not_null", "columns": ["id"]},
            {"type": "range", "column": "amount", "min": 0, "max": 999},
            {"type": "unique", "columns": ["id"]},
            {"type": "regex", "column": "email", "pattern": "^u[0-9]+@x\\.io$"},
            {"type": "freshness", "column": "ts", "max_age": "2h"},
        ),
        now=datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
    )

    not_null, range_, unique, regex, freshness = evaluation.results
    assert evaluation.row_count == rows
    assert (not_null.checked_count, not_null.failed_count) == (rows, 1000)
    assert (range_.checked_count, range_.failed_count) == (rows, 2000)
    assert (unique.checked_count, unique.failed_count) == (rows - 1000, expected_dups)
    # 1004 rows repeat their neighbour's id; in 2 of them one side of the pair is null.
    assert expected_dups == 2 * 1002
    assert (regex.checked_count, regex.failed_count) == (rows, 4000)
    assert freshness.status is Status.SUCCESS
    assert freshness.sample == (datetime(2026, 3, 2, 11, 0),)
