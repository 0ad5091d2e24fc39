"""The daemon consuming a real Kafka broker, driven from outside.

Each test starts ``checkpointd run`` as a subprocess on a fresh topic and
consumer group, produces to the broker of tests/kafka_broker.py, and checks what
an operator would: the runs the daemon stored, its metrics, and the offsets the
broker holds for the group. The broker-outage test runs a private broker of its
own, so stopping it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.e2e.harness import DaemonProcess, free_port, start_daemon, stop_quietly, wait_for
from tests.kafka_broker import (
    BrokerControl,
    create_topic,
    make_topic_name,
    run_broker_script,
    start_broker,
)

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 4
  graceful_shutdown_timeout: 10s
  log: {{format: json, level: info}}
kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{group}"{kafka_extra}}}
checkpoints:
  - name: orders
    overlap: allow
    data_source: {{type: inline, rows: [{{x: 1}}]}}
    validators:
      - {{type: row_count, min: 1}}
    triggers:
      - {{type: kafka, topic: "{topic}"}}
"""


def config(state: Path, bootstrap: str, topic: str, group: str, kafka_extra: str = "") -> str:
    return CONFIG.format(
        state=state, bootstrap=bootstrap, topic=topic, group=group, kafka_extra=kafka_extra
    )


def launch(tmp_path: Path, name: str, text: str) -> DaemonProcess:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    path = folder / "checkpointd.yaml"
    path.write_text(text)
    return start_daemon(path, port=free_port(), log_path=folder / "daemon.log")


# ------------------------------------------------------------------ kafka helpers


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes | None],
    partitions: int,
    *,
    start: int = 0,
    per_second: float | None = None,
) -> None:
    """Send ``values`` round-robin over the partitions (index ``start + i``, also the key),
    optionally paced."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            began = time.monotonic()
            sent = []
            for i, value in enumerate(values):
                index = start + i  # every message has a key: a tombstone (None) needs one
                sent.append(
                    await producer.send(
                        topic, value, key=str(index).encode(), partition=index % partitions
                    )
                )
                if per_second is not None:
                    ahead = began + (i + 1) / per_second - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(run())


def committed(bootstrap: str, group: str) -> dict[int, int]:
    async def run() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    return asyncio.run(run())


def consume_all(bootstrap: str, topic: str, count: int, linger: float = 1.0) -> list[Any]:
    """Read ``topic`` from the start until ``count`` records came and ``linger`` s passed
    without another (so a test also sees records it did not expect)."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        records: list[Any] = []
        try:
            async with asyncio.timeout(30 + linger):
                quiet_since = time.monotonic()
                while len(records) < count or time.monotonic() - quiet_since < linger:
                    batches = await consumer.getmany(timeout_ms=200)
                    for batch in batches.values():
                        records.extend(batch)
                        quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


def good(i: int) -> bytes:
    return json.dumps({"i": i, "dataset": "orders"}).encode()


# ------------------------------------------------------------------ store helpers


def run_keys(state: Path) -> Counter[str]:
    """How many stored runs each journal key has (read-only, safe while the daemon runs)."""
    db = state / "checkpointd.sqlite3"
    if not db.exists():
        return Counter()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute("SELECT journal_key FROM runs WHERE status = 'success'").fetchall()
    return Counter(row[0] for row in rows)


def all_keys(topic: str, per_partition: dict[int, int]) -> set[str]:
    return {f"kafka:{topic}:{p}:{o}" for p, n in per_partition.items() for o in range(n)}


def split(count: int, partitions: int) -> dict[int, int]:
    """How many of ``count`` round-robin messages each partition holds."""
    return {p: len(range(p, count, partitions)) for p in range(partitions)}


# ------------------------------------------------------------------ tests


