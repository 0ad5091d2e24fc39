"""What each validator type reports, with exact counts on data with planted defects."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from checkpointd.checkpoints.result import Status

from .conftest import NOW, Planted


def _frame(**columns: pl.Series | list[object]) -> pl.DataFrame:
    return pl.DataFrame(columns)


# ---------------------------------------------------------------- not_null, null_ratio


def test_not_null_reports_one_exact_result_per_column(run, orders):
    evaluation = run(orders, {"type": "not_null", "columns": ["id", "amount", "ts"]})

    by_column = {r.column: r for r in evaluation.results}
    assert list(by_column) == ["id", "amount", "ts"]
    assert by_column["id"].failed_count == Planted.id_nulls
    assert by_column["amount"].failed_count == Planted.amount_nulls
    assert by_column["ts"].status is Status.SUCCESS
    for result in evaluation.results:
        assert result.type == "not_null"
        assert result.checked_count == Planted.rows  # nulls are what it checks
    assert by_column["id"].status is Status.FAILURE
    assert by_column["id"].failed_ratio == pytest.approx(Planted.id_nulls / Planted.rows)
    assert by_column["id"].message == "10 of 1000 values of id are null"


def test_not_null_samples_the_positions_of_null_rows(one, orders):
    result = one(orders, {"type": "not_null", "columns": ["id"]}, sample_size=3)

    assert result.sample == (0, 100, 200)


@pytest.mark.parametrize(
    ("max_ratio", "status"),
    [(0.005, Status.FAILURE), (0.01, Status.SUCCESS), (0.5, Status.SUCCESS), (0.0, Status.FAILURE)],
)
def test_null_ratio_fails_only_above_max(one, orders, max_ratio, status):
    result = one(orders, {"type": "null_ratio", "columns": ["id"], "max": max_ratio})

    assert result.status is status
    assert (result.checked_count, result.failed_count) == (Planted.rows, Planted.id_nulls)
    assert result.failed_ratio == pytest.approx(0.01)


def test_null_ratio_reports_one_result_per_column(run, orders):
    results = run(
        orders, {"type": "null_ratio", "columns": ["amount", "email"], "max": 0.0045}
    ).results

    assert [(r.column, r.failed_count, r.status) for r in results] == [
        ("amount", Planted.amount_nulls, Status.FAILURE),  # 0.5% > 0.45%
        ("email", Planted.email_nulls, Status.SUCCESS),  # 0.4%
    ]
    assert results[0].message == "0.5% of 1000 values of amount are null (max 0.45%)"


# ---------------------------------------------------------------- unique


def test_unique_fails_every_row_of_a_repeated_key_and_ignores_nulls(one, orders):
    result = one(orders, {"type": "unique", "columns": ["id"]})

    assert result.status is Status.FAILURE
    assert result.column == "id"
    assert result.checked_count == Planted.id_checked
    assert result.failed_count == Planted.id_repeated_rows
    assert result.sample == (501, 601)  # distinct repeated keys, in row order
    assert result.message == "5 of 990 rows share their id with another row"


def test_unique_counts_a_value_seen_twice_as_two_failing_rows(one):
    frame = _frame(k=[1, 2, 2, 3, 3, 3, None, None])

    result = one(frame, {"type": "unique", "columns": ["k"]})

    assert (result.checked_count, result.failed_count) == (6, 5)


def test_unique_over_several_columns_compares_whole_keys(one):
    frame = _frame(
        a=[1, 1, 1, 2, 2, None, None],
        b=["x", "x", "y", "x", "x", "x", "x"],
    )

    result = one(frame, {"type": "unique", "columns": ["a", "b"]})

    assert result.columns == ("a", "b")
    assert result.column is None
    # (1, x) twice and (2, x) twice fail; (1, y) is unique; keys with a null are not checked.
    assert (result.checked_count, result.failed_count) == (5, 4)
    assert result.sample == ({"a": 1, "b": "x"}, {"a": 2, "b": "x"})


def test_unique_passes_on_distinct_keys(one):
    result = one(_frame(k=["a", "b", None, None]), {"type": "unique", "columns": ["k"]})

    assert result.status is Status.SUCCESS
    assert (result.checked_count, result.failed_count) == (2, 0)


# ---------------------------------------------------------------- range


def test_range_counts_values_outside_and_ignores_nulls(one, orders):
    result = one(orders, {"type": "range", "column": "amount", "min": 0, "max": 100000})

    assert result.status is Status.FAILURE
    assert result.checked_count == Planted.amount_checked
    assert result.failed_count == Planted.amount_negative
    assert result.failed_ratio == pytest.approx(20 / 995)
    assert result.sample == (-1.0,) * 5
    assert result.message == "20 of 995 values of amount outside [0, 100000]"


@pytest.mark.parametrize(
    ("bounds", "failing"),
    [
        ({"min": 1, "max": 3}, [0, 4]),
        ({"min": 1, "max": 3, "min_inclusive": False}, [0, 1, 4]),
        ({"min": 1, "max": 3, "max_inclusive": False}, [0, 3, 4]),
        ({"min": 2}, [0, 1]),
        ({"max": 2}, [3, 4]),
        ({"min": 0, "max": 4}, []),
    ],
)
def test_range_bounds_are_inclusive_unless_told(one, bounds, failing):
    result = one(_frame(x=[0, 1, 2, 3, 4, None]), {"type": "range", "column": "x", **bounds})

    assert result.checked_count == 5
    assert list(result.sample) == failing
    assert result.failed_count == len(failing)


def test_range_treats_nan_as_outside(one):
    frame = _frame(x=[1.0, float("nan"), None, 2.5])

    result = one(frame, {"type": "range", "column": "x", "min": 0})

    assert (result.checked_count, result.failed_count) == (3, 1)
    assert math.isnan(result.sample[0])


def test_range_on_a_string_column_is_an_error(one, orders):
    result = one(orders, {"type": "range", "column": "status", "min": 0})

    assert result.status is Status.ERROR
    assert result.message == "range needs a numeric column; 'status' is String"


# ---------------------------------------------------------------- in_set


def test_in_set_counts_values_outside_the_set(one, orders):
    result = one(
        orders, {"type": "in_set", "column": "status", "values": ["new", "paid", "shipped"]}
    )

    assert result.checked_count == Planted.status_checked
    assert result.failed_count == Planted.status_lost
    assert result.sample == ("lost",) * 5
    assert result.message == "8 of 997 values of status not in {new, paid, shipped}"


def test_in_set_compares_ints_with_float_values_by_number(one):
    result = one(_frame(x=[1, 2, 3, None]), {"type": "in_set", "column": "x", "values": [1, 2.0]})

    assert (result.checked_count, result.failed_count, result.sample) == (3, 1, (3,))


def test_in_set_reads_iso_strings_for_a_date_column(one):
    frame = _frame(d=[date(2026, 1, 1), date(2026, 1, 2)])

    result = one(frame, {"type": "in_set", "column": "d", "values": ["2026-01-01"]})

    assert result.failed_count == 1
    assert result.sample == (date(2026, 1, 2),)


def test_in_set_on_a_categorical_column_compares_text(one):
    frame = _frame(c=pl.Series(["a", "b", "c"], dtype=pl.Categorical))

    result = one(frame, {"type": "in_set", "column": "c", "values": ["a", "b"]})

    assert (result.failed_count, result.sample) == (1, ("c",))


def test_in_set_with_values_of_another_kind_is_an_error(one):
    result = one(_frame(x=[1, 2]), {"type": "in_set", "column": "x", "values": ["one"]})

    assert result.status is Status.ERROR
    assert result.message == "in_set values ['one'] cannot be compared with 'x' (Int64)"


# ---------------------------------------------------------------- regex


def test_regex_counts_values_that_do_not_match(one, orders):
    pattern = r"^[a-z0-9]+@example\.com$"

    result = one(orders, {"type": "regex", "column": "email", "pattern": pattern})

    assert result.checked_count == Planted.email_checked
    assert result.failed_count == Planted.email_broken
    assert result.sample == ("broken",) * 5


def test_regex_searches_rather_than_matching_the_whole_value(one):
    frame = _frame(s=["abc", "xabcx", "xyz"])

    search = one(frame, {"type": "regex", "column": "s", "pattern": "abc"})
    full = one(frame, {"type": "regex", "column": "s", "pattern": "^abc$"})

    assert search.sample == ("xyz",)
    assert full.sample == ("xabcx", "xyz")


def test_regex_reads_categorical_columns_as_text(one):
    frame = _frame(c=pl.Series(["a1", "b2", "a3"], dtype=pl.Categorical))

    result = one(frame, {"type": "regex", "column": "c", "pattern": "^a"})

    assert (result.failed_count, result.sample) == (1, ("b2",))


def test_regex_on_an_int_column_is_an_error(one, orders):
    result = one(orders, {"type": "regex", "column": "id", "pattern": "1"})

    assert result.status is Status.ERROR
    assert result.message == "regex needs a string column; 'id' is Int64"


def test_regex_python_accepts_but_polars_cannot_run_is_an_error(one, orders):
    result = one(orders, {"type": "regex", "column": "email", "pattern": r"^(?!admin)"})

    assert result.status is Status.ERROR
    assert "look-around" in result.message


# ---------------------------------------------------------------- expression


def test_expression_must_hold_per_row_and_skips_rows_where_it_is_null(one, orders):
    result = one(orders, {"type": "expression", "expr": "amount >= 0"})

    assert result.column is None
    assert result.checked_count == Planted.amount_checked
    assert result.failed_count == Planted.amount_negative
    assert result.sample[0] == {"amount": -1.0}
    assert result.message == "20 of 995 rows do not satisfy amount >= 0"


def test_expression_samples_the_columns_it_reads(one):
    frame = _frame(a=[1, 5, 2], b=[2, 3, None], c=["x", "y", "z"])

    result = one(frame, {"type": "expression", "expr": "a < b"})

    assert (result.checked_count, result.failed_count) == (2, 1)
    assert result.sample == ({"a": 5, "b": 3},)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("amount >> AND", "invalid SQL expression 'amount >> AND'"),
        ("amount + 1", "must be true or false per row; it is Float64"),
        ("price > 0", "column 'price' not found in the data (columns: id, amount"),
    ],
)
def test_expression_that_cannot_run_is_an_error(one, orders, expr, message):
    result = one(orders, {"type": "expression", "expr": expr})

    assert result.status is Status.ERROR
    assert message in result.message


# ---------------------------------------------------------------- row_count


@pytest.mark.parametrize(
    ("bounds", "status", "wanted"),
    [
        ({"min": 1}, Status.SUCCESS, "at least 1"),
        ({"min": 1000, "max": 1000}, Status.SUCCESS, "between 1000 and 1000"),
        ({"min": 1001}, Status.FAILURE, "at least 1001"),
        ({"max": 999}, Status.FAILURE, "at most 999"),
    ],
)
def test_row_count_checks_the_number_of_rows(one, orders, bounds, status, wanted):
    result = one(orders, {"type": "row_count", **bounds})

    assert result.status is status
    assert result.checked_count == Planted.rows
    # One data-set level check: it failed (1, 1.0) or it did not (0, 0.0).
    failed = status is Status.FAILURE
    assert (result.failed_count, result.failed_ratio) == ((1, 1.0) if failed else (0, 0.0))
    assert result.sample == (1000,)
    assert result.message == f"1000 rows, expected {wanted}"


def test_row_count_of_an_empty_frame_fails_a_minimum(one):
    result = one(pl.DataFrame(schema={"x": pl.Int64}), {"type": "row_count", "min": 1})

    assert (result.status, result.checked_count, result.failed_count) == (Status.FAILURE, 0, 1)


# ---------------------------------------------------------------- schema


def test_schema_names_every_missing_mistyped_and_unexpected_column(one, orders):
    spec = {
        "type": "schema",
        "columns": {"id": "Int64", "amount": "Utf8", "ts": "Datetime", "status": None, "sku": None},
        "allow_extra": False,
    }

    result = one(orders, spec)

    assert result.status is Status.FAILURE
    assert result.sample == (
        "amount (expected Utf8, found Float64)",
        "sku (missing)",
        "email (not allowed)",
    )
    assert (result.checked_count, result.failed_count) == (6, 3)
    assert result.message.startswith("3 of 6 columns do not match the schema: amount (expected")


def test_schema_passes_with_aliases_and_any_datetime_unit_or_zone(one):
    frame = _frame(
        s=["a"], f=[1.5], t=pl.Series([datetime(2026, 1, 1)]).dt.replace_time_zone("Europe/Paris")
    )

    result = one(
        frame, {"type": "schema", "columns": {"s": "str", "f": "float64", "t": "Datetime"}}
    )

    assert result.status is Status.SUCCESS
    assert result.message == "all 3 columns match the schema"


def test_schema_with_an_unknown_dtype_name_is_an_error(one, orders):
    result = one(orders, {"type": "schema", "columns": {"id": "Integer"}})

    assert result.status is Status.ERROR
    assert "unknown dtype 'Integer'; valid names: Int8" in result.message


# ---------------------------------------------------------------- freshness


@pytest.mark.parametrize(
    ("max_age", "status"),
    [
        ("19h", Status.FAILURE),
        ("1160m", Status.FAILURE),
        ("1161m", Status.SUCCESS),
        ("1d", Status.SUCCESS),
    ],
)
def test_freshness_reads_naive_timestamps_as_utc(one, orders, max_age, status):
    # The newest ts is 2026-03-01 16:39 (naive = UTC); NOW is 2026-03-02 12:00 UTC: 1161m old.
    result = one(orders, {"type": "freshness", "column": "ts", "max_age": max_age})

    assert result.status is status
    assert result.sample == (Planted.newest_ts,)
    assert result.checked_count == Planted.rows


def test_freshness_message_gives_the_age(one, orders):
    result = one(orders, {"type": "freshness", "column": "ts", "max_age": "1h"})

    assert result.message == "newest ts is 2026-03-01T16:39:00, 19:21:00 old (max 1:00:00)"


def test_freshness_converts_aware_timestamps_to_utc(one):
    # 13:00 in Paris (UTC+1 in March) is 12:00 UTC, exactly NOW.
    local = datetime(2026, 3, 2, 13, 0)
    frame = _frame(t=pl.Series([local]).dt.replace_time_zone("Europe/Paris"))

    fresh = one(frame, {"type": "freshness", "column": "t", "max_age": "1s"})
    stale = one(
        frame, {"type": "freshness", "column": "t", "max_age": "1s"}, now=NOW + timedelta(seconds=2)
    )

    assert (fresh.status, stale.status) == (Status.SUCCESS, Status.FAILURE)


def test_freshness_of_a_date_column_counts_from_midnight_utc(one):
    frame = _frame(d=[date(2026, 3, 1), date(2026, 3, 2), None])

    result = one(frame, {"type": "freshness", "column": "d", "max_age": "12h"})

    assert result.status is Status.SUCCESS  # 2026-03-02 00:00 UTC is 12h before NOW
    assert result.checked_count == 2


def test_freshness_without_any_timestamp_fails(one):
    frame = pl.DataFrame({"t": pl.Series([None, None], dtype=pl.Datetime("us"))})

    result = one(frame, {"type": "freshness", "column": "t", "max_age": "1h"})

    assert (result.status, result.checked_count) == (Status.FAILURE, 0)
    assert result.message == "no timestamps in t to judge freshness by"


def test_freshness_accepts_a_naive_now_as_utc(one, orders):
    naive_now = datetime(2026, 3, 1, 17, 0)

    result = one(orders, {"type": "freshness", "column": "ts", "max_age": "30m"}, now=naive_now)

    assert result.status is Status.SUCCESS


def test_freshness_on_a_string_column_is_an_error(one, orders):
    result = one(orders, {"type": "freshness", "column": "email", "max_age": "1h"})

    assert result.status is Status.ERROR
    assert result.message == "freshness needs a Datetime or Date column; 'email' is String"


# ---------------------------------------------------------------- mean_between, stddev_between


def test_mean_between_checks_the_mean_of_non_null_values(one):
    frame = _frame(x=[1.0, 2.0, 6.0, None])

    inside = one(frame, {"type": "mean_between", "column": "x", "min": 2, "max": 3})
    above = one(frame, {"type": "mean_between", "column": "x", "max": 2.5})

    assert (inside.status, inside.sample, inside.checked_count) == (Status.SUCCESS, (3.0,), 3)
    assert (above.status, above.failed_count, above.failed_ratio) == (Status.FAILURE, 1, 1.0)
    assert above.message == "mean of x is 3, expected within (-inf, 2.5]"


def test_stddev_between_uses_the_sample_standard_deviation(one):
    frame = _frame(x=[2, 4, 4, 4, 5, 5, 7, 9])  # sample stddev = sqrt(32 / 7)

    result = one(frame, {"type": "stddev_between", "column": "x", "min": 2.1, "max": 2.2})

    assert result.status is Status.SUCCESS
    assert result.sample[0] == pytest.approx(math.sqrt(32 / 7))


@pytest.mark.parametrize(
    ("kind", "values"), [("mean_between", []), ("stddev_between", [1.0]), ("mean_between", [None])]
)
def test_a_statistic_that_cannot_be_computed_fails(one, kind, values):
    frame = pl.DataFrame({"x": pl.Series(values, dtype=pl.Float64)})

    result = one(frame, {"type": kind, "column": "x", "min": 0})

    assert result.status is Status.FAILURE
    assert result.message.startswith("cannot compute the")


def test_statistics_on_a_non_numeric_column_are_errors(run, orders):
    results = run(
        orders,
        {"type": "mean_between", "column": "status", "min": 0},
        {"type": "stddev_between", "column": "ts", "max": 1},
    ).results

    assert [r.status for r in results] == [Status.ERROR, Status.ERROR]
    assert results[1].message.startswith("stddev_between needs a numeric column; 'ts' is Datetime")


# ---------------------------------------------------------------- common semantics


def test_mostly_passes_when_enough_checked_rows_pass(run, orders):
    # 20 of 995 amounts are negative: 97.99% pass.
    spec = {"type": "range", "column": "amount", "min": 0}
    results = run(orders, {**spec, "mostly": 0.97}, {**spec, "mostly": 0.98}).results

    assert [r.status for r in results] == [Status.SUCCESS, Status.FAILURE]
    assert [r.failed_count for r in results] == [20, 20]
    assert results[0].message.endswith("(97.99% pass, need 97%)")


def test_mostly_accepts_a_share_exactly_at_the_threshold(one):
    frame = _frame(x=list(range(100)))

    result = one(frame, {"type": "range", "column": "x", "max": 98, "mostly": 0.99})

    assert (result.failed_count, result.status) == (1, Status.SUCCESS)


def test_severity_is_copied_and_status_still_says_failure(run, orders):
    results = run(
        orders,
        {"type": "not_null", "columns": ["id"], "severity": "warning", "name": "ids present"},
        {"type": "row_count", "min": 1},
    ).results

    assert (results[0].status, results[0].severity, results[0].name) == (
        Status.FAILURE,
        "warning",
        "ids present",
    )
    assert results[1].severity == "error"


def test_nothing_to_check_passes_with_a_zero_ratio(run):
    frame = pl.DataFrame({"x": pl.Series([None, None], dtype=pl.Int64)})

    results = run(
        frame,
        {"type": "range", "column": "x", "min": 0},
        {"type": "unique", "columns": ["x"]},
        {"type": "in_set", "column": "x", "values": [1]},
    ).results

    for result in results:
        assert (result.status, result.checked_count, result.failed_ratio) == (
            Status.SUCCESS,
            0,
            0.0,
        )


def test_samples_are_limited_and_json_safe(run, orders):
    evaluation = run(
        orders,
        {"type": "not_null", "columns": ["id"]},
        {"type": "unique", "columns": ["id", "status"]},
        {"type": "freshness", "column": "ts", "max_age": "1h"},
        {"type": "expression", "expr": "amount >= 0"},
        sample_size=2,
    )

    for result in evaluation.results:
        assert len(result.sample) <= 2
        json.dumps(result.to_dict(), allow_nan=False)
    assert evaluation.results[2].to_dict()["sample"] == ["2026-03-01T16:39:00"]


def test_results_come_in_the_order_of_the_validators(run, orders):
    evaluation = run(
        orders,
        {"type": "row_count", "min": 1},
        {"type": "not_null", "columns": ["id", "email"]},
        {"type": "regex", "column": "email", "pattern": "@"},
        {"type": "schema", "columns": {"id": None}},
    )

    assert evaluation.row_count == Planted.rows
    kinds = [(r.type, r.column) for r in evaluation.results]
    assert kinds == [
        ("row_count", None),
        ("not_null", "id"),
        ("not_null", "email"),
        ("regex", "email"),
        ("schema", None),
    ]


def test_no_validators_still_counts_rows(run, orders):
    evaluation = run(orders)

    assert (evaluation.row_count, evaluation.results) == (Planted.rows, ())


def test_every_validator_type_runs_on_the_planted_data(run, orders):
    evaluation = run(
        orders,
        {"type": "not_null", "columns": ["status"]},
        {"type": "null_ratio", "columns": ["email"], "max": 0.01},
        {"type": "unique", "columns": ["id"]},
        {"type": "range", "column": "amount", "min": 0},
        {"type": "in_set", "column": "status", "values": ["new", "paid", "shipped"]},
        {"type": "regex", "column": "email", "pattern": "@example"},
        {"type": "row_count", "min": 1},
        {"type": "schema", "columns": {"id": "Int64"}},
        {"type": "freshness", "column": "ts", "max_age": "1d"},
        {"type": "mean_between", "column": "amount", "min": 0},
        {"type": "stddev_between", "column": "amount", "min": 0},
        {"type": "expression", "expr": "id > 0"},
        now=datetime(2026, 3, 1, 17, 0, tzinfo=UTC),
    )

    failed = {r.type: r.failed_count for r in evaluation.results}
    assert failed == {
        "not_null": Planted.status_nulls,
        "null_ratio": Planted.email_nulls,
        "unique": Planted.id_repeated_rows,
        "range": Planted.amount_negative,
        "in_set": Planted.status_lost,
        "regex": Planted.email_broken,
        "row_count": 0,
        "schema": 0,
        "freshness": 0,
        "mean_between": 0,
        "stddev_between": 0,
        "expression": 0,
    }
