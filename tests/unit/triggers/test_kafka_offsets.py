"""Commit positions move only over the contiguous prefix of offsets whose events are journaled."""

from __future__ import annotations

import pytest

from checkpointd.triggers.kafka_offsets import OffsetTracker, PartitionOffsets

TP = ("orders", 0)


def test_offsets_nobody_wanted_are_done_at_once() -> None:
    part = PartitionOffsets()
    part.track(10, holds=0)
    part.track(11, holds=0)

    assert part.position == 12
    assert part.outstanding == 0


def test_the_position_stops_at_the_first_offset_still_held() -> None:
    part = PartitionOffsets()
    for offset, holds in [(10, 0), (11, 0), (12, 1), (13, 0), (14, 2)]:
        part.track(offset, holds)

    assert part.position == 12

    part.release(14)
    part.release(14)  # 14 is done, but 12 still holds the line
    assert part.position == 12

    part.release(12)
    assert part.position == 15
    assert part.outstanding == 0


def test_out_of_order_releases_commit_only_the_contiguous_prefix() -> None:
    part = PartitionOffsets()
    for offset in range(5):
        part.track(offset, holds=1)

    part.release(3)
    part.release(1)
    assert part.position is None  # 0 is still held: nothing may be committed

    part.release(0)
    assert part.position == 2
    part.release(2)
    assert part.position == 4
    part.release(4)
    assert part.position == 5


def test_gaps_in_offsets_are_fine() -> None:
    part = PartitionOffsets()
    part.track(10, holds=1)
    part.track(15, holds=1)  # compaction or transaction markers leave gaps
    part.release(15)
    part.release(10)
    assert part.position == 16


def test_offsets_must_be_tracked_in_increasing_order() -> None:
    part = PartitionOffsets()
    part.track(5, holds=1)
    with pytest.raises(ValueError, match="increasing order"):
        part.track(5, holds=1)
    with pytest.raises(ValueError, match="increasing order"):
        part.track(4, holds=0)


def test_releasing_more_than_was_held_is_a_bug() -> None:
    part = PartitionOffsets()
    part.track(1, holds=1)
    part.release(1)
    with pytest.raises(ValueError, match="no hold"):
        part.release(1)
    with pytest.raises(ValueError, match="no hold"):
        part.release(99)


def test_the_rewind_point_is_the_position_or_the_first_pending_offset() -> None:
    assert PartitionOffsets().rewind_point is None
    fresh = PartitionOffsets()
    fresh.track(7, holds=1)
    assert fresh.rewind_point == 7
    fresh.track(8, holds=1)
    fresh.release(7)
    assert fresh.rewind_point == 8
    assert PartitionOffsets(start=40).rewind_point == 40


def test_a_dropped_partition_ignores_late_releases() -> None:
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    old = tracker.partition(TP)
    old.track(1, holds=1)

    new = tracker.reset(TP, start=1)
    old.release(1)  # an emit that finished after the rewind

    assert old.dropped
    assert tracker.partition(TP) is new
    assert new.position == 1


def test_to_commit_reports_only_positions_that_moved_past_the_last_commit() -> None:
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    other = ("orders", 1)
    tracker.partition(TP).track(0, holds=0)
    tracker.partition(other).track(0, holds=1)

    assert tracker.to_commit() == {TP: 1}
    tracker.committed({TP: 1})
    assert tracker.to_commit() == {}
    assert tracker.last_committed(TP) == 1

    tracker.partition(other).release(0)
    assert tracker.to_commit() == {other: 1}
    assert tracker.to_commit(only=[TP]) == {}


def test_dropping_a_partition_forgets_its_commits_too() -> None:
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    tracker.partition(TP).track(0, holds=0)
    tracker.committed({TP: 1})

    tracker.drop([TP])

    assert tracker.get(TP) is None
    assert tracker.last_committed(TP) is None
    assert tracker.to_commit() == {}
    assert tracker.outstanding() == 0


def test_lag_counts_from_the_next_offset_not_yet_journaled_to_the_log_end() -> None:
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    assert tracker.lag(TP, 100) is None  # nothing read yet: unknown, not zero

    part = tracker.partition(TP)
    part.track(40, holds=0)
    part.track(41, holds=1)
    assert tracker.lag(TP, 100) == 59  # 41..99 are not journaled

    tracker.committed({TP: 41})
    tracker.reset(TP)  # a rewind: nothing read since, the commit still counts
    assert tracker.lag(TP, 100) == 59
