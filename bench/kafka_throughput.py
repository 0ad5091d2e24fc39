"""Kafka on a real broker: sustained messages/s and message-to-run-start latency, per mode.

    python bench/kafka_throughput.py [--json OUT] [--quick] [--repeat N] [--cases NAME ...]
                                     [--py-spy DIR]

Everything runs against the Apache Kafka broker of ``scripts/kafka-broker`` (started
if needed; ``KAFKA_PORT`` and ``KAFKA_BROKER_DIR`` select another one), with the real
daemon as a subprocess (``python -m checkpointd run``, default settings: uvloop, 8
concurrent runs, durable SQLite store with ``synchronous=FULL``, info logging).

Modes, each a trivial checkpoint (one ``row_count`` validator) on a kafka trigger, on
topics of 4 partitions holding the same small JSON messages:

- ``per_message``: data source ``inline`` (one row): every message is its own event,
  journaled, run, stored and committed.
- ``kafka_batch`` (``max_messages: 1000, max_wait: 200ms``): the messages are the
  data, one run per batch of up to 1,000 messages of one partition. A batch is handed
  over when it is full or when its first message has waited ``max_wait``.
- ``kafka_batch_50ms`` and ``kafka_batch_20ms`` (``max_messages: 1000``, ``max_wait``
  50 ms or 20 ms): what an operator who wants low latency would choose; more, smaller
  runs. A message waits at most ``max_wait`` for its batch, plus the Kafka fetch.

Next to them, ``plain_aiokafka``: one ``AIOKafkaConsumer`` reading the same topic with
``getmany``, no decoding, no processing, no commits: the limit any consumer here has.

Throughput: a topic is filled first, then the daemon starts and consumes it. The rate
is over the runs after those covering the first 5% of the messages (the warm-up): from
the start of the first of them to the end of the last (from the runs the daemon
stored). The daemon's CPU time (all threads, the whole topic) is reported per message.
On a backlog batches fill up at once, so ``max_wait`` does not change this figure;
``max_messages`` does.

Latency: the daemon is started and caught up first, then messages are produced at a
fixed rate. A message's latency is from just before its ``send`` to the start of the
run that checked it (the run's ``started_at``), for every message; ``to_emit`` is the
trigger's share of it: from the send until the event was handed to the journal (Kafka
fetch, decoding, batching), the rest being the journal commit and the wait for a run
slot.

Each case is repeated ``--repeat`` times (default 5, 3 with ``--quick``), the cases
interleaved repetition by repetition; figures are the medians, every repetition is
kept. A broker and a daemon share this 2-core machine, so absolute figures drift with
its load: compare within one run.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
BROKER = ROOT / "scripts" / "kafka-broker"
PARTITIONS = 4
WARM_UP = 0.05
"""The share of a throughput topic that is the warm-up, not timed."""

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


@dataclass(frozen=True)
class Mode:
    """How the trivial checkpoint takes its messages."""

    name: str
    source: str  # the data source, as YAML
    config: str  # said in words, for the report

    def as_dict(self) -> dict[str, str]:
        return {"mode": self.name, "config": self.config}


PER_MESSAGE = Mode(
    "per_message", "{type: inline, rows: [{x: 1}]}", "one run per message (inline row)"
)
BATCH = Mode(
    "kafka_batch",
    "{type: kafka_batch, max_messages: 1000, max_wait: 200ms}",
    "kafka_batch, max_messages 1000, max_wait 200ms",
)
BATCH_50MS = Mode(
    "kafka_batch_50ms",
    "{type: kafka_batch, max_messages: 1000, max_wait: 50ms}",
    "kafka_batch, max_messages 1000, max_wait 50ms",
)
BATCH_20MS = Mode(
    "kafka_batch_20ms",
    "{type: kafka_batch, max_messages: 1000, max_wait: 20ms}",
    "kafka_batch, max_messages 1000, max_wait 20ms",
)
MODES = {mode.name: mode for mode in (PER_MESSAGE, BATCH, BATCH_50MS, BATCH_20MS)}


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


@dataclass(frozen=True)
class Daemon:
    pid: int
    db: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def daemon(config_text: str, folder: Path) -> Iterator[Daemon]:
    """Run the daemon on ``config_text`` until the block ends."""
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
        yield Daemon(proc.pid, folder / "state" / "checkpointd.sqlite3")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all threads) from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Run = tuple[str, float, float]
"""(journal key, started_at, finished_at) of a stored run, times as Unix seconds."""


class Runs:
    """The runs the daemon stored, read incrementally.

    Each poll reads only the rows stored since the last one: re-reading (and
    re-parsing) every result each time would take a good part of a core from the
    daemon under test by the end of a long run.
    """

    def __init__(self, db: Path) -> None:
        self._db = db
        self._seq = 0
        self.done: list[Run] = []
        self.covered = 0

    def poll(self) -> None:
        if not self._db.exists():
            return
        with sqlite3.connect(f"file:{self._db}?mode=ro", uri=True, timeout=10) as conn:
            rows = conn.execute(
                "SELECT seq, journal_key, result FROM runs WHERE seq > ? ORDER BY seq",
                (self._seq,),
            ).fetchall()
        for seq, key, result in rows:
            data = json.loads(result)
            self.done.append((key, _unix(data["started_at"]), _unix(data["finished_at"])))
            self.covered += len(covered(key))
            self._seq = seq

    def wait(self, count: int, timeout: float) -> list[Run]:
        """Wait until the runs cover ``count`` messages; all runs so far."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if self.covered >= count:
                return list(self.done)
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"only {len(self.done)} runs after {timeout} s; see {self._db.parent.parent}"
                )
            time.sleep(0.1)


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def covered(key: str) -> list[tuple[int, int]]:
    """The (partition, offset) pairs a run's key covers: one message, or a batch's range."""
    _, _, partition, offsets = key.split(":")
    first, _, last = offsets.partition("-")
    return [(int(partition), o) for o in range(int(first), int(last or first) + 1)]


