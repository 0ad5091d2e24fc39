"""Kafka crash loop: messages keep arriving while the daemon is SIGKILLed at random moments.

A producer thread keeps producing messages with unique ids, alternately to two 3-partition
topics. The daemon consumes them with two checkpoints: ``per_message`` runs once per message
of either topic (an inline source, fired per message), and ``batches`` (a ``kafka_batch``
source) validates the second topic's messages themselves, 50 at a time. So one topic's
offsets are held by per-message events alone, the other's by both kinds at once. The daemon
is killed ``Scale.crash_cycles`` times (on asyncio and uvloop in turn): while it starts, just
after it is ready (while the group hands it partitions), while it consumes, and while its
journal is stalled (the test holds the SQLite write lock, as a disk stuck in fsync would:
messages keep arriving but none can be journaled, so none may be committed).

The invariant the Kafka trigger promises is checked throughout, from outside: **no committed
offset is ever past what the journal holds**. For every partition, every offset below the
group's committed offset must be covered by a journal row of each checkpoint that consumes
it (its message key, or a batch key whose range includes it). It is checked after every kill
(the daemon is dead: both sides are still) and sampled while the daemon runs (the committed
offsets are read first, then the journal, which only grows, so a sample never passes by luck).

After the last kill the daemon starts once more and drains. Then every produced message has
exactly one completed run of the per-message checkpoint (by journal key), every message of
the batch topic is in exactly one completed batch, nothing ran twice, the offsets are
committed to the end, and the database passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

from tests.e2e.harness import DaemonProcess, free_port, start_daemon, wait_for
from tests.kafka_broker import make_topic_name
from tests.reliability.kafkasupport import (
    KafkaFeeder,
    committed_offsets,
    covered,
    create_topic,
    journal_coverage,
    journal_stalled,
    read_only,
    uncovered_below,
)
from tests.reliability.support import integrity_check

PER_MESSAGE, BATCHES = "per_message", "batches"
PARTITIONS = 3
RATE = 150.0
"""Messages per second the producer aims for: well within what per-message runs sustain."""

BATCH_SIZE = 50

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 4
  graceful_shutdown_timeout: 10s
  on_crash: rerun
  log: {{format: json, level: info}}
kafka:
  bootstrap_servers: "{bootstrap}"
  group_id: "{group}"
  # A killed member leaves the group when its session expires: keep restarts quick.
  options: {{session_timeout_ms: 4000, heartbeat_interval_ms: 1000}}
checkpoints:
  - name: {per_message}
    overlap: allow
    data_source: {{type: inline, rows: [{{x: 1}}]}}
    validators:
      - {{type: row_count, min: 1}}
    triggers:
      - {{type: kafka, topic: "{singles}"}}
      - {{type: kafka, topic: "{mixed}"}}
  - name: {batches}
    overlap: allow
    data_source: {{type: kafka_batch, max_messages: {batch_size}, max_wait: 300ms,
                   dtypes: {{id: Int64, amount: Int64}}}}
    validators:
      - {{type: not_null, columns: [id, amount]}}
      - {{type: unique, columns: [id]}}
      - {{type: range, column: amount, min: 0, max: 999}}
    triggers:
      - {{type: kafka, topic: "{mixed}"}}
"""

RUN_KEYS = "SELECT DISTINCT checkpoint, journal_key FROM runs"
"""Each event with a stored run (a message key, or a batch key covering a range)."""

LOOPS = ("asyncio", "uvloop")
MOMENTS = ("consuming", "stalled", "starting", "joining", "stalled", "consuming")
"""When each cycle's kill comes (in turn, so even the CI scale sees every kind)."""
SEED = 20260307


class OffsetAudit:
    """Checks "no committed offset past the journal" against the broker and the state dir."""

    def __init__(
        self, bootstrap: str, group: str, consumers: dict[str, list[str]], state: Path
    ) -> None:
        self.bootstrap, self.group, self.state = bootstrap, group, state
        self.consumers = consumers
        """Topic -> the checkpoints that consume it."""
        self.checks = 0
        self.max_offsets_checked = 0

    def check(self, when: str) -> None:
        # Committed first, journal second: the journal only grows, so a later read of it
        # can only hold more, never hide a commit that ran ahead.
        committed = committed_offsets(self.bootstrap, self.group)
        coverage = {cp: journal_coverage(self.state, cp) for cp in (PER_MESSAGE, BATCHES)}
        for topic, checkpoints in self.consumers.items():
            mine = {tp: offset for tp, offset in committed.items() if tp[0] == topic}
            for checkpoint in checkpoints:
                gaps = uncovered_below(mine, coverage[checkpoint])
                assert gaps == {}, (
                    f"{when}: offsets committed past the {checkpoint} journal (partition: "
                    f"first missing offsets): { {tp: o[:5] for tp, o in gaps.items()} }; "
                    f"committed {mine}"
                )
        self.checks += 1
        self.max_offsets_checked = max(self.max_offsets_checked, sum(committed.values()))


