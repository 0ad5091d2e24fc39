"""Kafka on a real broker: sustained messages/s and message-to-run-start latency.

    python bench/kafka_throughput.py [--json OUT] [--quick]

Everything runs against the Apache Kafka broker of ``scripts/kafka-broker`` (started
if needed; ``KAFKA_PORT`` and friends select another one), with the real daemon as a
subprocess (``python -m checkpointd run``, default settings: uvloop, 8 concurrent
runs, durable SQLite store with ``synchronous=FULL``, info logging).

Contenders, each on a fresh topic of 4 partitions holding the same small JSON
messages:

- ``plain aiokafka``: one ``AIOKafkaConsumer`` reading the topic with ``getmany``,
  no decoding, no processing, no commits: the limit any consumer here can reach.
- ``per-message``: a kafka trigger on a trivial checkpoint (one inline row, one
  ``row_count`` validator): every message is journaled, run, stored, committed.
- ``kafka_batch``: the same messages as ``kafka_batch`` data (1,000 per batch), the
  validators running on the batch's DataFrame: one run per batch.

Throughput: the topic is filled first, then the daemon starts; the rate is the
message count over the time from the first run's start to the last run's end (from
the runs the daemon stored). Latency: the daemon is started and caught up first,
then messages are produced at a fixed rate; a message's latency is from just before
its ``send`` to the start of the run that checked it (the run's ``started_at``), for
every message. One repetition each: a broker and a daemon per measurement take most
of this 2-core machine, so the figures are a shape, not a guarantee.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
BROKER = ROOT / "scripts" / "kafka-broker"
PARTITIONS = 4

CONFIG = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{group}"}}
checkpoints:
  - name: trivial
    overlap: allow
    data_source: {source}
    validators:
      - {{type: row_count, min: 1}}
    triggers:
      - {{type: kafka, topic: "{topic}"}}
"""
PER_MESSAGE = "{type: inline, rows: [{x: 1}]}"
BATCH = "{type: kafka_batch, max_messages: 1000, max_wait: 200ms}"


# ------------------------------------------------------------------ broker and topics


def ensure_broker() -> str:
    done = subprocess.run(
        [sys.executable, str(BROKER), "start", "--keep-data"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the Kafka broker did not start:\n{done.stdout}{done.stderr}")
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return values["bootstrap"]


async def new_topic(bootstrap: str, label: str) -> str:
    name = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        while True:
            (described,) = await admin.describe_topics([name])
            leaders = [p for p in described["partitions"] if p["leader"] >= 0]
            if described["error_code"] == 0 and len(leaders) == PARTITIONS:
                return name
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def message(i: int) -> bytes:
    return json.dumps({"i": i, "dataset": "orders", "amount": i % 1000}).encode()


async def fill(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, message(i), partition=i % PARTITIONS))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def paced(
    bootstrap: str, topic: str, rate: float, seconds: float
) -> dict[tuple[int, int], float]:
    """Produce at ``rate`` msg/s; returns (partition, offset) -> wall time just before send."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    sent: list[tuple[float, asyncio.Future[Any]]] = []
    try:
        began = time.monotonic()
        total = int(rate * seconds)
        for i in range(total):
            ahead = began + i / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            at = time.time()
            sent.append((at, await producer.send(topic, message(i), partition=i % PARTITIONS)))
        await producer.flush()
        out = {}
        for at, future in sent:
            meta = await future
            out[(meta.partition, meta.offset)] = at
        return out
    finally:
        await producer.stop()


# ------------------------------------------------------------------ the daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def daemon(config_text: str, folder: Path) -> Iterator[Path]:
    """Run the daemon on ``config_text`` until the block ends; yields its database path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "checkpointd.yaml"
    path.write_text(config_text)
    port = free_port()
    env = {**os.environ, "CHECKPOINTD_HTTP_LISTEN": f"127.0.0.1:{port}"}
    env.pop("NOTIFY_SOCKET", None)
    with (folder / "daemon.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "checkpointd", "run", "-c", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited {proc.returncode}; see {folder}/daemon.log")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon was not ready in 120 s; see {folder}/daemon.log")
            time.sleep(0.1)
        yield folder / "state" / "checkpointd.sqlite3"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def runs(db: Path) -> list[tuple[str, float, float]]:
    """(journal key, started_at, finished_at) of every stored run, times as Unix seconds."""
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT journal_key, result FROM runs").fetchall()
    out = []
    for key, result in rows:
        data = json.loads(result)
        out.append((key, _unix(data["started_at"]), _unix(data["finished_at"])))
    return out


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def covered(key: str) -> list[tuple[int, int]]:
    """The (partition, offset) pairs a run's key covers: one message, or a batch's range."""
    _, _, partition, offsets = key.split(":")
    first, _, last = offsets.partition("-")
    return [(int(partition), o) for o in range(int(first), int(last or first) + 1)]


def wait_covered(db: Path, count: int, timeout: float) -> list[tuple[str, float, float]]:
    deadline = time.monotonic() + timeout
    while True:
        done = runs(db)
        if sum(len(covered(k)) for k, _, _ in done) >= count:
            return done
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(done)} runs after {timeout} s; see {db.parent.parent}")
        time.sleep(0.25)


def config(state: Path, bootstrap: str, topic: str, source: str) -> str:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    return CONFIG.format(state=state, bootstrap=bootstrap, group=group, topic=topic, source=source)