def journal_times(db: Path) -> dict[str, float]:
    """Journal key -> when the event was handed to the journal (Unix seconds)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT key, accepted_at FROM journal").fetchall()
    return {key: _unix(at) for key, at in rows}


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


def throughput(
    bootstrap: str, topic: str, count: int, mode: Mode, work: Path, spy: Path | None = None
) -> dict[str, Any]:
    with daemon(config(work / "state", bootstrap, topic, mode.source), work) as d:
        profiler = _py_spy(d.pid, spy) if spy is not None else None
        cpu_start = cpu_seconds(d.pid)
        done = Runs(d.db).wait(count, timeout=1200)
        cpu = cpu_seconds(d.pid) - cpu_start
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            profiler.wait(timeout=60)
    # Timed: the runs after those covering the warm-up, from the first one's start.
    done.sort(key=lambda run: run[1])
    warm, seen = count * WARM_UP, 0
    while seen < warm and len(done) > 1:
        seen += len(covered(done.pop(0)[0]))
    messages = sum(len(covered(k)) for k, _, _ in done)
    seconds = max(f for _, _, f in done) - done[0][1]
    return {
        **mode.as_dict(),
        "messages": messages,
        "runs": len(done),
        "seconds": round(seconds, 3),
        "msg_per_s": round(messages / seconds),
        # Over the whole topic, warm-up included: the daemon's CPU (all threads) per message.
        "cpu_us_per_msg": round(cpu / count * 1e6, 1),
    }


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).parent / "py-spy"
    argv = [str(py_spy), "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
    return subprocess.Popen([*argv, "--nonblocking"], stdout=subprocess.DEVNULL)


def latency(bootstrap: str, rate: float, seconds: float, mode: Mode, work: Path) -> dict[str, Any]:
    topic = asyncio.run(new_topic(bootstrap, "latency"))
    with daemon(config(work / "state", bootstrap, topic, mode.source), work) as d:
        runs = Runs(d.db)
        # Catch up first: a message per partition through, so the group is joined and warm.
        asyncio.run(fill(bootstrap, topic, PARTITIONS))
        runs.wait(PARTITIONS, timeout=120)
        sent = asyncio.run(paced(bootstrap, topic, rate, seconds))
        done = runs.wait(len(sent) + PARTITIONS, timeout=600)
        accepted = journal_times(d.db)
    start_of: dict[tuple[int, int], float] = {}
    emitted_at: dict[tuple[int, int], float] = {}
    for key, started, _ in done:
        for where in covered(key):
            start_of[where] = started
            emitted_at[where] = accepted[key]
    waits = sorted((start_of[where] - at) * 1000 for where, at in sent.items())
    to_emit = sorted((emitted_at[where] - at) * 1000 for where, at in sent.items())
    return {
        **mode.as_dict(),
        "rate_msg_per_s": rate,
        "messages": len(sent),
        "runs": len(done),
        "p50_ms": round(statistics.median(waits), 1),
        "p99_ms": round(percentile(waits, 0.99), 1),
        "max_ms": round(waits[-1], 1),
        "to_emit_p50_ms": round(statistics.median(to_emit), 1),
        "to_emit_p99_ms": round(percentile(to_emit, 0.99), 1),
    }


def percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


def summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numeric fields over the repetitions, the text fields, and the reps."""
    out: dict[str, Any] = {k: v for k, v in reps[0].items() if isinstance(v, str)}
    for key, value in reps[0].items():
        if isinstance(value, int | float):
            median = statistics.median(r[key] for r in reps)
            out[key] = round(median, 1) if isinstance(median, float) else median
    out["repetitions"] = reps
    return out


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Sizes:
    per_message: int
    batch: int
    latency_seconds: float

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(per_message=3_000, batch=20_000, latency_seconds=4.0)
        return cls(per_message=20_000, batch=100_000, latency_seconds=10.0)


