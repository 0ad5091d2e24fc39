"""Backpressure: pause at the in-flight limit, resume at a quarter of it, never stop polling."""

from __future__ import annotations

import pytest

from checkpointd.triggers.kafka_flow import Backpressure, partitions_to_pause, poll_timeout_ms


def test_pauses_at_the_limit_and_resumes_only_at_a_quarter_of_it() -> None:
    flow = Backpressure(limit=100)
    states = []
    for in_flight in (10, 99, 100, 80, 26, 25, 60, 99):
        changed = flow.update(in_flight)
        states.append((in_flight, flow.overloaded, changed))

    assert states == [
        (10, False, False),
        (99, False, False),
        (100, True, True),
        (80, True, False),  # no flapping just below the limit
        (26, True, False),
        (25, False, True),
        (60, False, False),
        (99, False, False),
    ]


@pytest.mark.parametrize(
    ("in_flight", "batch", "room"),
    [(0, 500, 100), (90, 500, 10), (90, 5, 5), (100, 500, 1), (150, 500, 1)],
)
def test_a_poll_takes_no_more_than_there_is_room_for_but_always_polls(
    in_flight: int, batch: int, room: int
) -> None:
    assert Backpressure(limit=100).room(in_flight, batch) == room


def test_overload_pauses_everything_otherwise_only_partitions_awaiting_a_rewind() -> None:
    assigned = {("t", 0), ("t", 1), ("t", 2)}
    held = {("t", 1), ("gone", 0)}

    assert partitions_to_pause(assigned, held, overloaded=True) == assigned
    assert partitions_to_pause(assigned, held, overloaded=False) == {("t", 1)}


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Backpressure(limit=0)


@pytest.mark.parametrize(
    ("overloaded", "deadline", "now", "timeout_ms"),
    [
        (False, None, 10.0, 200),  # nothing open: the idle heartbeat
        (True, None, 10.0, 50),  # paused: look for room more often
        (False, 10.030, 10.0, 30),  # a batch falls due in 30 ms: wait no longer
        (False, 10.0105, 10.0, 11),  # rounded up, never just short of the deadline
        (False, 10.0001, 10.0, 1),
        (False, 9.5, 10.0, 0),  # overdue: do not wait at all
        (False, 11.0, 10.0, 200),  # due later than the heartbeat
        (True, 10.080, 10.0, 50),
    ],
)
def test_a_poll_waits_no_longer_than_the_first_open_batch_has_left(
    overloaded: bool, deadline: float | None, now: float, timeout_ms: int
) -> None:
    assert poll_timeout_ms(overloaded, deadline, now) == timeout_ms