def test_five_thousand_messages_give_five_thousand_runs_and_commit_to_the_end(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    total, partitions = 5000, 4
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, partitions))
    produce(kafka_bootstrap, unique_topic, [good(i) for i in range(total)], partitions)
    group, state = make_topic_name("group"), tmp_path / "state"

    daemon = launch(tmp_path, "a", config(state, kafka_bootstrap, unique_topic, group))
    try:
        wait_for(
            lambda: (
                daemon.metric("checkpointd_runs_total", checkpoint="orders", status="success")
                == total
            ),
            timeout=120,
            what="5000 successful runs",
        )
        wait_for(
            lambda: committed(kafka_bootstrap, group) == split(total, partitions),
            timeout=30,
            what="offsets committed to the end of every partition",
        )
        accepted = daemon.metric(
            "checkpointd_trigger_events_total", trigger_type="kafka", checkpoint="orders"
        )
        assert accepted == total
        assert daemon.metric("checkpointd_kafka_messages_total", topic=unique_topic) == total
        assert (daemon.metric("checkpointd_kafka_commits_total") or 0) > 0
        assert daemon.metric("checkpointd_kafka_connected") == 1
        wait_for(
            lambda: all(
                daemon.metric(
                    "checkpointd_kafka_consumer_lag", topic=unique_topic, partition=str(p)
                )
                == 0
                for p in range(partitions)
            ),
            what="lag 0 on every partition",
        )
    finally:
        stop_quietly(daemon)
    assert daemon.proc.returncode == 0
    keys = run_keys(state)
    assert set(keys) == all_keys(unique_topic, split(total, partitions))
    assert set(keys.values()) == {1}


def test_kill_9_mid_stream_then_restart_runs_every_message_exactly_once(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    total, partitions = 4000, 2
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, partitions))
    produce(kafka_bootstrap, unique_topic, [good(i) for i in range(total)], partitions)
    group, state = make_topic_name("group"), tmp_path / "state"
    text = config(state, kafka_bootstrap, unique_topic, group)

    first = launch(tmp_path, "first", text)
    try:
        wait_for(lambda: sum(run_keys(state).values()) >= 1000, timeout=60, what="1000 runs")
    finally:
        first.kill9()
    done_before = sum(run_keys(state).values())
    assert done_before < total  # really mid-stream

    second = launch(tmp_path, "second", text)
    try:
        wait_for(lambda: len(run_keys(state)) == total, timeout=120, what="a run for every message")
        wait_for(
            lambda: committed(kafka_bootstrap, group) == split(total, partitions),
            what="offsets committed to the end",
        )
    finally:
        stop_quietly(second)
    keys = run_keys(state)
    assert set(keys) == all_keys(unique_topic, split(total, partitions))
    duplicated = {k: n for k, n in keys.items() if n != 1}
    assert duplicated == {}


def test_two_daemons_in_one_group_split_partitions_and_hand_them_over_cleanly(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    total, partitions = 3000, 4
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, partitions))
    group = make_topic_name("group")
    state_a, state_b = tmp_path / "state-a", tmp_path / "state-b"
    a = launch(tmp_path, "a", config(state_a, kafka_bootstrap, unique_topic, group))
    b: DaemonProcess | None = None
    producer = threading.Thread(
        target=produce,
        args=(kafka_bootstrap, unique_topic, [good(i) for i in range(total)], partitions),
        kwargs={"per_second": 300.0},
    )
    producer.start()
    try:
        wait_for(lambda: sum(run_keys(state_a).values()) >= 200, what="daemon a running")
        b = launch(tmp_path, "b", config(state_b, kafka_bootstrap, unique_topic, group))
        wait_for(
            lambda: sum(run_keys(state_b).values()) >= 200,
            timeout=60,
            what="daemon b took over some partitions",
        )
        # Both consume at once: the group split the partitions between them.
        wait_for(
            lambda: (
                (a.metric("checkpointd_kafka_rebalances_total") or 0) >= 2
                and sum(run_keys(state_a).values()) > 0
            ),
            what="daemon a rebalanced",
        )
        b.signal(signal.SIGTERM)
        assert b.wait(timeout=60) == 0
        producer.join(timeout=60)
        wait_for(
            lambda: len(run_keys(state_a)) + len(run_keys(state_b)) >= total,
            timeout=60,
            what="every message run by one of the daemons",
        )
        wait_for(
            lambda: committed(kafka_bootstrap, group) == split(total, partitions),
            what="offsets committed to the end",
        )
    finally:
        producer.join(timeout=60)
        stop_quietly(a)
        if b is not None:
            stop_quietly(b)
    keys_a, keys_b = run_keys(state_a), run_keys(state_b)
    assert keys_a.keys() & keys_b.keys() == set()  # no message ran in both daemons
    assert set(keys_a) | set(keys_b) == all_keys(unique_topic, split(total, partitions))
    assert set(keys_a.values()) | set(keys_b.values()) == {1}
    assert len(keys_b) >= 200


