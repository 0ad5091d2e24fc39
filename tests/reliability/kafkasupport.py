"""Kafka pieces of the reliability suite: topics with settings, a producer that keeps producing,
the group's committed offsets, and what the daemon's journal covers per partition.

All of it talks to the real broker of tests/kafka_broker.py; the blocking helpers run their
own short event loop (tests here drive the daemon from plain threads, as an operator would).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from checkpointd.store.sqlite.store import DB_FILE_NAME

TOPIC_READY_SECONDS = 30.0


async def _create_topic(
    bootstrap: str, name: str, partitions: int, configs: Mapping[str, str]
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(TOPIC_READY_SECONDS):
            topic = NewTopic(name, partitions, 1, topic_configs=dict(configs))
            response = await admin.create_topics([topic])
            for topic_name, code, message in response.topic_errors:
                if code != 0:
                    raise RuntimeError(f"creating topic {topic_name!r} failed: {code} {message}")
            while True:  # metadata is eventually consistent: wait for the leaders
                (described,) = await admin.describe_topics([name])
                leaders = [p for p in described["partitions"] if p["leader"] >= 0]
                if described["error_code"] == 0 and len(leaders) == partitions:
                    return
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


def create_topic(
    bootstrap: str, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None
) -> None:
    """Create ``name`` with topic-level ``configs`` (``max.message.bytes``...), leaders ready."""
    asyncio.run(_create_topic(bootstrap, name, partitions, configs or {}))


def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The offsets the broker holds for ``group``: (topic, partition) -> next offset to read."""

    async def run() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            async with asyncio.timeout(30):
                offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {(tp.topic, tp.partition): m.offset for tp, m in offsets.items() if m.offset >= 0}

    return asyncio.run(run())


@dataclass(frozen=True)
class Sent:
    """One produced message: where the broker put it."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    *,
    partition: int = 0,
    max_request_size: int = 1_048_576,
) -> list[Sent]:
    """Send ``(key, value)`` pairs to one partition, in order; where each one landed."""

    async def run() -> list[Sent]:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=max_request_size
        )
        await producer.start()
        try:
            out = []
            for key, value in messages:
                meta = await producer.send_and_wait(topic, value, key=key, partition=partition)
                out.append(Sent(meta.partition, meta.offset, value, key))
            return out
        finally:
            await producer.stop()

    return asyncio.run(run())


def read_topic(bootstrap: str, topic: str, count: int, linger: float = 1.0) -> list[Any]:
    """Every record of ``topic`` from the start: until ``count`` came and ``linger`` s passed
    without another (so records nobody expected show up too)."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=64 * 1024 * 1024,
        )
        await consumer.start()
        records: list[Any] = []
        try:
            async with asyncio.timeout(60 + linger):
                quiet_since = time.monotonic()
                while len(records) < count or time.monotonic() - quiet_since < linger:
                    for batch in (await consumer.getmany(timeout_ms=200)).values():
                        records.extend(batch)
                        quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


TP = tuple[str, int]
"""A partition: (topic, partition)."""


async def _wait_for_partitions(
    producer: AIOKafkaProducer, topics: list[str], partitions: int
) -> None:
    """Wait until the producer's metadata knows every partition of ``topics``: right after a
    topic is created a send to a partition it does not know yet fails ("Unrecognized
    partition") instead of waiting."""
    deadline = time.monotonic() + 60
    for topic in topics:
        while len(await producer.partitions_for(topic)) < partitions:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic} never showed {partitions} partitions")
            await producer.client.force_metadata_update()
            await asyncio.sleep(0.1)


class KafkaFeeder(threading.Thread):
    """Produces ``{"id": n, "amount": x}`` (unique ``n``, also the key) at about ``rate``
    messages per second until stopped, round-robin over ``topics`` and their partitions.

    Runs in a thread with its own event loop, so it keeps producing while the test kills and
    restarts the daemon; every acknowledged message is recorded with where it landed.
    """

    def __init__(
        self, bootstrap: str, topics: list[str], partitions: int, *, rate: float, seed: int
    ) -> None:
        super().__init__(name="reliability-kafka-feeder", daemon=True)
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.rate = rate
        self.rng = random.Random(seed)
        self._sent: dict[int, tuple[TP, int]] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # reported by stop(); a silent feeder would hide a bug
            self.error = exc

    async def _produce(self) -> None:
        # Idempotent: a retried send never puts a message on the log twice.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        await producer.start()
        try:
            await _wait_for_partitions(producer, self.topics, self.partitions)
            began, n = time.monotonic(), 0
            while not self._stop_event.is_set():
                # Small bursts keep the pace without one round trip per message.
                burst = []
                for _ in range(self.rng.randint(1, 8)):
                    value = json.dumps({"id": n, "amount": self.rng.randint(0, 999)}).encode()
                    topic = self.topics[n % len(self.topics)]
                    partition = (n // len(self.topics)) % self.partitions
                    future = await producer.send(
                        topic, value, key=str(n).encode(), partition=partition
                    )
                    burst.append((n, future))
                    n += 1
                for ident, future in burst:
                    meta = await future
                    with self._lock:
                        self._sent[ident] = ((meta.topic, meta.partition), meta.offset)
                ahead = began + n / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await producer.stop()

    def sent(self) -> dict[int, tuple[TP, int]]:
        """Acknowledged messages so far: id -> ((topic, partition), offset)."""
        with self._lock:
            return dict(self._sent)

    def stop(self) -> dict[int, tuple[TP, int]]:
        """Stop producing; every acknowledged message."""
        self._stop_event.set()
        self.join(timeout=60)
        if self.error is not None:
            raise AssertionError(f"the Kafka feeder failed: {self.error!r}") from self.error
        return self.sent()


# ------------------------------------------------------------------ the daemon's journal


def covered(key: str) -> tuple[TP, range]:
    """(partition, offsets) of a message key ``kafka:t:p:o`` or a batch key ``kafka:t:p:a-b``."""
    _, topic, partition, offsets = key.rsplit(":", 3)
    first, _, last = offsets.partition("-")
    return (topic, int(partition)), range(int(first), int(last or first) + 1)


def read_only(state_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the daemon's database, opened read-only (safe beside a running daemon)."""
    db = state_dir / DB_FILE_NAME
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


@contextlib.contextmanager
def journal_stalled(state_dir: Path) -> Iterator[None]:
    """Hold the database's write lock, as a disk that stalls on fsync would: the daemon's
    writes wait (its busy timeout is 5 s; keep the stall shorter) and nothing is journaled
    until the block ends."""
    conn = sqlite3.connect(state_dir / DB_FILE_NAME, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def journal_coverage(state_dir: Path, checkpoint: str) -> dict[TP, set[int]]:
    """Per partition, every offset some journaled event of ``checkpoint`` covers."""
    out: dict[TP, set[int]] = {}
    for (key,) in read_only(state_dir, "SELECT key FROM journal WHERE checkpoint = ?", checkpoint):
        tp, offsets = covered(key)
        out.setdefault(tp, set()).update(offsets)
    return out


def uncovered_below(
    committed: Mapping[TP, int], coverage: Mapping[TP, set[int]]
) -> dict[TP, list[int]]:
    """Offsets below a partition's committed offset that the journal does not cover."""
    gaps = {}
    for tp, position in committed.items():
        held = coverage.get(tp, set())
        missing = [o for o in range(position) if o not in held]
        if missing:
            gaps[tp] = missing
    return gaps
