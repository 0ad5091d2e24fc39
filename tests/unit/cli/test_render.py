"""The terminal tables of ``run-once`` and ``history``: pure functions from results to text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from checkpointd.checkpoints.result import CheckpointResult, Status, ValidatorResult
from checkpointd.cli.render import render_history, render_result, table
from checkpointd.events import TriggerInfo

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def result(status: Status = Status.SUCCESS, **fields: object) -> CheckpointResult:
    values: dict[str, object] = {
        "run_id": "run-1",
        "checkpoint": "orders",
        "status": status,
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=1.25),
    }
    values.update(fields)
    return CheckpointResult(**values)  # type: ignore[arg-type]


NEGATIVE = ValidatorResult(
    type="range",
    status=Status.FAILURE,
    column="amount",
    checked_count=200,
    failed_count=2,
    failed_ratio=0.01,
    sample=(-3.0, 125000.0),
    message="2 of 200 values of amount outside [0, 100000]",
)
PRESENT = ValidatorResult(
    type="not_null",
    status=Status.SUCCESS,
    column="order_id",
    checked_count=200,
    message="0 of 200 values of order_id are null",
)


def test_table_aligns_columns_under_a_rule():
    text = table(["name", "n"], [["a", 1], ["longer", None]])

    assert text.splitlines() == [
        "name    n",
        "------  -",
        "a       1",
        "longer",
    ]


def test_a_result_starts_with_checkpoint_status_duration_and_attempt():
    text = render_result(result(Status.FAILURE, attempt=2, row_count=200))

    head, run = text.splitlines()[:2]
    assert head == "orders: FAIL (failure) in 1.250s, attempt 2, 200 rows"
    assert run == "run run-1"


def test_a_result_lists_every_validator_and_marks_the_failing_ones():
    text = render_result(result(Status.FAILURE, validators=(PRESENT, NEGATIVE)))

    rows = text.splitlines()[3:]
    assert rows[0].split() == [
        "validator", "column", "severity", "failed", "ratio", "sample", "message",
    ]  # fmt: skip
    assert rows[2].startswith("ok    not_null   order_id  error     0/200   0.00%")
    assert rows[3].startswith("FAIL  range      amount    error     2/200   1.00%  -3.0, 125000.0")
    assert rows[3].endswith("2 of 200 values of amount outside [0, 100000]")


def test_a_result_names_its_trigger_and_its_error():
    text = render_result(
        result(
            Status.ERROR,
            trigger=TriggerInfo("file", "in/a.csv:10:17", {"path": "in/a.csv"}),
            error="no such file: in/a.csv",
        )
    )

    assert "trigger file in/a.csv:10:17" in text.splitlines()
    assert "error: no such file: in/a.csv" in text.splitlines()
    assert "validator" not in text  # no table without validators


def test_long_cells_are_shortened_with_an_ellipsis():
    wordy = ValidatorResult(
        type="regex",
        status=Status.FAILURE,
        severity="warning",
        column="email",
        message="m" * 100,
        sample=("x" * 60,),
    )

    text = render_result(result(Status.WARNING, validators=(wordy,)))

    line = text.splitlines()[-1]
    assert line.startswith("FAIL  regex")
    assert "m" * 59 + "…" in line
    assert "m" * 60 not in line
    assert "'" + "x" * 38 + "…" in line


@pytest.mark.parametrize(
    ("status", "mark"),
    [
        (Status.SUCCESS, "ok"),
        (Status.WARNING, "WARN"),
        (Status.FAILURE, "FAIL"),
        (Status.ERROR, "ERROR"),
        (Status.TIMEOUT, "TIMEOUT"),
        (Status.CANCELLED, "CANCELLED"),
        (Status.SKIPPED, "skipped"),
    ],
)
def test_every_status_has_a_mark_that_stands_out_when_not_ok(status, mark):
    assert render_result(result(status)).startswith(f"orders: {mark} ({status.value}) in ")


def test_history_without_runs_says_so():
    assert render_history([]) == "no runs recorded yet"


def test_history_has_one_row_per_run_with_its_failed_validator_count():
    older = result(Status.SUCCESS, run_id="run-1", validators=(PRESENT,))
    newer = result(
        Status.FAILURE,
        run_id="run-2",
        started_at=T0 + timedelta(minutes=5),
        finished_at=T0 + timedelta(minutes=5, seconds=2),
        trigger=TriggerInfo("schedule", "orders/schedule[0]@2026-03-02T12:05:00Z"),
        validators=(PRESENT, NEGATIVE),
        attempt=3,
    )

    lines = render_history([newer, older]).splitlines()

    assert lines[0].split() == [
        "started", "checkpoint", "status", "duration", "attempt", "trigger", "failed", "run",
    ]  # fmt: skip
    assert lines[2].split() == [
        "2026-03-02T12:05:00.000Z", "orders", "failure", "2.000s", "3", "schedule", "1", "run-2",
    ]  # fmt: skip
    assert lines[3].split() == [
        "2026-03-02T12:00:00.000Z", "orders", "success", "1.250s", "1", "-", "0", "run-1",
    ]  # fmt: skip
