"""Batches for kafka_batch: one per partition, handed over when full or after max_wait."""

from __future__ import annotations

import pytest

from checkpointd.triggers.kafka_batch import BatchBuffer

P0, P1 = ("t", 0), ("t", 1)


def test_a_batch_is_handed_over_when_it_reaches_max_messages() -> None:
    buffer: BatchBuffer[tuple[str, int]] = BatchBuffer(max_messages=3, max_wait=60.0)

    assert buffer.add(P0, 10, {"i": 10}, now=0.0) is None
    assert buffer.add(P0, 11, {"i": 11}, now=0.1) is None
    batch = buffer.add(P0, 12, {"i": 12}, now=0.2)

    assert batch is not None
    assert (batch.partition, batch.first, batch.last, len(batch)) == (P0, 10, 12, 3)
    assert batch.records == [{"i": 10}, {"i": 11}, {"i": 12}]
    assert buffer.buffered() == 0


def test_partitions_batch_separately() -> None:
    buffer: BatchBuffer[tuple[str, int]] = BatchBuffer(max_messages=2, max_wait=60.0)
    buffer.add(P0, 1, {}, now=0.0)
    buffer.add(P1, 1, {}, now=0.0)

    full = buffer.add(P1, 2, {}, now=0.0)

    assert full is not None
    assert full.partition == P1
    assert buffer.partitions() == [P0]


def test_a_batch_falls_due_max_wait_after_its_first_message() -> None:
    buffer: BatchBuffer[tuple[str, int]] = BatchBuffer(max_messages=100, max_wait=5.0)
    buffer.add(P0, 1, {}, now=10.0)
    buffer.add(P0, 2, {}, now=14.0)
    buffer.add(P1, 7, {}, now=12.0)

    assert buffer.next_deadline() == 15.0
    assert buffer.due(14.9) == []
    due = buffer.due(15.0)
    assert [(b.partition, b.offsets) for b in due] == [(P0, [1, 2])]
    assert buffer.next_deadline() == 17.0


def test_dropping_a_partition_discards_its_open_batch() -> None:
    buffer: BatchBuffer[tuple[str, int]] = BatchBuffer(max_messages=10, max_wait=5.0)
    buffer.add(P0, 1, {}, now=0.0)

    dropped = buffer.drop(P0)

    assert dropped is not None
    assert dropped.offsets == [1]
    assert buffer.next_deadline() is None
    assert buffer.drop(P0) is None


@pytest.mark.parametrize(
    ("max_messages", "max_wait", "message"),
    [(0, 1.0, "max_messages must be at least 1"), (1, -1.0, "max_wait must not be negative")],
)
def test_impossible_limits_are_refused(max_messages: int, max_wait: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchBuffer(max_messages, max_wait)
