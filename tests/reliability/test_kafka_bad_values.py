"""Bad Kafka values: binary, invalid UTF-8, 10 MB, 100,000 levels deep, not objects, tombstones,
huge keys, and valid objects that no DataFrame can hold.

One daemon watches one topic with two checkpoints, one run per message and one
``kafka_batch`` checkpoint, while a corpus of bad records is produced between good ones.
docs/kafka.md promises what happens:

- a value that is not one JSON object (UTF-8, at most ``max_message_bytes``, nested at most
  ``MAX_DEPTH`` levels) is *rejected*: counted by reason, sent to the dead-letter topic (or
  counted and logged as a failed send: the 10 MB values exceed the dead-letter producer's
  request size), logged, and skipped: its offset advances and it never reaches a run;
- a valid object is a run of the per-message checkpoint, whatever it holds, and a row of a
  batch; a row polars cannot hold (an id past Int64, a lone surrogate) makes *that batch's*
  run an error with a short, printable message, never a crash.

And around all that: every good message still has exactly one run and is in exactly one
batch, the committed offset reaches the end of the partition, the daemon keeps running with
bounded memory, and its metrics say what happened.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from checkpointd.triggers.kafka_decode import MAX_DEPTH
from tests.e2e.harness import DaemonProcess, run_daemon, wait_for
from tests.kafka_broker import make_topic_name
from tests.reliability.kafkasupport import (
    committed_offsets,
    covered,
    create_topic,
    produce,
    read_only,
    read_topic,
)
from tests.reliability.support import peak_rss_mib, rss_mib

MIB = 1024 * 1024
TOPIC_MAX_BYTES = 16 * MIB
"""The topics accept 16 MiB records (the broker's default is 1 MiB), so 10 MB values land."""

MAX_MESSAGE_BYTES = MIB
"""The daemon's ``kafka.max_message_bytes`` (its default): larger values are ``too_large``."""

MAX_PEAK_RSS_MIB = 600
"""The daemon's resident memory stays under this (it idles near 150 MiB; the corpus holds
about 30 MB of records)."""

MAX_ERROR_CHARS = 600
GOOD_BETWEEN = 3
"""Good messages produced before each bad one (and after the last)."""

PER_MESSAGE, BATCHES = "per_message", "batches"
RUNS = ("accepted", "breaks_batch")
"""Outcomes of valid objects: each is a run of the per-message checkpoint."""

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 4
  log: {{format: json, level: info}}
kafka:
  bootstrap_servers: "{bootstrap}"
  group_id: "{group}"
  max_message_bytes: {max_message_bytes}
  dead_letter_topic: "{dead_letters}"
checkpoints:
  - name: {per_message}
    overlap: allow
    data_source: {{type: inline, rows: [{{x: 1}}]}}
    validators:
      - {{type: row_count, min: 1}}
    triggers:
      - {{type: kafka, topic: "{topic}"}}
  - name: {batches}
    overlap: allow
    data_source: {{type: kafka_batch, max_messages: 10, max_wait: 300ms, dtypes: {{id: Int64}}}}
    validators:
      - {{type: not_null, columns: [id]}}
      - {{type: unique, columns: [id]}}
    triggers:
      - {{type: kafka, topic: "{topic}"}}
"""


@dataclass(frozen=True)
class Bad:
    """One bad record and what must become of it."""

    name: str
    value: bytes | None
    outcome: str
    """A rejection reason (``not_json``...), or ``accepted`` / ``breaks_batch`` for valid
    objects (a run of their own; ``breaks_batch``: their batch's run is an error)."""
    key: bytes = b"bad"


def _nested(depth: int, open_: bytes, close: bytes, inner: bytes = b"1") -> bytes:
    return open_ * depth + inner + close * depth


def corpus() -> list[Bad]:
    rng = random.Random(7)
    ten_mb = 10 * 1000 * 1000
    return [
        Bad("random_binary_64k", rng.randbytes(64 * 1024), "not_json"),
        Bad("invalid_utf8", b'{"id": 1, "name": "\xff\xfe\xfa"}', "not_json"),
        Bad("truncated_utf8", b'{"id": 1, "name": "\xe2\x82"}', "not_json"),
        Bad("truncated_json", b'{"id": 1, "name": "never closed', "not_json"),
        Bad("binary_10mb", rng.randbytes(ten_mb), "too_large"),
        Bad("json_object_10mb", json.dumps({"id": 1, "pad": "x" * ten_mb}).encode(), "too_large"),
        Bad("unclosed_lists_100k_deep", b"[" * 100_000, "not_json"),
        Bad("lists_100k_deep", _nested(100_000, b"[", b"]"), "not_json"),
        Bad("objects_100k_deep", _nested(100_000, b'{"a":', b"}"), "not_json"),
        Bad(
            "lists_500_deep_in_object",
            b'{"id": -9, "deep": ' + _nested(499, b"[", b"]") + b"}",
            "not_json",
        ),
        Bad("objects_past_max_depth", _nested(MAX_DEPTH + 1, b'{"a":', b"}"), "not_json"),
        Bad(
            "objects_at_max_depth",
            b'{"id": -10, "deep": ' + _nested(MAX_DEPTH - 1, b'{"a":', b"}") + b"}",
            "accepted",
        ),
        Bad("json_list", b"[1, 2, 3]", "not_object"),
        Bad("json_string", b'"just a string"', "not_object"),
        Bad("json_number", b"42", "not_object"),
        Bad("json_null", b"null", "not_object"),
        Bad("tombstone", None, "no_value"),
        Bad("empty_value", b"", "no_value"),
        # max_message_bytes counts key and value together: a key is kept whole as
        # {trigger.key} (the journal row, the stored run, API answers).
        Bad("key_1mib", b'{"id": -1}', "too_large", key=b"k" * MIB),
        Bad("key_10mb", b'{"id": -2}', "too_large", key=b"k" * ten_mb),
        # Valid objects: a run each; the batch decides what it can hold.
        Bad("binary_key", b'{"id": -3}', "accepted", key=rng.randbytes(4096)),
        Bad(
            "value_just_under_limit",
            json.dumps({"id": -4, "pad": "x" * (MIB - 64)}).encode(),
            "accepted",
        ),
        Bad("nan_and_infinity", b'{"id": -5, "x": NaN, "y": -Infinity}', "accepted"),
        Bad("nul_in_string", b'{"id": -6, "s": "a\\u0000b"}', "accepted"),
        Bad(
            "fields_10k",
            json.dumps({"id": -7, **{f"f{i}": i for i in range(10_000)}}).encode(),
            "accepted",
        ),
        Bad("id_past_int64", b'{"id": 123456789012345678901234567890}', "breaks_batch"),
        Bad("lone_surrogate", b'{"id": -8, "s": "\\ud800"}', "breaks_batch"),
        Bad("id_is_a_list", b'{"id": [1, 2]}', "breaks_batch"),
    ]


def good(i: int) -> bytes:
    return json.dumps({"id": i, "amount": i % 100}).encode()


class RssSampler(threading.Thread):
    """Samples the daemon's resident memory every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append(rss_mib(self.pid))
            except (OSError, KeyError):
                return  # the process is gone
            self._stop_event.wait(self.interval)

    def stop(self) -> list[float]:
        self._stop_event.set()
        self.join(timeout=10)
        return self.samples


def _assert_clear(message: str | None, what: str) -> None:
    assert message, f"{what}: an error without a message"
    assert message.isprintable(), f"{what}: binary or control characters: {message[:200]!r}"
    assert len(message) <= MAX_ERROR_CHARS, f"{what}: a wall of text ({len(message)} chars)"


def _metric(daemon: DaemonProcess, name: str, **labels: str) -> float:
    return daemon.metric(name, **labels) or 0.0


def test_bad_values_are_rejected_or_fail_their_batch_and_good_ones_still_run(
    kafka_bootstrap: str, tmp_path: Path, figures
) -> None:
    topic, dead_letters = make_topic_name("bad-values"), make_topic_name("bad-values-dlq")
    group, state = make_topic_name("bad-values-group"), tmp_path / "state"
    for name in (topic, dead_letters):
        create_topic(kafka_bootstrap, name, 1, {"max.message.bytes": str(TOPIC_MAX_BYTES)})
    bad = corpus()
    rejected_reasons = Counter(b.outcome for b in bad if b.outcome not in RUNS)
    text = CONFIG.format(
        state=state,
        bootstrap=kafka_bootstrap,
        group=group,
        topic=topic,
        dead_letters=dead_letters,
        max_message_bytes=MAX_MESSAGE_BYTES,
        per_message=PER_MESSAGE,
        batches=BATCHES,
    )
    with run_daemon(text, tmp_path, loop="uvloop") as daemon:
        sampler = RssSampler(daemon.proc.pid)
        sampler.start()
        messages: list[tuple[bytes | None, bytes | None]] = []
        kinds: list[Bad | None] = []  # per offset: the bad record, or None for a good one
        n = 0
        for record in [*bad, None]:
            for _ in range(GOOD_BETWEEN):
                messages.append((str(n).encode(), good(n)))
                kinds.append(None)
                n += 1
            if record is not None:
                messages.append((record.key, record.value))
                kinds.append(record)
        began = time.monotonic()
        sent = produce(kafka_bootstrap, topic, messages, max_request_size=TOPIC_MAX_BYTES + MIB)
        assert [s.offset for s in sent] == list(range(len(messages)))
        runs_expected = sum(1 for k in kinds if k is None or k.outcome in RUNS)

        def per_message_runs() -> int:
            rows = read_only(state, "SELECT count(*) FROM runs WHERE checkpoint = ?", PER_MESSAGE)
            return int(rows[0][0]) if rows else 0

        wait_for(
            lambda: per_message_runs() >= runs_expected,
            timeout=120,
            interval=0.5,
            what=f"{runs_expected} per-message runs",
        )
        wait_for(
            lambda: committed_offsets(kafka_bootstrap, group).get((topic, 0)) == len(messages),
            timeout=60,
            interval=0.5,
            what="the offset committed past every record",
        )
        wait_for(
            lambda: (
                sum(
                    _metric(daemon, "checkpointd_kafka_dead_letters_total", outcome=o)
                    for o in ("sent", "failed")
                )
                == sum(rejected_reasons.values())
            ),
            what="every rejected record's dead-letter send finished",
        )
        settled_in = time.monotonic() - began
        alive = daemon.proc.poll() is None
        healthy = daemon.get("/healthz").status
        rejected = {
            reason: _metric(daemon, "checkpointd_kafka_messages_rejected_total", reason=reason)
            for reason in ("too_large", "no_value", "not_json", "not_object")
        }
        consumed = _metric(daemon, "checkpointd_kafka_messages_total", topic=topic)
        dlq_sent = _metric(daemon, "checkpointd_kafka_dead_letters_total", outcome="sent")
        dlq_failed = _metric(daemon, "checkpointd_kafka_dead_letters_total", outcome="failed")
        peak = peak_rss_mib(daemon.proc.pid)
        samples = sampler.stop()
        logged = daemon.log_events()

    bad_at = {o: k for o, k in enumerate(kinds) if k is not None}
    good_offsets = set(range(len(kinds))) - set(bad_at)
    run_offsets = {o for o in range(len(kinds)) if o in good_offsets or bad_at[o].outcome in RUNS}
    rejected_offsets = set(bad_at) - run_offsets
    runs = read_only(state, "SELECT checkpoint, journal_key, status, result FROM runs")
    single = Counter(covered(key)[1][0] for cp, key, _, _ in runs if cp == PER_MESSAGE)
    single_status = Counter(st for cp, _, st, _ in runs if cp == PER_MESSAGE)
    batch_runs = [(covered(key)[1], st, json.loads(r)) for cp, key, st, r in runs if cp == BATCHES]
    in_batches: Counter[int] = Counter()
    for span, _, _ in batch_runs:
        in_batches.update(o for o in span if o in run_offsets)
    letters = read_topic(kafka_bootstrap, dead_letters, int(dlq_sent))
    letter_headers = [{k: v.decode() for k, v in r.headers} for r in letters]
    letter_sources = Counter(h["checkpointd-source"] for h in letter_headers)
    letter_reasons = {
        int(h["checkpointd-source"].rsplit(":", 1)[1]): h["checkpointd-reason"]
        for h in letter_headers
    }
    skipped = [e for e in logged if e.get("event") == "malformed kafka message skipped"]
    skipped_logs = Counter(e.get("reason") for e in skipped)
    send_failures = [e for e in logged if e.get("event", "").startswith("dead-letter send failed")]
    figures["bad_values_tried"] = len(bad)
    figures["good_messages"] = len(good_offsets)
    figures["rejected_by_reason"] = {k: int(v) for k, v in rejected.items()}
    figures["dead_letters_sent"] = int(dlq_sent)
    figures["dead_letters_failed"] = int(dlq_failed)
    figures["accepted_odd_values"] = sum(1 for b in bad if b.outcome == "accepted")
    figures["batches_in_error"] = sum(1 for _, st, _ in batch_runs if st == "error")
    figures["daemon_peak_rss_mib"] = round(peak, 1)
    figures["daemon_rss_mib_range"] = [round(min(samples), 1), round(max(samples), 1)]
    figures["seconds_to_settle"] = round(settled_in, 1)

    assert alive, "the daemon died"
    assert healthy == 200
    assert peak < MAX_PEAK_RSS_MIB, f"peak RSS {peak:.0f} MiB"
    # Rejections: counted by reason, dead-lettered or counted as failed sends, logged.
    assert rejected == {r: float(rejected_reasons.get(r, 0)) for r in rejected}, rejected
    assert consumed == len(messages)
    assert dlq_sent + dlq_failed == len(rejected_offsets)
    assert len(letters) == dlq_sent, "the dead-letter topic does not hold what was counted sent"
    assert max(letter_sources.values()) == 1, "a record was dead-lettered twice"
    assert set(letter_reasons) <= rejected_offsets, "a good record was dead-lettered"
    for offset, reason in letter_reasons.items():
        assert reason == bad_at[offset].outcome, (bad_at[offset].name, reason)
    assert set(skipped_logs) == set(rejected_reasons), skipped_logs
    assert len(send_failures) == dlq_failed, "a failed dead-letter send was not logged"
    # Runs: one per valid object, none for a rejected record.
    assert set(single) == run_offsets, sorted(set(single) ^ run_offsets)[:5]
    assert max(single.values()) == 1, "a message ran twice"
    assert single_status == {"success": len(run_offsets)}, single_status
    # Batches: every valid object in exactly one; an error only where a row breaks it.
    assert set(in_batches) == run_offsets
    assert max(in_batches.values()) == 1
    for span, status, result in batch_runs:
        breakers = [
            bad_at[o].name for o in span if o in bad_at and bad_at[o].outcome == "breaks_batch"
        ]
        held = [o for o in span if o in run_offsets]
        assert int(result["trigger"]["count"]) == len(held), (span, result["trigger"])
        if breakers:
            assert status == "error", (breakers, status)
            _assert_clear(result["error"], f"batch with {breakers}")
        else:
            assert status == "success", (span, status, result.get("error"))
