"""The real Kafka broker that scripts/kafka-broker runs, and the fixtures around it.

These tests prove that the fixtures hand out a working Apache Kafka: messages go
in and come out through a consumer group whose commits the broker keeps, a second
``start`` reuses the running broker, a killed broker comes back with its data, and a
port taken by something else is refused with a clear message.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from tests.kafka_broker import (
    BrokerControl,
    create_topic,
    make_topic_name,
    run_broker_script,
    start_broker,
)


async def produce(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    """Send value b"<i>" for i in range(count) to partition i % partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sends = [
            await producer.send(topic, str(i).encode(), partition=i % partitions)
            for i in range(count)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def consume(consumer: AIOKafkaConsumer, count: int) -> dict[int, list[int]]:
    """Read exactly ``count`` messages; return the values per partition in arrival order."""
    received: dict[int, list[int]] = {}
    async with asyncio.timeout(30):
        while sum(map(len, received.values())) < count:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                received.setdefault(tp.partition, []).extend(int(r.value) for r in records)
    return received


async def test_messages_round_trip_through_a_consumer_group(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=3)
    await produce(kafka_bootstrap, unique_topic, count=100, partitions=3)

    group = make_topic_name("group")
    consumer = AIOKafkaConsumer(
        unique_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received = await consume(consumer, 100)
        await consumer.commit()
    finally:
        await consumer.stop()

    assert received == {p: list(range(p, 100, 3)) for p in range(3)}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert {tp: meta.offset for tp, meta in committed.items()} == {
        TopicPartition(unique_topic, 0): 34,
        TopicPartition(unique_topic, 1): 33,
        TopicPartition(unique_topic, 2): 33,
    }


def test_a_second_start_reuses_the_running_broker(kafka_bootstrap: str) -> None:
    again = start_broker()

    assert again.reused
    assert again.bootstrap == kafka_bootstrap
    status = run_broker_script("status")
    assert status.returncode == 0
    assert status.stdout.startswith(f"running pid={again.pid} ")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_broker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Settings for a second broker of this test's own, so killing it disturbs nobody."""
    port, controller_port = free_port(), free_port()
    while controller_port == port:
        controller_port = free_port()
    monkeypatch.setenv("KAFKA_PORT", str(port))
    monkeypatch.setenv("KAFKA_CONTROLLER_PORT", str(controller_port))
    monkeypatch.setenv("KAFKA_BROKER_DIR", str(tmp_path / "broker"))
    env = dict(os.environ)
    yield env
    run_broker_script("kill", env=env)


@pytest.mark.kafka
async def test_a_killed_broker_comes_back_with_its_data(private_broker_env: dict[str, str]) -> None:
    started = start_broker(private_broker_env)
    broker = BrokerControl(started.bootstrap, private_broker_env)
    topic = make_topic_name("survives-kill")
    await create_topic(started.bootstrap, topic, partitions=1)
    await produce(started.bootstrap, topic, count=10, partitions=1)

    await broker.kill()
    assert not await broker.is_running()
    await broker.start()
    assert await broker.is_running()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=started.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        assert await consume(consumer, 10) == {0: list(range(10))}
    finally:
        await consumer.stop()

    await broker.stop()
    status = run_broker_script("status", env=private_broker_env)
    assert (status.returncode, status.stdout) == (3, "stopped\n")


def test_start_refuses_a_port_held_by_another_process(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {
            **os.environ,
            "KAFKA_PORT": str(port),
            "KAFKA_BROKER_DIR": str(tmp_path / "broker"),
        }
        done = run_broker_script("start", env=env)

    assert done.returncode == 1
    assert f"port 127.0.0.1:{port} is already in use by another process" in done.stderr
    assert "bootstrap=" not in done.stdout