def test_malformed_messages_are_counted_dead_lettered_and_never_block_good_ones(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    dead_topic = make_topic_name("dead-letters")
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, 1))
    asyncio.run(create_topic(kafka_bootstrap, dead_topic, 1))
    bad_kinds = {
        "not_json": b"{this is not json",
        "not_object": b'["a", "list"]',
        "too_large": json.dumps({"pad": "x" * 2000}).encode(),
        "no_value": None,
    }
    values: list[bytes | None] = []
    for i in range(200):
        values.append(good(i))
        if i % 10 == 0:  # 20 rounds of the four bad kinds, spread among the good ones
            values.append(list(bad_kinds.values())[(i // 10) % 4])
    group, state = make_topic_name("group"), tmp_path / "state"
    extra = f', max_message_bytes: 1000, dead_letter_topic: "{dead_topic}"'
    produce(kafka_bootstrap, unique_topic, values, 1)

    daemon = launch(tmp_path, "a", config(state, kafka_bootstrap, unique_topic, group, extra))
    try:
        wait_for(lambda: len(run_keys(state)) == 200, timeout=60, what="200 good runs")
        wait_for(
            lambda: committed(kafka_bootstrap, group) == {0: len(values)},
            what="offsets committed past the bad records",
        )
        for reason in bad_kinds:
            assert daemon.metric("checkpointd_kafka_messages_rejected_total", reason=reason) == 5, (
                reason
            )
        assert daemon.metric("checkpointd_kafka_dead_letters_total", outcome="sent") == 20
    finally:
        stop_quietly(daemon)

    good_offsets = {o for o, v in enumerate(values) if v is not None and v.startswith(b'{"i"')}
    assert set(run_keys(state)) == {f"kafka:{unique_topic}:0:{o}" for o in good_offsets}
    letters = consume_all(kafka_bootstrap, dead_topic, 20)
    reasons = Counter(dict(r.headers)["checkpointd-reason"].decode() for r in letters)
    assert reasons == dict.fromkeys(bad_kinds, 5)
    sources = {dict(r.headers)["checkpointd-source"].decode() for r in letters}
    bad_offsets = set(range(len(values))) - good_offsets
    assert sources == {f"{unique_topic}:0:{o}" for o in bad_offsets}


BATCH_CONFIG = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{group}"}}
checkpoints:
  - name: order_stream
    data_source: {{type: kafka_batch, max_messages: 500, max_wait: 5s,
                   dtypes: {{id: Int64, amount: Float64}}}}
    validators:
      - {{type: not_null, columns: [id]}}
      - {{type: range, column: amount, min: 0, max: 1000}}
      - {{type: unique, columns: [id]}}
      - {{type: row_count, min: 500, max: 500}}
    triggers:
      - {{type: kafka, topic: "{topic}"}}
"""


def test_a_kafka_batch_checkpoint_finds_the_planted_bad_records_with_exact_counts(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, 1))
    records: list[dict[str, Any]] = [{"id": i, "amount": float(i % 900)} for i in range(1000)]
    for i in (3, 77, 250):  # three null ids in the first batch
        records[i]["id"] = None
    for i in (10, 20, 30, 40, 50):  # five negative amounts
        records[i]["amount"] = -1.0
    records[100]["id"] = records[101]["id"] = 101  # one id twice: two rows fail `unique`
    records[600]["amount"] = 5000.0  # one amount too large in the second batch
    produce(kafka_bootstrap, unique_topic, [json.dumps(r).encode() for r in records], 1)
    state = tmp_path / "state"
    text = BATCH_CONFIG.format(
        state=state, bootstrap=kafka_bootstrap, group=make_topic_name("group"), topic=unique_topic
    )

    daemon = launch(tmp_path, "a", text)
    try:
        runs = wait_for(lambda: len(daemon.runs()) == 2 and daemon.runs(), what="two batch runs")
    finally:
        stop_quietly(daemon)

    by_key = {r["trigger"]["key"]: r for r in runs}
    first = by_key[f"kafka:{unique_topic}:0:0-499"]
    second = by_key[f"kafka:{unique_topic}:0:500-999"]
    failed = {v["type"]: v["failed_count"] for v in first["validators"]}
    assert failed == {"not_null": 3, "range": 5, "unique": 2, "row_count": 0}
    assert first["status"] == "failure"
    assert {v["type"]: v["failed_count"] for v in second["validators"]} == {
        "not_null": 0,
        "range": 1,
        "unique": 0,
        "row_count": 0,
    }
    assert first["trigger"]["count"] == "500"


def test_kill_9_mid_batch_stream_then_restart_checks_every_message_in_exactly_one_batch(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    total, partitions = 20000, 2
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, partitions))
    produce(
        kafka_bootstrap,
        unique_topic,
        [json.dumps({"id": i, "amount": 1.0}).encode() for i in range(total)],
        partitions,
    )
    state = tmp_path / "state"
    text = BATCH_CONFIG.format(
        state=state, bootstrap=kafka_bootstrap, group=make_topic_name("group"), topic=unique_topic
    ).replace("max_messages: 500, max_wait: 5s", "max_messages: 20, max_wait: 300ms")
    # Small batches (1,000 runs for the stream): the daemon reads ~60,000 msg/s as batches,
    # so with big ones the whole stream was done before the kill could land.
    first = launch(tmp_path, "first", text)
    try:
        wait_for(lambda: len(run_keys_any(state)) >= 5, timeout=60, what="5 batch runs")
    finally:
        first.kill9()
    assert sum(len(covered(k)) for k in run_keys_any(state)) < total  # really mid-stream

    second = launch(tmp_path, "second", text)
    try:
        wait_for(
            lambda: sum(len(covered(k)) for k in run_keys_any(state)) >= total,
            timeout=120,
            what="batches covering every message",
        )
    finally:
        stop_quietly(second)
    keys = run_keys_any(state)
    assert set(keys.values()) == {1}  # no batch ran twice
    seen: Counter[tuple[int, int]] = Counter()
    for key in keys:
        partition = int(key.split(":")[2])
        seen.update((partition, offset) for offset in covered(key))
    expected = {(p, o) for p, n in split(total, partitions).items() for o in range(n)}
    assert set(seen) == expected  # every message checked...
    assert set(seen.values()) == {1}  # ...by exactly one batch, however batches were cut


def run_keys_any(state: Path) -> Counter[str]:
    """Runs per journal key, whatever their status (batches here fail ``row_count``)."""
    db = state / "checkpointd.sqlite3"
    if not db.exists():
        return Counter()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute("SELECT journal_key FROM runs").fetchall()
    return Counter(row[0] for row in rows)


def covered(key: str) -> range:
    """The offsets a batch key ``kafka:topic:partition:first-last`` covers."""
    first, _, last = key.rpartition(":")[2].partition("-")
    return range(int(first), int(last) + 1)


PIPE_CONFIG = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{group}"}}
checkpoints:
  - name: landing
    data_source: {{type: csv, path: "{{trigger.path}}"}}
    validators:
      - {{type: not_null, columns: [id]}}
    triggers:
      - {{type: kafka, topic: "{topic}", filter: {{field: kind, equals: csv}}}}
    actions:
      list:
        - {{type: kafka, topic: "{results}", notify_on: failure}}
"""


def test_kafka_in_run_kafka_out_publishes_only_what_notify_on_selects(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    results = make_topic_name("results")
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, 1))
    asyncio.run(create_topic(kafka_bootstrap, results, 1))
    good_csv, bad_csv = tmp_path / "good.csv", tmp_path / "bad.csv"
    good_csv.write_text("id\n1\n2\n")
    bad_csv.write_text("id\n1\n\n3\n")
    events = [
        {"kind": "csv", "path": str(good_csv)},
        {"kind": "other", "path": str(bad_csv)},  # filtered out: no run
        {"kind": "csv", "path": str(bad_csv)},
    ]
    produce(kafka_bootstrap, unique_topic, [json.dumps(e).encode() for e in events], 1)
    state = tmp_path / "state"
    text = PIPE_CONFIG.format(
        state=state,
        bootstrap=kafka_bootstrap,
        group=make_topic_name("group"),
        topic=unique_topic,
        results=results,
    )

    daemon = launch(tmp_path, "a", text)
    try:
        runs = wait_for(lambda: len(daemon.runs()) == 2 and daemon.runs(), what="two runs")
        (published,) = consume_all(kafka_bootstrap, results, 1)
    finally:
        stop_quietly(daemon)

    by_status = {r["status"]: r for r in runs}
    assert set(by_status) == {"success", "failure"}
    assert by_status["failure"]["trigger"]["path"] == str(bad_csv)
    assert published.key == b"landing"
    body = json.loads(published.value)
    assert body["run_id"] == by_status["failure"]["run_id"]
    assert body["status"] == "failure"
    assert body["validators"][0]["failed_count"] == 1
    assert set(body) >= {
        "run_id",
        "checkpoint",
        "status",
        "started_at",
        "finished_at",
        "duration_seconds",
        "attempt",
        "trigger",
        "validators",
        "error",
    }
    assert dict(published.headers)["checkpointd-status"] == b"failure"


# ------------------------------------------------------------------ broker outage


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[str, BrokerControl]]:
    """A broker of this test's own (its own ports and data), so stopping it disturbs nobody."""
    ports: set[int] = set()
    while len(ports) < 2:
        ports.add(free_port())
    port, controller = sorted(ports)
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_BROKER_DIR": str(tmp_path / "broker"),
    }
    started = start_broker(env)
    yield started.bootstrap, BrokerControl(started.bootstrap, env)
    run_broker_script("kill", env=env)


