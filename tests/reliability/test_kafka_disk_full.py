"""A full state disk under a Kafka consumer: commits stop at the journal, nothing is lost.

The Kafka half of the disk-full scenario (the file half is test_disk_full.py, whose small
file system and filler this test reuses). A producer thread keeps producing to a 2-partition
topic while the daemon consumes it, one run per message or ``kafka_batch`` batches; then the
state dir's file system fills up, stays full for a while, and the filler is deleted.

Meanwhile the daemon must not exit or restart (a restart makes no room), ``/healthz`` must
stay 200 and ``/readyz`` turn 503. Above all **the group's committed offsets must never pass
what the journal holds**: a watcher thread samples, all through the test, the offsets the
broker holds for the group and then the journal rows in the state database (committed first,
journal second: the journal only grows, so a sample cannot pass by luck), and every offset
below a committed one must be covered by a journaled event. While the disk is full the
commits must stall behind the producer. Once space returns the daemon catches up by itself:
every produced message ends with exactly one completed run (or is in exactly one completed
batch), the offsets are committed to the end and ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import DaemonProcess, run_daemon, wait_for
from tests.kafka_broker import make_topic_name
from tests.reliability import test_disk_full as disk_full
from tests.reliability.kafkasupport import (
    TP,
    KafkaFeeder,
    committed_offsets,
    covered,
    create_topic,
    journal_coverage,
    read_only,
    uncovered_below,
)
from tests.reliability.support import integrity_check, log_mentions

small_fs = disk_full.small_fs
"""The state dir's own small file system (a fixture of the file half, shared)."""

fill = disk_full.fill

CHECKPOINT = "stream"
PARTITIONS = 2
RATE = 60.0
"""Messages per second: well within what per-message runs sustain, enough to fill batches."""

FULL_SECONDS = 5.0
"""How long the disk stays full once the daemon noticed."""

SOURCES = {
    "per_message": "{type: inline, rows: [{x: 1}]}",
    "kafka_batch": "{type: kafka_batch, max_messages: 20, max_wait: 300ms, dtypes: {id: Int64}}",
}

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 4
  graceful_shutdown_timeout: 10s
  log: {{format: json, level: info}}
kafka: {{bootstrap_servers: "{bootstrap}", group_id: "{group}"}}
checkpoints:
  - name: {checkpoint}
    overlap: allow
    data_source: {source}
    validators:
      - {{type: row_count, min: 1}}
    triggers:
      - {{type: kafka, topic: "{topic}"}}
"""


@dataclass(frozen=True)
class Sample:
    """One look from outside: the group's committed offsets, then the journal's gaps below."""

    at: float
    phase: str
    committed: dict[TP, int]
    gaps: dict[TP, list[int]]


class CommitWatch(threading.Thread):
    """Samples committed offsets and journal coverage until stopped (see the module docs)."""

    def __init__(self, bootstrap: str, group: str, topic: str, state: Path) -> None:
        super().__init__(name="reliability-commit-watch", daemon=True)
        self.bootstrap, self.group, self.topic, self.state = bootstrap, group, topic, state
        self.phase = "before"
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.samples.append(self.sample())
                self._stop_event.wait(0.2)
        except BaseException as exc:  # reported by stop(); a silent watcher would hide a bug
            self.error = exc

    def sample(self) -> Sample:
        phase = self.phase
        committed = group_offsets(self.bootstrap, self.group, self.topic)
        coverage = journal_coverage(self.state, CHECKPOINT)  # read after: it only grows
        return Sample(time.monotonic(), phase, committed, uncovered_below(committed, coverage))

    def stop(self) -> list[Sample]:
        self._stop_event.set()
        self.join(timeout=60)
        if self.error is not None:
            raise AssertionError(f"the commit watcher failed: {self.error!r}") from self.error
        return self.samples


@contextmanager
def running(*threads: KafkaFeeder | CommitWatch) -> Iterator[None]:
    """Start the producer and/or the watcher; they are stopped however the block ends."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        errors = []
        for thread in threads:
            try:
                thread.stop()
            except AssertionError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


Violation = tuple[str, dict[int, int], dict[int, list[int]]]
"""A sample that saw offsets committed but not journaled: phase, committed, first gaps."""


def past_the_journal(samples: list[Sample]) -> list[Violation]:
    """The samples whose committed offsets passed what the journal held."""
    return [
        (s.phase, s.committed, {p: gaps[:5] for p, gaps in s.gaps.items()})
        for s in samples
        if s.gaps
    ]


def group_offsets(bootstrap: str, group: str, topic: str) -> dict[TP, int]:
    """The group's committed offsets on ``topic``, by (topic, partition), as the broker holds
    them (keyed like the journal's coverage and the feeder's record)."""
    offsets = committed_offsets(bootstrap, group)
    return {tp: o for tp, o in offsets.items() if tp[0] == topic}


def completed_coverage(state: Path) -> Counter[tuple[TP, int]]:
    """How many successful runs cover each ((topic, partition), offset)."""
    seen: Counter[tuple[TP, int]] = Counter()
    rows = read_only(
        state,
        "SELECT journal_key FROM runs WHERE checkpoint = ? AND status = 'success'",
        CHECKPOINT,
    )
    for (key,) in rows:
        partition, offsets = covered(key)
        seen.update((partition, o) for o in offsets)
    return seen


def produced(sent: dict[int, tuple[TP, int]]) -> set[tuple[TP, int]]:
    """Every acknowledged message as ((topic, partition), offset)."""
    return set(sent.values())


