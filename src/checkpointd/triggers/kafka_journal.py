"""What the Kafka trigger asks the journal: was this event journaled, how far did batches get.

Two questions, answered from the store's read connection (never waiting for the
writer):

- :meth:`JournalLookup.journaled`: ``emit`` returned False, which means "a
  duplicate of a key already journaled" — but a daemon that is draining or has
  just removed the checkpoint refuses events the same way. The trigger commits
  past a refused message only when the journal really holds its key, so a
  refusal for any other reason never loses a message.
- :meth:`JournalLookup.last_batch_offset`: the last offset any event of a
  checkpoint covered on one partition. A ``kafka_batch`` trigger skips
  messages up to it after a crash or rebalance, so a replay that cuts batches
  differently never checks a message twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import aiosqlite

from checkpointd.triggers.kafka_decode import key_prefix

__all__ = ["JournalLookup", "StoreJournalLookup"]

T = TypeVar("T")

_JOURNALED = "SELECT 1 FROM journal WHERE key = ? AND checkpoint = ? LIMIT 1"

# Keys of one partition are "kafka:{topic}:{partition}:" followed by "{offset}" or
# "{first}-{last}"; topic names cannot hold ':' so the prefix range is exact.
_LAST_OFFSET = """
SELECT MAX(CAST(CASE WHEN instr(rest, '-') > 0 THEN substr(rest, instr(rest, '-') + 1)
                     ELSE rest END AS INTEGER))
FROM (SELECT substr(key, ?) AS rest FROM journal
      WHERE key >= ? AND key < ? AND checkpoint = ?)
"""


class JournalLookup(Protocol):
    """The two journal questions the Kafka trigger asks."""

    async def journaled(self, key: str, checkpoint: str) -> bool: ...

    async def last_batch_offset(
        self, checkpoint: str, topic: str, partition: int
    ) -> int | None: ...


class _Readable(Protocol):
    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T: ...


class StoreJournalLookup:
    """:class:`JournalLookup` over ``daemon.store.Store`` (its ``read`` connection)."""

    def __init__(self, store: _Readable) -> None:
        self._store = store

    async def journaled(self, key: str, checkpoint: str) -> bool:
        async def query(conn: aiosqlite.Connection) -> bool:
            rows = await conn.execute_fetchall(_JOURNALED, (key, checkpoint))
            return bool(list(rows))

        return await self._store.read(query)

    async def last_batch_offset(self, checkpoint: str, topic: str, partition: int) -> int | None:
        prefix = key_prefix(topic, partition)
        upper = prefix[:-1] + chr(ord(":") + 1)

        async def query(conn: aiosqlite.Connection) -> int | None:
            rows: Any = await conn.execute_fetchall(
                _LAST_OFFSET, (len(prefix) + 1, prefix, upper, checkpoint)
            )
            row = next(iter(rows), None)
            value = row[0] if row is not None else None
            return int(value) if value is not None else None

        return await self._store.read(query)
