"""Durations as operators write them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from checkpointd.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1.5s", timedelta(seconds=1.5)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        (" 10S ", timedelta(seconds=10)),
        ("0s", timedelta(0)),
        (30, timedelta(seconds=30)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(seconds=7), timedelta(seconds=7)),
    ],
)
def test_parse_duration(value, expected) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("5 minutes", "expected a duration like 500ms, 30s, 5m, 1h or 1h30m"),
        ("5x", "found '5x'"),
        ("", "found ''"),
        ("-5s", "found '-5s'"),
        ("1h30", "found '1h30'"),
        ("m5", "found 'm5'"),
        (True, "found True"),
        ([5], "found [5]"),
        (None, "found None"),
        (-1, "a duration cannot be negative, found -1"),
        (float("inf"), "a duration must be finite"),
        (float("nan"), "a duration must be finite"),
        (10**20, "under 10000 days"),
        ("99999999d", "under 10000 days"),
    ],
)
def test_parse_duration_rejects(value, fragment) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1), "1d"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=1500), "0.0015s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_round_trips(value, text) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value
