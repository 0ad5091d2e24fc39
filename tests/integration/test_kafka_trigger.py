"""The Kafka trigger against the real broker, inside one process.

Each test wires the real parts the daemon wires: a real SQLite ``SqliteStore`` as the
journal, the real ``AsyncCheckpointRunner`` and pool, and ``KafkaHub`` consuming
from the Apache Kafka broker of tests/kafka_broker.py. The daemon as a whole (a
subprocess, kill -9, two daemons in a group, a broker outage) is driven from
outside in tests/e2e/test_kafka_daemon.py. The last tests cover the other
direction: the ``kafka`` action publishing results.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from checkpointd.actions.channel import ChannelContext, Delivery
from checkpointd.actions.kafka import build_channel
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.config.models import (
    DaemonActionsConfig,
    KafkaAction,
    KafkaBatchSource,
    KafkaConfig,
    KafkaTrigger,
)
from checkpointd.errors import DeliveryError
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7
from checkpointd.runtime.runner import AsyncCheckpointRunner, AsyncRunnerConfig
from checkpointd.store.sqlite.store import SqliteStore
from checkpointd.triggers.kafka import KafkaHub
from checkpointd.triggers.kafka_journal import StoreJournalLookup
from checkpointd.triggers.kafka_metrics import KafkaMetrics
from checkpointd.triggers.kafka_source import KafkaSource
from tests.kafka_broker import create_topic, make_topic_name

Emit = Callable[[TriggerEvent], Awaitable[bool]]


class SleepyCheckpoint:
    """A checkpoint whose every run takes ``seconds``: a stand-in for heavy validation."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult:
        started = datetime.now(UTC)
        await asyncio.sleep(self.seconds)
        return CheckpointResult(
            run_id=uuid7(),
            checkpoint=self.name,
            status=Status.SUCCESS,
            started_at=started,
            finished_at=datetime.now(UTC),
            trigger=event.info() if event else None,
        )


@dataclass
class Pipeline:
    hub: KafkaHub
    store: SqliteStore
    runner: AsyncCheckpointRunner
    registry: CollectorRegistry
    group: str

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    async def journaled_offsets(self, topic: str, partition: int) -> list[int]:
        prefix = f"kafka:{topic}:{partition}:"

        async def query(conn: aiosqlite.Connection) -> list[Any]:
            return list(
                await conn.execute_fetchall(
                    "SELECT key FROM journal WHERE key LIKE ? || '%'", (prefix,)
                )
            )

        rows = await self.store.read(query)
        return sorted(int(row[0][len(prefix) :]) for row in rows)

    async def run_keys(self) -> list[str]:
        async def query(conn: aiosqlite.Connection) -> list[Any]:
            return list(await conn.execute_fetchall("SELECT journal_key FROM runs"))

        return [row[0] for row in await self.store.read(query)]


@contextlib.asynccontextmanager
async def pipeline(
    tmp_path: Path,
    bootstrap: str,
    topic: str,
    *,
    seconds_per_run: float = 0.0,
    workers: int = 4,
    wrap_emit: Callable[[Emit], Emit] | None = None,
    options: dict[str, Any] | None = None,
    **hub_settings: Any,
) -> AsyncIterator[Pipeline]:
    store = await SqliteStore.open(tmp_path / "state", synchronous="NORMAL")
    checkpoint = SleepyCheckpoint("cp", seconds_per_run)
    runner = AsyncCheckpointRunner(
        [checkpoint],
        AsyncRunnerConfig(max_concurrent_checkpoints=workers, result_queue_size=100),
        journal=store,
    )
    await runner.start_async()
    registry = CollectorRegistry()
    group = make_topic_name("group")
    hub = KafkaHub(
        KafkaConfig(bootstrap_servers=bootstrap, group_id=group, options=options or {}),
        journal=StoreJournalLookup(store),
        metrics=KafkaMetrics(registry),
        **hub_settings,
    )
    await hub.start()

    async def emit(event: TriggerEvent) -> bool:
        assert event.checkpoint is not None
        return await runner.submit_event(event.checkpoint, event)

    source = KafkaSource("cp", 0, KafkaTrigger(type="kafka", topic=topic), hub=hub)
    task = asyncio.create_task(source.run(wrap_emit(emit) if wrap_emit else emit))
    try:
        yield Pipeline(hub, store, runner, registry, group)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await hub.stop()
        await runner.stop_async()
        await store.close()


