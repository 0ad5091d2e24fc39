"""A schedule's durable state: the encoder writes what json.dumps would, and reads back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from checkpointd.triggers.catchup import format_fire_time
from checkpointd.triggers.schedule_state import (
    STATE_VERSION,
    SavedState,
    StateEncoder,
    decode_state,
)

ARMED = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SPEC = json.dumps({"cron": "*/15 * * * *", "interval": None, "at": None, "timezone": "UTC"})


@pytest.mark.parametrize(
    "last_fire",
    [
        None,
        format_fire_time(ARMED + timedelta(minutes=15)),
        format_fire_time(ARMED + timedelta(seconds=1, microseconds=250)),
    ],
    ids=["never-fired", "whole-second", "with-microseconds"],
)
def test_the_encoder_writes_exactly_what_json_dumps_writes(last_fire):
    expected = json.dumps(
        {
            "version": STATE_VERSION,
            "spec": SPEC,
            "armed_at": format_fire_time(ARMED),
            "last_fire": last_fire,
        }
    )

    assert StateEncoder(SPEC, ARMED).encode(last_fire) == expected


def test_an_encoded_state_decodes_to_utc_datetimes():
    last = ARMED + timedelta(hours=1)
    raw = StateEncoder(SPEC, ARMED.astimezone(timezone(timedelta(hours=2)))).encode(
        format_fire_time(last)
    )

    assert decode_state(raw) == SavedState(spec=SPEC, armed_at=ARMED, last_fire=last)
    assert decode_state(raw).armed_at.tzinfo is UTC


def test_a_state_that_never_fired_decodes_with_no_last_fire():
    assert decode_state(StateEncoder(SPEC, ARMED).encode(None)).last_fire is None


def test_a_state_written_before_the_encoder_existed_still_decodes():
    raw = (
        '{"version": 1, "spec": "x", "armed_at": "2026-11-23T12:00:00Z", '
        '"last_fire": "2026-11-23T12:15:00Z"}'
    )

    assert decode_state(raw) == SavedState(
        spec="x", armed_at=ARMED, last_fire=ARMED + timedelta(minutes=15)
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{not json", ValueError),
        ('{"spec": "x", "last_fire": null}', KeyError),
        ('{"spec": "x", "armed_at": "2026-11-23T12:00:00", "last_fire": null}', ValueError),
        ('{"spec": "x", "armed_at": 12, "last_fire": null}', TypeError),
        ("[]", TypeError),
    ],
    ids=["not-json", "no-armed-at", "naive-armed-at", "armed-at-not-text", "not-an-object"],
)
def test_what_is_not_a_schedule_state_is_refused(raw, error):
    with pytest.raises(error):
        decode_state(raw)
