"""Which Kafka offsets may be committed: the contiguous prefix that is journaled (pure).

Messages of one partition are handed to runs concurrently, so they finish out
of order. Committing offset ``n`` tells Kafka "everything before ``n`` is
handled"; committing past a message whose event is not yet journaled would
lose it in a crash. So each consumed offset is *tracked* with the number of
*holds* on it (one per event that carries it: a matching checkpoint's message
event, a batch that includes it, a dead-letter send), and the commit position
only moves over offsets whose holds are all released, in consumption order:

    offsets  10  11  12  13  14
    holds     0   0   1   0   2      → position 12 (10 and 11 done; 12 still held)

An offset that matched no checkpoint is tracked with no holds: it is done at
once, and a message nobody wants never stalls a partition.

Each partition's state is a :class:`PartitionOffsets` object. Releasing goes to
the object a hold was taken on, so once a partition is dropped (revoked) or
reset (rewound), late releases for its old state change nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "PartitionOffsets"]

P = TypeVar("P", bound=Hashable)


class PartitionOffsets:
    """The offsets of one partition since it was assigned (or last rewound)."""

    def __init__(self, start: int | None = None) -> None:
        self._order: deque[int] = deque()
        self._holds: dict[int, int] = {}
        self._position = start
        self._last_tracked: int | None = None
        self.dropped = False
        """Set when the partition was revoked or rewound: releases no longer count."""

    @property
    def position(self) -> int | None:
        """The offset to commit: every tracked offset before it is done (None: nothing yet)."""
        return self._position

    @property
    def outstanding(self) -> int:
        """Tracked offsets not yet passed by :attr:`position`."""
        return len(self._order)

    @property
    def rewind_point(self) -> int | None:
        """Where to read again so that nothing pending is skipped (None: nothing to re-read)."""
        if self._position is not None:
            return self._position
        return self._order[0] if self._order else None

    def track(self, offset: int, holds: int) -> None:
        """Record a consumed offset carried by ``holds`` pending events (0: done already)."""
        if holds < 0:
            raise ValueError(f"holds must be 0 or more, found {holds}")
        if self._last_tracked is not None and offset <= self._last_tracked:
            raise ValueError(
                f"offset {offset} tracked after {self._last_tracked}; offsets of a partition "
                "must be tracked in increasing order"
            )
        self._last_tracked = offset
        if not self._order and holds == 0:
            self._position = offset + 1
            return
        self._order.append(offset)
        self._holds[offset] = holds
        self._advance()

    def release(self, offset: int) -> None:
        """One event carrying ``offset`` is journaled (or needs it no more)."""
        if self.dropped:
            return
        left = self._holds.get(offset)
        if left is None or left <= 0:
            raise ValueError(f"offset {offset} has no hold to release")
        self._holds[offset] = left - 1
        if left == 1 and self._order and self._order[0] == offset:
            self._advance()

    def _advance(self) -> None:
        order, holds = self._order, self._holds
        while order and holds[order[0]] == 0:
            offset = order.popleft()
            del holds[offset]
            self._position = offset + 1


class OffsetTracker(Generic[P]):
    """Partition states by partition id (aiokafka's ``TopicPartition`` in the trigger)."""

    def __init__(self) -> None:
        self._parts: dict[P, PartitionOffsets] = {}
        self._committed: dict[P, int] = {}

    def partition(self, tp: P) -> PartitionOffsets:
        """The current state of ``tp``, created empty on first use."""
        state = self._parts.get(tp)
        if state is None:
            state = self._parts[tp] = PartitionOffsets()
        return state

    def get(self, tp: P) -> PartitionOffsets | None:
        """The current state of ``tp``, if it has one."""
        return self._parts.get(tp)

    def reset(self, tp: P, start: int | None = None) -> PartitionOffsets:
        """Forget ``tp``'s pending offsets (a rewind): consumption restarts at ``start``."""
        old = self._parts.get(tp)
        if old is not None:
            old.dropped = True
        state = self._parts[tp] = PartitionOffsets(start)
        return state

    def drop(self, tps: Iterable[P]) -> None:
        """Forget partitions that were revoked."""
        for tp in tps:
            state = self._parts.pop(tp, None)
            if state is not None:
                state.dropped = True
            self._committed.pop(tp, None)

    def partitions(self) -> list[P]:
        return list(self._parts)

    def outstanding(self) -> int:
        return sum(state.outstanding for state in self._parts.values())

    def to_commit(self, only: Iterable[P] | None = None) -> dict[P, int]:
        """Positions that moved past what was last committed."""
        chosen = (
            self._parts
            if only is None
            else {tp: self._parts[tp] for tp in only if tp in self._parts}
        )
        out: dict[P, int] = {}
        for tp, state in chosen.items():
            position = state.position
            if position is not None and position > self._committed.get(tp, -1):
                out[tp] = position
        return out

    def committed(self, offsets: dict[P, int]) -> None:
        """Record positions the broker accepted."""
        for tp, position in offsets.items():
            if tp in self._parts and position > self._committed.get(tp, -1):
                self._committed[tp] = position

    def last_committed(self, tp: P) -> int | None:
        return self._committed.get(tp)

    def lag(self, tp: P, end: int) -> int | None:
        """Messages from the next offset not yet journaled to the log end ``end``
        (None when nothing of ``tp`` was read or committed yet)."""
        state = self._parts.get(tp)
        done = state.position if state is not None else None
        if done is None:
            done = self._committed.get(tp)
        return None if done is None else max(0, end - done)
