"""The Kafka trigger's two journal questions, answered by a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkpointd.events import TriggerEvent
from checkpointd.protocols import KafkaJournal
from checkpointd.store.sqlite.store import SqliteStore
from checkpointd.triggers.kafka_journal import StoreJournalLookup

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path):
    async with await SqliteStore.open(tmp_path / "state") as opened:
        yield opened


async def journal(store: SqliteStore, checkpoint: str, *keys: str) -> None:
    for key in keys:
        event = TriggerEvent(type="kafka", key=key, fired_at=T0, params={})
        assert await store.journal_accept(event, checkpoint)


async def test_a_key_is_journaled_only_for_the_checkpoint_that_accepted_it(store):
    await journal(store, "orders", "kafka:t:0:7")
    lookup = StoreJournalLookup(store)

    assert await lookup.journaled("kafka:t:0:7", "orders") is True
    assert await lookup.journaled("kafka:t:0:7", "payments") is False
    assert await lookup.journaled("kafka:t:0:8", "orders") is False


async def test_the_last_batch_offset_is_the_highest_any_key_of_the_partition_covers(store):
    await journal(
        store,
        "orders",
        "kafka:t:0:5",
        "kafka:t:0:10-19",  # a batch: its last offset counts
        "kafka:t:0:7",
        "kafka:t:1:100",  # another partition
        "kafka:t:10:900",  # partition 10 shares the text "kafka:t:1" but not the prefix
        "kafka:t2:0:500",  # another topic
    )
    await journal(store, "payments", "kafka:t:0:50")
    lookup = StoreJournalLookup(store)

    assert await lookup.last_batch_offset("orders", "t", 0) == 19
    assert await lookup.last_batch_offset("orders", "t", 1) == 100
    assert await lookup.last_batch_offset("orders", "t", 2) is None
    assert await lookup.last_batch_offset("payments", "t", 0) == 50
    assert await lookup.last_batch_offset("refunds", "t", 0) is None


async def test_the_store_answers_in_keys_and_knows_no_partitions(store):
    await journal(store, "orders", "kafka:t:3:41-42")
    questions: KafkaJournal = store

    assert await questions.journal_has("kafka:t:3:41-42", "orders") is True
    assert await questions.journal_last_offset("kafka:t:3:", "orders") == 42
    assert await questions.journal_last_offset("kafka:t:4:", "orders") is None
