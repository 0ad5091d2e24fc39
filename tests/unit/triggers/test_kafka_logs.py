"""aiokafka's retry storms during an outage shrink to one line per message per interval."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from checkpointd.triggers.kafka_logs import AIOKAFKA_LOGGERS, RepeatFilter, quiet_aiokafka_repeats


def record(msg: str, *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_of_one_message_pass_once_per_interval_and_say_how_many_were_dropped() -> None:
    now = [0.0]
    repeats = RepeatFilter(every=30.0, clock=lambda: now[0])
    seen = []
    for t in (0.0, 0.1, 0.2, 29.9, 30.0, 30.1):
        now[0] = t
        line = record("Unable connect to node with id %s", 1)
        if repeats.filter(line):
            seen.append(line.getMessage())

    assert seen == [
        "Unable connect to node with id 1",
        "Unable connect to node with id 1 (and 3 more like it in 30s)",
    ]


def test_different_messages_and_loggers_are_counted_apart() -> None:
    repeats = RepeatFilter(every=30.0, clock=lambda: 0.0)

    assert repeats.filter(record("node %s down", 1))
    assert repeats.filter(record("node %s down", 2))
    assert repeats.filter(record("node %s down", 1, name="aiokafka.conn"))
    assert not repeats.filter(record("node %s down", 1))


@pytest.fixture
def clean_aiokafka_loggers() -> Iterator[None]:
    yield None
    for name in AIOKAFKA_LOGGERS:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, RepeatFilter)]:
            logger.removeFilter(f)


@pytest.mark.usefixtures("clean_aiokafka_loggers")
def test_installing_twice_adds_one_filter_per_logger() -> None:
    quiet_aiokafka_repeats()
    quiet_aiokafka_repeats()

    for name in AIOKAFKA_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RepeatFilter) for f in filters) == 1
