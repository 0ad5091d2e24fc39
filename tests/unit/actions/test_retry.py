"""Retry policy: which answers retry, how long to wait, Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from checkpointd.actions.retry import (
    HttpStatusError,
    classify_status,
    parse_retry_after,
    retry_delay,
)
from checkpointd.config.models import BackoffConfig

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past: no wait, never negative
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value, seconds):
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (425, True),
        (429, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (410, False),
        (301, False),  # redirects are refused, never followed
    ],
)
def test_which_answers_are_worth_retrying(status, retryable):
    error = classify_status(status, {}, NOW, what="webhook 'w' (http://h)")
    assert isinstance(error, HttpStatusError)
    assert error.retryable is retryable
    assert error.status_code == status
    assert f"HTTP {status}" in str(error)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(status):
    assert classify_status(status, {}, NOW, what="w") is None


@pytest.mark.parametrize(("status", "honoured"), [(429, 9.0), (503, 9.0), (500, None)])
def test_retry_after_counts_only_on_429_and_503(status, honoured):
    error = classify_status(status, {"Retry-After": "9"}, NOW, what="w")
    assert error is not None
    assert error.retry_after == honoured


BACKOFF = BackoffConfig(initial=timedelta(seconds=1), max=timedelta(seconds=30), multiplier=2.0)


def test_backoff_is_full_jitter_under_an_exponential_cap():
    rng = random.Random(7)
    for attempt in range(1, 12):
        cap = min(30.0, 2.0 ** (attempt - 1))
        draws = [retry_delay(attempt, BACKOFF, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > cap * 0.8  # spread over the whole range, not pinned low
        assert min(draws) < cap * 0.2


def test_retry_after_replaces_the_backoff_and_is_capped():
    assert retry_delay(1, BACKOFF, retry_after=12.0) == 12.0
    assert retry_delay(5, BACKOFF, retry_after=10_000.0, retry_after_max=3600.0) == 3600.0