def _journaled(state: Path) -> int:
    rows = read_only(state, "SELECT count(*) FROM journal WHERE checkpoint = ?", PER_MESSAGE)
    return int(rows[0][0]) if rows else 0


def _ran(state: Path) -> int:
    rows = read_only(state, "SELECT count(*) FROM runs WHERE checkpoint = ?", PER_MESSAGE)
    return int(rows[0][0]) if rows else 0


def _kill_at(
    moment: str,
    daemon: DaemonProcess,
    rng: random.Random,
    audit: OffsetAudit,
    feeder: KafkaFeeder,
) -> None:
    """SIGKILL at a random time within ``moment``: while it starts; just after it is ready
    (the group is still handing it partitions); once it consumes (often still the backlog
    of its downtime), after a random while spent sampling the invariant; or, once it has
    caught up, while its journal is stalled (the write lock held from outside: messages keep
    arriving, none can be journaled, so none may be committed)."""
    if moment == "starting":
        time.sleep(rng.uniform(0.0, 1.5))
    elif moment == "joining":
        _wait_ready(daemon)
        time.sleep(rng.uniform(0.0, 0.5))
    else:
        before = _journaled(audit.state)
        _wait_ready(daemon)
        wait_for(
            lambda: _journaled(audit.state) > before + 5,
            timeout=60,
            interval=0.1,
            what="the daemon consuming again",
        )
        if moment == "stalled":
            # Stalled while the backlog of its downtime still fills the run pool, the daemon
            # has every partition paused (backpressure) and consumes nothing: stall the
            # steady state instead, where messages are consumed and run as they arrive.
            produced = len(feeder.sent())
            wait_for(
                lambda: _ran(audit.state) >= produced,
                timeout=90,
                interval=0.1,
                what="the daemon catching up with the producer",
            )
        stall = journal_stalled(audit.state) if moment == "stalled" else contextlib.nullcontext()
        with stall:
            until = time.monotonic() + rng.uniform(0.5, 2.5)
            while time.monotonic() < until:
                audit.check(f"while {moment}")
                time.sleep(0.2)
            _sigkill(daemon)
        return
    _sigkill(daemon)


def _wait_ready(daemon: DaemonProcess) -> None:
    wait_for(lambda: daemon.proc.poll() is None and daemon.ready(), timeout=60, what="ready")


def _sigkill(daemon: DaemonProcess) -> None:
    assert daemon.proc.poll() is None, f"the daemon died by itself:\n{daemon.log()[-3000:]}"
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=30)