async def produce(
    bootstrap: str, topic: str, values: list[bytes], partitions: int, start: int = 0
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, partition=(start + i) % partitions)
            for i, value in enumerate(values)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str, topic: str | None = None) -> dict[int, int]:
    """The group's committed offsets by partition (of ``topic``, when the group has several)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if meta.offset >= 0 and topic in (None, tp.topic)
    }


async def eventually(
    condition: Callable[[], Awaitable[Any]], *, within: float = 30.0, what: str = ""
) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def messages(count: int, pad: int = 0) -> list[bytes]:
    # The padding sits in a nested object: it weighs on the consumer, not on the journal
    # (only top-level scalars become trigger params).
    return [json.dumps({"i": i, "pad": {"x": "x" * pad}}).encode() for i in range(count)]


# ---------------------------------------------------------------------------------------


async def test_offsets_commit_only_up_to_the_contiguous_journaled_prefix(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await produce(kafka_bootstrap, unique_topic, messages(50), partitions=1)
    gate = asyncio.Event()

    def hold_offset_10(emit: Emit) -> Emit:
        async def wrapped(event: TriggerEvent) -> bool:
            if event.key.endswith(":10"):
                await gate.wait()
            return await emit(event)

        return wrapped

    async with pipeline(
        tmp_path, kafka_bootstrap, unique_topic, wrap_emit=hold_offset_10, commit_interval=0.05
    ) as p:
        await eventually(
            lambda: _eq(p.journaled_offsets(unique_topic, 0), [i for i in range(50) if i != 10]),
            what="every offset but 10 journaled",
        )
        await eventually(
            lambda: _eq(committed(kafka_bootstrap, p.group), {0: 10}), what="commit at 10"
        )
        await asyncio.sleep(0.5)  # ten more commit rounds: none may pass offset 10
        assert await committed(kafka_bootstrap, p.group) == {0: 10}

        gate.set()
        await eventually(
            lambda: _eq(committed(kafka_bootstrap, p.group), {0: 50}), what="commit at the end"
        )
        await eventually(lambda: _len_is(p.run_keys(), 50), what="50 runs")
        assert sorted(await p.run_keys()) == sorted(
            f"kafka:{unique_topic}:0:{i}" for i in range(50)
        )
        assert p.metric("checkpointd_kafka_commit_failures_total") == 0


async def test_a_failed_emit_rewinds_the_partition_and_loses_nothing(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await produce(kafka_bootstrap, unique_topic, messages(30), partitions=1)
    failures = 0

    def fail_offset_5_twice(emit: Emit) -> Emit:
        async def wrapped(event: TriggerEvent) -> bool:
            nonlocal failures
            if event.key.endswith(":5") and failures < 2:
                failures += 1
                raise OSError("journal disk full")  # as a failing store would
            return await emit(event)

        return wrapped

    async with pipeline(
        tmp_path,
        kafka_bootstrap,
        unique_topic,
        wrap_emit=fail_offset_5_twice,
        commit_interval=0.05,
        max_backoff=0.5,
    ) as p:
        await eventually(
            lambda: _eq(committed(kafka_bootstrap, p.group), {0: 30}),
            what="commit at the end after two rewinds",
        )
        await eventually(lambda: _len_is(p.run_keys(), 30), what="30 runs")
        assert failures == 2
        assert await p.journaled_offsets(unique_topic, 0) == list(range(30))
        assert sorted(await p.run_keys()) == sorted(
            f"kafka:{unique_topic}:0:{i}" for i in range(30)
        )


async def test_slow_checkpoints_pause_partitions_lag_grows_memory_stays_flat(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    total, stop_at, max_in_flight, payload = 4000, 2500, 256, 4000
    await create_topic(kafka_bootstrap, unique_topic, partitions=2)
    await produce(kafka_bootstrap, unique_topic, messages(total, pad=payload), partitions=2)
    gc.collect()
    rss_before = rss_bytes()

    async with pipeline(
        tmp_path,
        kafka_bootstrap,
        unique_topic,
        seconds_per_run=0.003,
        workers=2,
        max_in_flight=max_in_flight,
        poll_records=100,
        probe_interval=0.1,
        # Far below the time the backlog takes: a poll loop that waited for runs would be
        # thrown out of the group, and that would show as more rebalances.
        options={"max_poll_interval_ms": 3000, "session_timeout_ms": 6000},
    ) as p:
        peak_in_flight = peak_paused = peak_lag = 0.0
        while p.runner.get_stats().completed < stop_at:
            peak_in_flight = max(peak_in_flight, p.hub.dispatcher.in_flight)
            peak_paused = max(peak_paused, p.metric("checkpointd_kafka_paused_partitions"))
            lag = sum(
                p.metric("checkpointd_kafka_consumer_lag", topic=unique_topic, partition=str(n))
                for n in (0, 1)
            )
            peak_lag = max(peak_lag, lag)
            await asyncio.sleep(0.02)
        rss_after = rss_bytes()

        seen = f"paused={peak_paused} in_flight={peak_in_flight} lag={peak_lag}"
        assert peak_paused == 2, seen  # both partitions paused while the runs were behind
        assert peak_in_flight <= max_in_flight, seen
        assert peak_lag >= total / 2, seen  # the backlog waited in Kafka...
        # ...not in memory: holding the 4000 messages of 4 kB would take 16 MB and more.
        assert rss_after - rss_before < 12_000_000, f"RSS grew {rss_after - rss_before} bytes"
        assert p.metric("checkpointd_kafka_rebalances_total") == 1
        assert p.metric("checkpointd_kafka_commit_failures_total") == 0

    # Whatever was committed was journaled first.
    store = await SqliteStore.open(tmp_path / "state")
    try:
        offsets = await committed(kafka_bootstrap, p.group)
        for partition, position in offsets.items():
            journaled = set(await _journal_offsets(store, unique_topic, partition))
            assert set(range(position)) <= journaled
    finally:
        await store.close()


async def test_messages_for_several_checkpoints_commit_when_all_have_journaled(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    values = [json.dumps({"dataset": "orders" if i % 3 else "refunds"}).encode() for i in range(30)]
    await produce(kafka_bootstrap, unique_topic, values, partitions=1)

    store = await SqliteStore.open(tmp_path / "state", synchronous="NORMAL")
    runner = AsyncCheckpointRunner(
        [SleepyCheckpoint("orders", 0.0), SleepyCheckpoint("everything", 0.01)],
        AsyncRunnerConfig(max_concurrent_checkpoints=2),
        journal=store,
    )
    await runner.start_async()
    group = make_topic_name("group")
    hub = KafkaHub(
        KafkaConfig(bootstrap_servers=kafka_bootstrap, group_id=group),
        journal=StoreJournalLookup(store),
        metrics=KafkaMetrics(CollectorRegistry()),
        commit_interval=0.05,
    )
    await hub.start()

    async def emit(event: TriggerEvent) -> bool:
        assert event.checkpoint is not None
        return await runner.submit_event(event.checkpoint, event)

    specs = {
        "orders": KafkaTrigger.model_validate(
            {
                "type": "kafka",
                "topic": unique_topic,
                "filter": {"field": "dataset", "equals": "orders"},
            }
        ),
        "everything": KafkaTrigger(type="kafka", topic=unique_topic),
    }
    tasks = [
        asyncio.create_task(KafkaSource(name, 0, spec, hub=hub).run(emit))
        for name, spec in specs.items()
    ]
    try:
        await eventually(
            lambda: _eq(committed(kafka_bootstrap, group), {0: 30}), what="commit at the end"
        )

        async def by_checkpoint(conn: aiosqlite.Connection) -> list[Any]:
            return list(
                await conn.execute_fetchall(
                    "SELECT checkpoint, count(*) FROM journal GROUP BY checkpoint ORDER BY 1"
                )
            )

        assert [tuple(r) for r in await store.read(by_checkpoint)] == [
            ("everything", 30),
            ("orders", 20),
        ]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await hub.stop()
        await runner.stop_async()
        await store.close()


async def test_triggers_attached_and_detached_while_running_resubscribe_without_loss(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    first, second = make_topic_name("first"), make_topic_name("second")
    await create_topic(kafka_bootstrap, first, partitions=2)
    await create_topic(kafka_bootstrap, second, partitions=1)
    store = await SqliteStore.open(tmp_path / "state", synchronous="NORMAL")
    runner = AsyncCheckpointRunner(
        [SleepyCheckpoint("a", 0.0), SleepyCheckpoint("b", 0.0), SleepyCheckpoint("c", 0.0)],
        AsyncRunnerConfig(max_concurrent_checkpoints=4),
        journal=store,
    )
    await runner.start_async()
    group = make_topic_name("group")
    hub = KafkaHub(
        KafkaConfig(bootstrap_servers=kafka_bootstrap, group_id=group),
        journal=StoreJournalLookup(store),
        metrics=KafkaMetrics(CollectorRegistry()),
        commit_interval=0.05,
    )
    await hub.start()

    async def emit(event: TriggerEvent) -> bool:
        assert event.checkpoint is not None
        return await runner.submit_event(event.checkpoint, event)

    def attach(name: str, topic: str, batch: KafkaBatchSource | None = None) -> asyncio.Task[None]:
        source = KafkaSource(name, 0, KafkaTrigger(type="kafka", topic=topic), hub=hub, batch=batch)
        return asyncio.create_task(source.run(emit))

    async def keys(checkpoint: str) -> set[str]:
        async def query(conn: aiosqlite.Connection) -> list[Any]:
            sql = "SELECT key FROM journal WHERE checkpoint = ?"
            return list(await conn.execute_fetchall(sql, (checkpoint,)))

        return {row[0] for row in await store.read(query)}

    a = attach("a", first)
    # "b" batches the same topic, in batches that are never full: detaching it leaves
    # an open batch behind, and its messages must not count as done for anyone.
    b = attach(
        "b",
        first,
        KafkaBatchSource(type="kafka_batch", max_messages=1000, max_wait=timedelta(minutes=5)),
    )
    c: asyncio.Task[None] | None = None
    try:
        await produce(kafka_bootstrap, first, messages(40), partitions=2)
        await eventually(lambda: _len_is(_list(keys("a")), 40), what="a journaled 40")
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        c = attach("c", second)  # a new topic: the consumer resubscribes
        await produce(kafka_bootstrap, first, messages(20), partitions=2, start=40)
        await produce(kafka_bootstrap, second, messages(10), partitions=1)
        await eventually(lambda: _len_is(_list(keys("a")), 60), what="a journaled 60")
        await eventually(lambda: _len_is(_list(keys("c")), 10), what="c journaled 10")
        await eventually(
            lambda: _eq(committed(kafka_bootstrap, group, first), {0: 30, 1: 30}),
            what="first topic committed to the end",
        )
        assert await keys("b") == set()  # its batch never filled, and was dropped
    finally:
        for task in (a, b, c):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (a, b, c) if t is not None), return_exceptions=True)
        await hub.stop()
        await runner.stop_async()
        await store.close()


async def test_records_polled_while_the_trigger_detaches_are_not_committed_unseen(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    # The daemon's shutdown detaches its triggers while the consumer still polls; a record
    # that arrived in that poll was once routed to nobody, counted as done and committed,
    # though no checkpoint ever journaled it (a lost message, seen in the two-daemon e2e
    # test). Here the detach is made to happen exactly while a poll is out.
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    async with pipeline(tmp_path, kafka_bootstrap, unique_topic, commit_interval=0.05) as p:
        await produce(kafka_bootstrap, unique_topic, messages(10), partitions=1)
        await eventually(
            lambda: _eq(committed(kafka_bootstrap, p.group), {0: 10}), what="first 10 committed"
        )
        consumer = p.hub._consumer  # the live consumer: its poll is where the race sits
        real_getmany = consumer.getmany
        polling, detached = asyncio.Event(), asyncio.Event()

        async def getmany_then_detach(*args: Any, **kwargs: Any) -> Any:
            polling.set()
            polled = await real_getmany(*args, **kwargs)
            if polled and not detached.is_set():
                for route in p.hub.dispatcher.routes:
                    p.hub.detach(route)  # what the trigger's cancellation does
                detached.set()
            return polled

        consumer.getmany = getmany_then_detach
        await asyncio.wait_for(polling.wait(), 30)  # the poll that was out has ended
        await produce(kafka_bootstrap, unique_topic, messages(5), partitions=1, start=10)
        await asyncio.wait_for(detached.wait(), 30)
        await eventually(lambda: _not(p.hub.connected), what="the hub let go of the consumer")

        assert await p.journaled_offsets(unique_topic, 0) == list(range(10))
        assert await committed(kafka_bootstrap, p.group) == {0: 10}

        # Attached again, the trigger reads the five from the committed position.
        async def emit(event: TriggerEvent) -> bool:
            assert event.checkpoint is not None
            return await p.runner.submit_event(event.checkpoint, event)

        again = KafkaSource("cp", 1, KafkaTrigger(type="kafka", topic=unique_topic), hub=p.hub)
        task = asyncio.create_task(again.run(emit))
        try:
            await eventually(
                lambda: _eq(committed(kafka_bootstrap, p.group), {0: 15}), what="all committed"
            )
            assert await p.journaled_offsets(unique_topic, 0) == list(range(15))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _not(value: bool) -> bool:
    return not value


async def _list(value: Awaitable[set[str]]) -> list[str]:
    return list(await value)


async def test_a_hub_without_a_reachable_broker_is_not_ready_and_keeps_trying(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "state", synchronous="NORMAL")
    registry = CollectorRegistry()
    hub = KafkaHub(
        KafkaConfig(bootstrap_servers="127.0.0.1:1", group_id="nobody"),  # nothing listens
        journal=StoreJournalLookup(store),
        metrics=KafkaMetrics(registry),
        max_backoff=0.2,
    )
    await hub.start()
    assert hub.ready  # no Kafka trigger yet: nothing to be ready for

    async def emit(event: TriggerEvent) -> bool:
        raise AssertionError("no message can arrive")

    task = asyncio.create_task(
        KafkaSource("cp", 0, KafkaTrigger(type="kafka", topic="t"), hub=hub).run(emit)
    )
    try:
        await asyncio.sleep(1.5)  # several connection attempts with backoff
        assert not hub.ready
        assert registry.get_sample_value("checkpointd_kafka_connected") == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await hub.stop()
        await store.close()


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def _len_is(value: Awaitable[list[Any]], expected: int) -> bool:
    return len(await value) == expected


async def _journal_offsets(store: SqliteStore, topic: str, partition: int) -> list[int]:
    prefix = f"kafka:{topic}:{partition}:"

    async def query(conn: aiosqlite.Connection) -> list[Any]:
        return list(
            await conn.execute_fetchall(
                "SELECT key FROM journal WHERE key LIKE ? || '%'", (prefix,)
            )
        )

    return [int(row[0][len(prefix) :]) for row in await store.read(query)]


# ------------------------------------------------------------------ the kafka action


def delivery_of(result: CheckpointResult, attempt: int = 1) -> Delivery:
    return Delivery(
        id="01J0DELIVERY",
        run_id=result.run_id,
        checkpoint=result.checkpoint,
        action="orders.kafka[0]",
        action_type="kafka",
        kind="notify",
        previous_status=Status.SUCCESS,
        attempt=attempt,
        result=result,
    )


def failed_result() -> CheckpointResult:
    now = datetime.now(UTC)
    return CheckpointResult(
        run_id=uuid7(),
        checkpoint="orders",
        status=Status.FAILURE,
        started_at=now,
        finished_at=now,
        error="2 of 3 validators did not pass",
    )


def channel_context(bootstrap: str) -> ChannelContext:
    def no_session() -> Any:
        raise AssertionError("the kafka channel needs no HTTP session")

    return ChannelContext(
        session=no_session,
        settings=DaemonActionsConfig(),
        kafka=KafkaConfig(bootstrap_servers=bootstrap),
    )


async def test_the_kafka_action_publishes_the_result_json_keyed_by_checkpoint(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=3)
    action = KafkaAction(type="kafka", topic=unique_topic)
    channel = build_channel(action, channel_context(kafka_bootstrap), "orders.kafka[0]")
    result = failed_result()
    try:
        outcome = await channel.send(delivery_of(result))
        again = await channel.send(delivery_of(result, attempt=2))
    finally:
        await channel.close()

    assert channel.destination == f"kafka:{unique_topic}"
    assert outcome.detail.startswith("partition ")
    records = await consume(kafka_bootstrap, unique_topic, 2)
    assert {r.key for r in records} == {b"orders"}
    assert len({r.partition for r in records}) == 1  # one checkpoint, one partition, in order
    assert again.detail != outcome.detail
    body = json.loads(records[0].value)
    assert body == result.to_dict()
    headers = dict(records[0].headers)
    assert headers["idempotency-key"] == b"01J0DELIVERY"
    assert headers["checkpointd-status"] == b"failure"
    assert headers["checkpointd-kind"] == b"notify"


async def test_the_kafka_action_fails_retryably_when_no_broker_answers() -> None:
    action = KafkaAction(type="kafka", topic="results", timeout=timedelta(seconds=1))
    channel = build_channel(action, channel_context("127.0.0.1:1"), "orders.kafka[0]")
    try:
        with pytest.raises(DeliveryError, match="cannot connect to Kafka") as caught:
            await channel.send(delivery_of(failed_result()))
    finally:
        await channel.close()
    assert caught.value.retryable


def test_the_kafka_action_previews_what_it_would_publish() -> None:
    action = KafkaAction(type="kafka", topic="results")
    channel = build_channel(action, channel_context("127.0.0.1:1"), "orders.kafka[0]")
    result = failed_result()

    preview = channel.preview(delivery_of(result))

    assert (preview.destination, preview.method) == ("kafka:results", "PRODUCE")
    assert preview.headers["key"] == "orders"
    assert preview.headers["idempotency-key"] == "01J0DELIVERY"
    assert json.loads(preview.body) == result.to_dict()


async def consume(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records
