"""What the Kafka trigger asks the journal: was this event journaled, how far did batches get.

Two questions, answered by the store (``protocols.KafkaJournal``) from committed
rows, never waiting for the writer:

- :meth:`JournalLookup.journaled`: ``emit`` returned False, which means "a
  duplicate of a key already journaled" — but a daemon that is draining or has
  just removed the checkpoint refuses events the same way. The trigger commits
  past a refused message only when the journal really holds its key, so a
  refusal for any other reason never loses a message.
- :meth:`JournalLookup.last_batch_offset`: the last offset any event of a
  checkpoint covered on one partition. A ``kafka_batch`` trigger skips
  messages up to it after a crash or rebalance, so a replay that cuts batches
  differently never checks a message twice.

The store speaks of keys; :class:`StoreJournalLookup` turns a partition into
the prefix its keys share (``kafka_decode.key_prefix``).
"""

from __future__ import annotations

from typing import Protocol

from checkpointd.protocols import KafkaJournal
from checkpointd.triggers.kafka_decode import key_prefix

__all__ = ["JournalLookup", "StoreJournalLookup"]


class JournalLookup(Protocol):
    """The two journal questions the Kafka trigger asks, per partition."""

    async def journaled(self, key: str, checkpoint: str) -> bool: ...

    async def last_batch_offset(
        self, checkpoint: str, topic: str, partition: int
    ) -> int | None: ...


class StoreJournalLookup:
    """:class:`JournalLookup` over the store's :class:`~checkpointd.protocols.KafkaJournal`."""

    def __init__(self, journal: KafkaJournal) -> None:
        self._journal = journal

    async def journaled(self, key: str, checkpoint: str) -> bool:
        return await self._journal.journal_has(key, checkpoint)

    async def last_batch_offset(self, checkpoint: str, topic: str, partition: int) -> int | None:
        return await self._journal.journal_last_offset(key_prefix(topic, partition), checkpoint)