# ------------------------------------------------------------------ measurements


async def plain_aiokafka(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-plain-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()  # returns once the group assigned the partitions
    try:
        seen, began = 0, time.monotonic()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            seen += sum(len(b) for b in batches.values())
        seconds = time.monotonic() - began
    finally:
        await consumer.stop()
    return {"messages": count, "seconds": round(seconds, 3), "msg_per_s": round(count / seconds)}


def throughput(bootstrap: str, topic: str, count: int, source: str, work: Path) -> dict[str, Any]:
    with daemon(config(work / "state", bootstrap, topic, source), work) as db:
        done = wait_covered(db, count, timeout=1200)
    first = min(started for _, started, _ in done)
    last = max(finished for _, _, finished in done)
    seconds = last - first
    return {
        "messages": count,
        "runs": len(done),
        "seconds": round(seconds, 3),
        "sustained_msg_per_s": round(count / seconds),
    }


def latency(bootstrap: str, rate: float, seconds: float, source: str, work: Path) -> dict[str, Any]:
    topic = asyncio.run(new_topic(bootstrap, "latency"))
    with daemon(config(work / "state", bootstrap, topic, source), work) as db:
        # Catch up first: one message through, so the group is joined and warm.
        asyncio.run(fill(bootstrap, topic, PARTITIONS))
        wait_covered(db, PARTITIONS, timeout=120)
        sent = asyncio.run(paced(bootstrap, topic, rate, seconds))
        done = wait_covered(db, len(sent) + PARTITIONS, timeout=600)
        accepted = journal_times(db)
    start_of: dict[tuple[int, int], float] = {}
    journaled_at: dict[tuple[int, int], float] = {}
    for key, started, _ in done:
        for where in covered(key):
            start_of[where] = started
            journaled_at[where] = accepted[key]
    waits = sorted((start_of[where] - at) * 1000 for where, at in sent.items())
    # The trigger's own share: from the send until the event is journaled (the rest
    # is the wait for a run slot).
    to_journal = sorted((journaled_at[where] - at) * 1000 for where, at in sent.items())
    return {
        "rate_msg_per_s": rate,
        "messages": len(sent),
        "p50_ms": round(statistics.median(waits), 1),
        "p99_ms": round(percentile(waits, 0.99), 1),
        "max_ms": round(waits[-1], 1),
        "to_journal_p50_ms": round(statistics.median(to_journal), 1),
        "to_journal_p99_ms": round(percentile(to_journal, 0.99), 1),
    }


def percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


def journal_times(db: Path) -> dict[str, float]:
    """Journal key -> when the event was journaled (Unix seconds)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT key, accepted_at FROM journal").fetchall()
    return {key: _unix(at) for key, at in rows}


def measure(quick: bool) -> dict[str, Any]:
    bootstrap = ensure_broker()
    count = 5_000 if quick else 20_000
    batch_count = 20_000 if quick else 100_000
    seconds = 5.0 if quick else 20.0
    out: dict[str, Any] = {"broker": bootstrap, "partitions": PARTITIONS}
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        work = Path(tmp)
        topic = asyncio.run(new_topic(bootstrap, "throughput"))
        asyncio.run(fill(bootstrap, topic, count))
        out["plain_aiokafka"] = asyncio.run(plain_aiokafka(bootstrap, topic, count))
        out["per_message"] = throughput(bootstrap, topic, count, PER_MESSAGE, work / "per")
        batch_topic = asyncio.run(new_topic(bootstrap, "batch"))
        asyncio.run(fill(bootstrap, batch_topic, batch_count))
        out["plain_aiokafka_batch_topic"] = asyncio.run(
            plain_aiokafka(bootstrap, batch_topic, batch_count)
        )
        out["kafka_batch"] = throughput(bootstrap, batch_topic, batch_count, BATCH, work / "batch")
        out["latency"] = {
            "per_message_1000": latency(bootstrap, 1000, seconds, PER_MESSAGE, work / "l1"),
            "per_message_250": latency(bootstrap, 250, seconds, PER_MESSAGE, work / "l2"),
            "kafka_batch_1000": latency(bootstrap, 1000, seconds, BATCH, work / "l3"),
        }
    # The headline figures the bench report reads: the per-message path.
    out["sustained_msg_per_s"] = out["per_message"]["sustained_msg_per_s"]
    out["p99_ms"] = out["latency"]["per_message_1000"]["p99_ms"]
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["contender                     msg/s", "-" * 36]
    for name in ("plain_aiokafka", "per_message", "plain_aiokafka_batch_topic", "kafka_batch"):
        entry = result[name]
        rate = entry.get("sustained_msg_per_s", entry.get("msg_per_s"))
        lines.append(f"{name:<28}{rate:>8,}")
    lines += [
        "",
        "latency (send -> run start)     p50 ms    p99 ms    max ms   journaled p50/p99 ms",
        "-" * 80,
    ]
    for name, entry in result["latency"].items():
        lines.append(
            f"{name:<28}{entry['p50_ms']:>9}{entry['p99_ms']:>10}{entry['max_ms']:>10}"
            f"   {entry['to_journal_p50_ms']:>8} / {entry['to_journal_p99_ms']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    args = parser.parse_args()
    result = measure(args.quick)
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