def end_offsets(sent: dict[int, tuple[TP, int]]) -> dict[TP, int]:
    """Per partition, the offset after the last acknowledged message: where commits end."""
    ends: dict[TP, int] = {}
    for partition, offset in sent.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def freezes(samples: list[Sample]) -> list[float]:
    """Seconds the committed offsets stayed unchanged, per run of equal consecutive samples."""
    out: list[float] = []
    start = 0
    for i in range(1, len(samples) + 1):
        if i == len(samples) or samples[i].committed != samples[start].committed:
            if i - start > 1:
                out.append(samples[i - 1].at - samples[start].at)
            start = i
    return out


def stay_full(daemon: DaemonProcess, seconds: float) -> None:
    """Keep watching the daemon while the disk is full: alive, live, not ready."""
    pid = daemon.proc.pid
    since = time.monotonic()
    while time.monotonic() - since < seconds:
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
        assert daemon.proc.pid == pid
        assert daemon.get("/healthz").status == 200, "liveness failed: a supervisor would restart"
        assert daemon.get("/readyz").status == 503, "ready while the store cannot write"
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("source", "loop"), [("per_message", "asyncio"), ("kafka_batch", "uvloop")]
)
def test_a_full_state_disk_stalls_commits_at_the_journal_and_loses_no_message(
    tmp_path, small_fs, kafka_bootstrap, figures, source, loop
):
    topic, group = make_topic_name(f"disk-full-{source}"), make_topic_name("group")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    state = small_fs / "state"
    text = CONFIG.format(
        state=state,
        bootstrap=kafka_bootstrap,
        group=group,
        checkpoint=CHECKPOINT,
        source=SOURCES[source],
        topic=topic,
    )
    feeder = KafkaFeeder(kafka_bootstrap, [topic], PARTITIONS, rate=RATE, seed=7)
    watch = CommitWatch(kafka_bootstrap, group, topic, state)
    with run_daemon(text, tmp_path, loop=loop) as daemon, running(watch):
        pid = daemon.proc.pid
        with running(feeder):
            wait_for(
                lambda: len(completed_coverage(state)) >= 100,
                timeout=60,
                what="the first 100 messages run",
            )
            filler = fill(small_fs)
            produced_at_fill = len(feeder.sent())
            watch.phase = "full"
            wait_for(
                lambda: "store cannot write" in daemon.log(),
                timeout=30,
                what="the store noticing the full disk",
            )
            wait_for(lambda: not daemon.ready(), timeout=15, what="/readyz turning 503")
            assert daemon.get("/readyz").json()["store_writable"] is False
            stay_full(daemon, FULL_SECONDS)
            sent_while_full = feeder.sent()
            journaled_while_full = journal_coverage(state, CHECKPOINT)
            filler.unlink()
            freed = time.monotonic()
            watch.phase = "recovering"
            time.sleep(1.0)  # the producer keeps producing while the daemon recovers
        sent = feeder.sent()
        # The promise first, so that breaking it fails here and says so.
        assert past_the_journal(list(watch.samples)) == [], "offsets committed past the journal"

        def all_ran() -> bool:
            return set(completed_coverage(state)) >= produced(sent)

        wait_for(all_ran, timeout=90, interval=0.25, what="a run for every message")
        figures["seconds_to_catch_up_after_space_returned"] = round(time.monotonic() - freed, 1)
        wait_for(
            lambda: group_offsets(kafka_bootstrap, group, topic) == end_offsets(sent),
            timeout=30,
            what="offsets committed to the end of every partition",
        )
        samples = [*watch.stop(), watch.sample()]
        assert daemon.proc.pid == pid, "the daemon restarted"
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
        wait_for(daemon.ready, timeout=30, what="/readyz after space returned")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.log()[-3000:]
        log = daemon.log()

    full = [s for s in samples if s.phase == "full"]
    longest_freeze = max(freezes(full), default=0.0)
    figures["source"] = source
    figures["messages_produced"] = len(sent)
    figures["messages_produced_while_full"] = len(sent_while_full) - produced_at_fill
    figures["commit_samples_while_full"] = len(full)
    figures["commit_stalls_observed_while_full"] = sum(
        1 for a, b in itertools.pairwise(full) if a.committed == b.committed
    )
    figures["longest_commit_stall_while_full_seconds"] = round(longest_freeze, 1)
    figures["commit_samples_total"] = len(samples)
    figures["events_not_journaled_while_full"] = log.count("kafka event not journaled")
    figures["samples_with_offsets_committed_past_the_journal"] = len(past_the_journal(samples))

    assert past_the_journal(samples) == [], "offsets committed past the journal"
    assert log_mentions(log) == [], "the full disk sent the daemon down a crashing path"
    # While full, the commits stalled: behind the producer, and frozen for a while.
    assert full, "no sample of the committed offsets while the disk was full"
    assert sum(full[-1].committed.values()) < len(sent_while_full)
    assert longest_freeze >= FULL_SECONDS / 2, [s.committed for s in full]
    journaled = sum(len(offsets) for offsets in journaled_while_full.values())
    assert journaled < len(sent_while_full), "the journal took every message while full"

    runs = Counter(key for (key,) in read_only(state, "SELECT journal_key FROM runs"))
    assert set(runs.values()) == {1}, "a run's key was stored twice"
    done = completed_coverage(state)
    assert set(done) == produced(sent), "messages without a run, or runs of no message"
    assert set(done.values()) == {1}, "a message ran twice"
    statuses = Counter(s for (s,) in read_only(state, "SELECT status FROM runs"))
    assert set(statuses) == {"success"}, statuses
    journal = dict(read_only(state, "SELECT key, state FROM journal"))
    assert set(journal.values()) == {"done"}, Counter(journal.values())
    assert set(journal) == set(runs), "a run of an event the journal never held, or vice versa"
    assert integrity_check(state) == "ok"
