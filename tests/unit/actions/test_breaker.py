"""The per-destination circuit breaker, driven by a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkpointd.actions.breaker import BreakerState, CircuitBreaker
from checkpointd.clock import FrozenClock


@pytest.fixture
def clock():
    return FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))


def test_opens_after_n_consecutive_failures(clock):
    breaker = CircuitBreaker(failures=3, reset_after=30, clock=clock)
    breaker.failed()
    breaker.failed()
    assert breaker.allows()
    assert not breaker.is_open
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows()
    assert breaker.seconds_until_probe() == 30


def test_a_success_resets_the_count(clock):
    breaker = CircuitBreaker(failures=2, reset_after=30, clock=clock)
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_exactly_one_probe_through(clock):
    breaker = CircuitBreaker(failures=1, reset_after=10, clock=clock)
    breaker.failed()
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()
    breaker.started()
    assert not breaker.allows()  # the probe is out; everything else waits


def test_a_successful_probe_closes(clock):
    breaker = CircuitBreaker(failures=1, reset_after=10, clock=clock)
    breaker.failed()
    clock.advance(11)
    breaker.started()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    assert not breaker.is_open


def test_a_failed_probe_opens_again_for_a_full_period(clock):
    breaker = CircuitBreaker(failures=3, reset_after=10, clock=clock)
    for _ in range(3):
        breaker.failed()
    clock.advance(10)
    breaker.started()
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    assert breaker.seconds_until_probe() == 10


def test_an_abandoned_probe_frees_the_probe_slot(clock):
    breaker = CircuitBreaker(failures=1, reset_after=1, clock=clock)
    breaker.failed()
    clock.advance(1)
    breaker.started()
    breaker.abandoned()
    assert breaker.allows()


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError, match="at least 1"):
        CircuitBreaker(failures=0)
