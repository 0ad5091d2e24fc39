"""The store's column encodings: fast, and the same values as the plain way of writing them.

``db_time`` formats the date and time once per second and ``result_json`` builds a
result's JSON from its parts; both are checked against the straightforward encodings
they replace, on generated values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from checkpointd.checkpoints.result import CheckpointResult, Status, ValidatorResult
from checkpointd.events import TriggerInfo
from checkpointd.store import model as store_model
from checkpointd.store.model import db_time, dump_json, parse_db_time, result_json

# ---------------------------------------------------------------- timestamps


def plain_db_time(value: datetime) -> str:
    """The encoding db_time had before it cached: one full isoformat() per call."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


zones = st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9))])
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
)


@given(moments)
@settings(max_examples=300)
def test_db_time_writes_what_a_full_isoformat_writes(value):
    assert db_time(value) == plain_db_time(value)


@given(moments)
def test_db_time_reads_back_as_the_same_instant(value):
    expected = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    assert parse_db_time(db_time(value)) == expected


def test_db_time_is_fixed_width_so_text_order_is_time_order():
    times = [
        datetime(999, 1, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
    ]

    texts = [db_time(t) for t in times]

    assert texts[1] == "2026-03-01T12:00:00.000000Z"
    assert texts[0] == "0999-01-01T00:00:00.000000Z"
    assert {len(t) for t in texts} == {27}
    assert sorted(texts) == texts


def test_db_time_keeps_a_bounded_number_of_formatted_seconds():
    start = datetime(2026, 3, 1, tzinfo=UTC)

    for second in range(3 * store_model._SECONDS_KEPT):
        db_time(start + timedelta(seconds=second, microseconds=second))

    assert len(store_model._SECONDS) <= store_model._SECONDS_KEPT
    assert db_time(start + timedelta(seconds=7, microseconds=3)) == "2026-03-01T00:00:07.000003Z"


# ---------------------------------------------------------------- JSON


def test_dump_json_is_compact_and_turns_what_json_cannot_carry_into_strings():
    at = datetime(2026, 3, 1, tzinfo=UTC)

    text = dump_json({"at": at, "raw": b"bytes", "tags": frozenset({"a"}), "n": [1, 2.5]})

    assert text == '{"at":"2026-03-01T00:00:00+00:00","raw":"bytes","tags":["a"],"n":[1,2.5]}'


texts = st.text(max_size=12)  # any code point: quotes, backslashes, control, non-ASCII
statuses = st.sampled_from(list(Status))
samples = st.lists(
    st.one_of(
        st.none(), st.integers(), texts, st.floats(allow_nan=True), st.booleans(),
        st.datetimes(timezones=st.just(UTC)),
    ),
    max_size=3,
)  # fmt: skip
validators = st.builds(
    ValidatorResult,
    type=texts,
    status=statuses,
    severity=st.sampled_from(["error", "warning"]),
    column=st.none() | texts,
    columns=st.lists(texts, max_size=3).map(tuple),
    checked_count=st.integers(min_value=0, max_value=2**63),
    failed_count=st.integers(min_value=0),
    failed_ratio=st.floats(min_value=0, max_value=1) | st.just(0) | st.just(float("nan")),
    sample=samples.map(tuple) | st.just(()),
    message=texts,
    name=st.none() | texts,
)
triggers = st.builds(
    TriggerInfo,
    type=texts,
    key=texts,
    params=st.dictionaries(st.sampled_from(["path", "type", "key", "ö"]), texts, max_size=3),
)
results = st.builds(
    CheckpointResult,
    run_id=texts,
    checkpoint=texts,
    status=statuses,
    started_at=st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.just(UTC)),
    # Mostly UTC (the fast path); another zone takes the generic one.
    finished_at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        timezones=st.sampled_from([UTC, UTC, UTC, timezone(timedelta(hours=2))]),
    ),
    attempt=st.integers(min_value=1, max_value=10),
    trigger=st.none() | triggers,
    validators=st.lists(validators, max_size=3).map(tuple),
    error=st.none() | texts,
    row_count=st.none() | st.integers(min_value=0),
)


def canonical(text: str) -> str:
    """The document with its keys sorted (NaN, which equals nothing, compares as text)."""
    return json.dumps(json.loads(text), sort_keys=True)


@given(results)
@settings(max_examples=300)
def test_result_json_decodes_to_exactly_to_dict(result):
    text = result_json(result, db_time(result.started_at), db_time(result.finished_at))

    assert canonical(text) == canonical(dump_json(result.to_dict()))


def test_result_json_of_a_typical_run_is_the_compact_document():
    at = datetime(2026, 3, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    result = CheckpointResult(
        run_id="r1",
        checkpoint="orders",
        status=Status.SUCCESS,
        started_at=at,
        finished_at=at + timedelta(milliseconds=5),
        trigger=TriggerInfo("file", "file:/in/a.csv", {"path": "/in/a.csv"}),
        validators=(ValidatorResult("not_null", Status.SUCCESS, column="id", checked_count=3),),
        row_count=3,
    )

    text = result_json(result, db_time(result.started_at), db_time(result.finished_at))

    assert text == (
        '{"run_id":"r1","checkpoint":"orders","status":"success",'
        '"started_at":"2026-03-01T12:00:00.123Z","finished_at":"2026-03-01T12:00:00.128Z",'
        '"duration_seconds":0.005,"attempt":1,'
        '"trigger":{"type":"file","key":"file:/in/a.csv","path":"/in/a.csv"},"row_count":3,'
        '"validators":[{"type":"not_null","column":"id","status":"success","severity":"error",'
        '"checked_count":3,"failed_count":0,"failed_ratio":0.0,"sample":[],"message":""}],'
        '"error":null}'
    )