@pytest.mark.kafka
def test_a_broker_outage_is_survived_with_nothing_lost(
    private_broker: tuple[str, BrokerControl], tmp_path: Path
) -> None:
    bootstrap, broker = private_broker
    topic, group, state = make_topic_name("outage"), make_topic_name("group"), tmp_path / "state"
    asyncio.run(create_topic(bootstrap, topic, 2))
    produce(bootstrap, topic, [good(i) for i in range(300)], 2)

    daemon = launch(tmp_path, "a", config(state, bootstrap, topic, group))
    try:
        wait_for(lambda: len(run_keys(state)) == 300, timeout=60, what="300 runs before")
        asyncio.run(broker.stop())
        down_since = time.monotonic()
        wait_for(
            lambda: daemon.metric("checkpointd_kafka_connected") == 0,
            timeout=20,
            what="the daemon noticing the broker is gone",
        )
        assert daemon.get("/healthz").status == 200  # not ready for Kafka, but alive
        wait_for(lambda: daemon.get("/readyz").status == 503, timeout=20, what="/readyz 503")
        time.sleep(max(0.0, 20 - (time.monotonic() - down_since)))
        asyncio.run(broker.start())
        produce(bootstrap, topic, [good(i) for i in range(300, 600)], 2, start=300)
        wait_for(lambda: len(run_keys(state)) == 600, timeout=120, what="600 runs after the outage")
        wait_for(
            lambda: committed(bootstrap, group) == split(600, 2),
            timeout=60,
            what="offsets committed to the end",
        )
        wait_for(
            lambda: daemon.metric("checkpointd_kafka_connected") == 1,
            timeout=20,
            what="the daemon seeing the broker back",
        )
        wait_for(lambda: daemon.get("/readyz").status == 200, timeout=20, what="/readyz 200")
        assert daemon.proc.poll() is None
    finally:
        stop_quietly(daemon)
    keys = run_keys(state)
    assert set(keys) == all_keys(topic, split(600, 2))
    assert set(keys.values()) == {1}