Case = Callable[[Path], dict[str, Any]]

CASES = (
    "throughput.plain_aiokafka",
    "throughput.per_message",
    "throughput.plain_aiokafka_batch_topic",
    "throughput.kafka_batch",
    "latency.per_message_1000",
    "latency.per_message_250",
    "latency.kafka_batch_50ms_1000",
    "latency.kafka_batch_20ms_1000",
    "latency.kafka_batch_1000",
)


def cases(bootstrap: str, sizes: Sizes, spy: Path | None) -> dict[str, Case]:
    """Every measurement, by name; topics for throughput are filled once, lazily."""
    topics: dict[str, str] = {}

    def topic(label: str, count: int) -> str:
        if label not in topics:
            topics[label] = asyncio.run(new_topic(bootstrap, label))
            asyncio.run(fill(bootstrap, topics[label], count))
        return topics[label]

    n, nb, secs = sizes.per_message, sizes.batch, sizes.latency_seconds
    spied: set[str] = set()

    def daemon_throughput(label: str, count: int, mode: Mode, work: Path) -> dict[str, Any]:
        profile = None
        if spy is not None and mode.name not in spied:  # the first repetition of each mode
            spy.mkdir(parents=True, exist_ok=True)
            profile = spy / f"{mode.name}.txt"
            spied.add(mode.name)
        return throughput(bootstrap, topic(label, count), count, mode, work, profile)

    return {
        "throughput.plain_aiokafka": lambda work: asyncio.run(
            plain_aiokafka(bootstrap, topic("throughput", n), n)
        ),
        "throughput.per_message": lambda work: daemon_throughput(
            "throughput", n, PER_MESSAGE, work
        ),
        "throughput.plain_aiokafka_batch_topic": lambda work: asyncio.run(
            plain_aiokafka(bootstrap, topic("batch", nb), nb)
        ),
        "throughput.kafka_batch": lambda work: daemon_throughput("batch", nb, BATCH, work),
        "latency.per_message_1000": lambda work: latency(bootstrap, 1000, secs, PER_MESSAGE, work),
        "latency.per_message_250": lambda work: latency(bootstrap, 250, secs, PER_MESSAGE, work),
        "latency.kafka_batch_50ms_1000": lambda work: latency(
            bootstrap, 1000, secs, BATCH_50MS, work
        ),
        "latency.kafka_batch_20ms_1000": lambda work: latency(
            bootstrap, 1000, secs, BATCH_20MS, work
        ),
        "latency.kafka_batch_1000": lambda work: latency(bootstrap, 1000, secs, BATCH, work),
    }


def measure(
    quick: bool, repeat: int, only: list[str] | None = None, spy: Path | None = None
) -> dict[str, Any]:
    bootstrap = ensure_broker()
    sizes = Sizes.of(quick)
    chosen = [c for c in CASES if only is None or c in only]
    reps: dict[str, list[dict[str, Any]]] = {c: [] for c in chosen}
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        work = Path(tmp)
        run = cases(bootstrap, sizes, spy)
        for rep in range(repeat):
            for name in chosen:
                print(f"kafka bench: {name} #{rep + 1}", file=sys.stderr, flush=True)
                reps[name].append(run[name](work / f"{name}-{rep}"))
    out: dict[str, Any] = {
        "broker": bootstrap,
        "partitions": PARTITIONS,
        "repetitions": repeat,
        "throughput": {},
        "latency": {},
    }
    for name, measured in reps.items():
        group, _, case = name.partition(".")
        out[group][case] = summary(measured)
    return out


def table(result: dict[str, Any]) -> str:
    lines = [f"{'throughput':<34}{'config':<50}{'msg/s':>9}{'CPU µs/msg':>12}", "-" * 105]
    for name, entry in result["throughput"].items():
        cpu = entry.get("cpu_us_per_msg")
        lines.append(
            f"{name:<34}{entry.get('config', '-'):<50}{entry['msg_per_s']:>9,}"
            f"{cpu if cpu is not None else '-':>12}"
        )
    lines += [
        "",
        f"{'latency (send -> run start)':<34}{'config':<50}"
        "p50 ms  p99 ms  max ms  to emit p50/p99 ms",
        "-" * 125,
    ]
    for name, entry in result["latency"].items():
        lines.append(
            f"{name:<34}{entry['config']:<50}{entry['p50_ms']:>6}{entry['p99_ms']:>8}"
            f"{entry['max_ms']:>8}  {entry['to_emit_p50_ms']:>8} / {entry['to_emit_p99_ms']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, quick 3)")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="only these cases")
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="profile the daemon of each mode's first throughput repetition into DIR/MODE.txt",
    )
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    result = measure(args.quick, repeat, args.cases, args.py_spy)
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