def test_no_offset_is_committed_past_the_journal_and_nothing_runs_twice_across_sigkills(
    kafka_bootstrap: str, tmp_path: Path, scale, figures
) -> None:
    rng = random.Random(SEED)
    singles, mixed = make_topic_name("crash-singles"), make_topic_name("crash-mixed")
    group = make_topic_name("crash-loop-group")
    for topic in (singles, mixed):
        create_topic(kafka_bootstrap, topic, PARTITIONS)
    state = tmp_path / "state"
    config = tmp_path / "checkpointd.yaml"
    config.write_text(
        CONFIG.format(
            state=state,
            bootstrap=kafka_bootstrap,
            group=group,
            singles=singles,
            mixed=mixed,
            per_message=PER_MESSAGE,
            batches=BATCHES,
            batch_size=BATCH_SIZE,
        )
    )
    port, log = free_port(), tmp_path / "daemon.log"
    audit = OffsetAudit(
        kafka_bootstrap, group, {singles: [PER_MESSAGE], mixed: [PER_MESSAGE, BATCHES]}, state
    )
    feeder = KafkaFeeder(kafka_bootstrap, [singles, mixed], PARTITIONS, rate=RATE, seed=SEED)
    feeder.start()
    moments: Counter[str] = Counter()
    try:
        for cycle in range(scale.crash_cycles):
            daemon = start_daemon(
                config, port=port, log_path=log, loop=LOOPS[cycle % 2], wait_ready=False
            )
            moment = MOMENTS[cycle % len(MOMENTS)]
            try:
                _kill_at(moment, daemon, rng, audit, feeder)
            finally:
                if daemon.proc.poll() is None:  # a failed check must not leave it running
                    daemon.kill9()
            moments[moment] += 1
            if (state / "checkpointd.sqlite3").exists():
                assert integrity_check(state) == "ok", f"after kill {cycle + 1}"
            audit.check(f"after kill {cycle + 1}")
    finally:
        fed = feeder.stop()

    # The final start drains: what was produced while it was down, and what the crashes
    # left half-done in the journal (on_crash: rerun).
    expected_keys = {f"kafka:{tp[0]}:{tp[1]}:{o}": ident for ident, (tp, o) in fed.items()}
    for_batches = {(tp, o) for tp, o in fed.values() if tp[0] == mixed}
    ends = Counter(tp for tp, _ in fed.values())
    daemon = start_daemon(config, port=port, log_path=log, loop=LOOPS[scale.crash_cycles % 2])
    try:

        def drained() -> bool:
            done = {PER_MESSAGE: 0, BATCHES: 0}
            for checkpoint, key in read_only(state, RUN_KEYS):
                done[checkpoint] += len(covered(key)[1])
            return done[PER_MESSAGE] >= len(fed) and done[BATCHES] >= len(for_batches)

        wait_for(drained, timeout=150, interval=0.5, what=f"runs of all {len(fed)} messages")
        wait_for(
            lambda: committed_offsets(kafka_bootstrap, group) == dict(ends),
            timeout=30,
            interval=0.5,
            what="offsets committed to the end of every partition",
        )
        audit.check("after the drain")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, daemon.log()[-3000:]
    finally:
        if daemon.proc.poll() is None:
            daemon.kill9()

    journal = read_only(state, "SELECT checkpoint, key, state, params FROM journal")
    runs = read_only(state, "SELECT checkpoint, journal_key, status, result FROM runs")
    single_journal = {
        key: (st, json.loads(params)) for cp, key, st, params in journal if cp == PER_MESSAGE
    }
    single_runs = Counter(key for cp, key, _, _ in runs if cp == PER_MESSAGE)
    single_status = Counter(status for cp, _, status, _ in runs if cp == PER_MESSAGE)
    batch_runs = [(key, st, json.loads(result)) for cp, key, st, result in runs if cp == BATCHES]
    batch_keys = Counter(key for key, _, _ in batch_runs)
    in_batches: Counter[tuple[tuple[str, int], int]] = Counter()
    for key, _, _ in batch_runs:
        tp, offsets = covered(key)
        in_batches.update((tp, o) for o in offsets)
    lost = sorted(set(expected_keys) - set(single_runs))
    lost_from_batches = sorted(for_batches - set(in_batches))
    duplicates = sorted(k for k, n in single_runs.items() if n > 1)
    duplicates += sorted(k for k, n in batch_keys.items() if n > 1)
    twice_in_batches = sorted(po for po, n in in_batches.items() if n > 1)
    recovered = sum(
        e.get("count", 0) for e in daemon.log_events() if e.get("event", "").startswith("recover")
    )
    figures["crash_cycles"] = scale.crash_cycles
    figures["kills_during_startup"] = moments["starting"]
    figures["kills_while_joining"] = moments["joining"]
    figures["kills_while_consuming"] = moments["consuming"]
    figures["kills_while_journal_stalled"] = moments["stalled"]
    figures["messages_produced"] = len(fed)
    figures["per_message_runs"] = sum(single_runs.values())
    figures["batch_runs"] = len(batch_runs)
    figures["messages_in_batches"] = sum(in_batches.values())
    figures["runs_recovered_after_crashes"] = recovered
    figures["offset_invariant_checks"] = audit.checks
    figures["max_offsets_checked"] = audit.max_offsets_checked
    figures["messages_lost"] = len(lost) + len(lost_from_batches)
    figures["duplicate_runs"] = len(duplicates) + len(twice_in_batches)

    assert lost == [], f"{len(lost)} messages never ran, e.g. {lost[:3]}"
    assert set(single_runs) == set(expected_keys), "runs of offsets that were never produced"
    assert duplicates == [], f"{len(duplicates)} events ran twice, e.g. {duplicates[:3]}"
    assert single_status == {"success": len(fed)}, single_status
    assert {st for st, _ in single_journal.values()} == {"done"}
    wrong = [k for k, ident in expected_keys.items() if single_journal[k][1]["id"] != str(ident)]
    assert wrong == [], f"journal rows whose message is not the one produced there: {wrong[:3]}"
    assert lost_from_batches == [], f"{len(lost_from_batches)} messages in no batch"
    assert set(in_batches) == for_batches, "batches cover offsets that were never produced"
    assert twice_in_batches == [], f"messages checked by two batches: {twice_in_batches[:3]}"
    for key, status, result in batch_runs:
        assert status == "success", (key, status, result.get("error"), result["validators"])
        assert int(result["trigger"]["count"]) == len(covered(key)[1]), (key, result["trigger"])
    assert integrity_check(state) == "ok"
