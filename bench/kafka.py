"""Workload 5, Kafka on a real broker: each mode measured on its own, with its config.

``bench/kafka_throughput.py`` (run as ``python bench/kafka_throughput.py --json OUT
--repeat N``) measures, against the broker ``scripts/kafka-broker`` starts:

- **per_message**: one run per message (an ``inline`` data source): each message is
  journaled, run, stored and committed on its own.
- **kafka_batch** (``max_messages: 1000, max_wait: 200ms``), **kafka_batch_50ms** and
  **kafka_batch_20ms** (``max_wait`` 50 ms or 20 ms, low-latency choices): the messages
  are the data, one run per batch of one partition's messages.
- **plain_aiokafka**: a bare consumer reading the same topic, no processing (the limit).

Throughput is over a pre-filled topic (the first 5% is the warm-up); latency is
message-to-run-start at a fixed produce rate, with ``to_emit`` the trigger's share
(until the event is handed to the journal; the rest is the journal commit and the wait
for a run slot). Each target row below names the mode and config it was measured
with: a batch mode meeting a target says nothing about one run per message.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.common import BENCH, ROOT, Settings, Target, log, write_result

WORKLOAD = "kafka"
SCRIPT = BENCH / "kafka_throughput.py"

RATE_GOAL = 5000.0
P99_GOAL_MS = 100.0

# (measured case, how the target row names it)
THROUGHPUT_ROWS = (
    ("per_message", "one run per message"),
    ("kafka_batch", "kafka_batch, max_messages 1000, max_wait 200ms"),
)
LATENCY_ROWS = (
    ("per_message_1000", "one run per message"),
    ("kafka_batch_50ms_1000", "kafka_batch, max_messages 1000, max_wait 50ms"),
    ("kafka_batch_20ms_1000", "kafka_batch, max_messages 1000, max_wait 20ms"),
)


def run(settings: Settings) -> dict[str, Any]:
    measured: dict[str, Any] | None = None
    status = "not yet measured: bench/kafka_throughput.py does not exist"
    if SCRIPT.exists():
        out = settings.workdir / "kafka.json"
        argv = [settings.python, str(SCRIPT), "--json", str(out), "--repeat", str(settings.repeat)]
        if settings.quick:
            argv.append("--quick")
        log(f"{WORKLOAD}: {' '.join(argv)}")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, cwd=ROOT)
        if proc.returncode == 0 and out.exists():
            measured = json.loads(out.read_text())
            status = "measured"
        else:
            status = f"not measured: the script exited {proc.returncode}: {proc.stderr[-500:]}"
    return {
        "description": __doc__,
        "status": status,
        "measured": measured,
        "targets": [t.as_dict() for t in targets(measured)],
    }


def targets(measured: dict[str, Any] | None) -> list[Target]:
    """One row per (target, mode): which mode and config met what, and which did not."""
    rows: list[Target] = []
    throughput = (measured or {}).get("throughput", {})
    latency = (measured or {}).get("latency", {})
    for case, said in THROUGHPUT_ROWS:
        rate = _number(throughput.get(case), "msg_per_s")
        rows.append(
            Target(
                f"Kafka sustained throughput ({said})",
                f"≥ {RATE_GOAL:,.0f} msg/s",
                _shown(throughput.get(case), "msg_per_s", "{:,.0f}", "msg/s"),
                rate >= RATE_GOAL if rate is not None else None,
            )
        )
    for case, said in LATENCY_ROWS:
        p99 = _number(latency.get(case), "p99_ms")
        rows.append(
            Target(
                f"Kafka p99 message-to-run-start at 1,000 msg/s ({said})",
                f"< {P99_GOAL_MS:.0f} ms",
                _shown(latency.get(case), "p99_ms", "{:,.1f}", "ms"),
                p99 < P99_GOAL_MS if p99 is not None else None,
            )
        )
    return rows


def _number(entry: Any, name: str) -> float | None:
    if isinstance(entry, dict) and isinstance(entry.get(name), int | float):
        return float(entry[name])
    return None


def _shown(entry: Any, name: str, form: str, unit: str) -> str:
    """The median, and the spread of the repetitions when there are several."""
    median = _number(entry, name)
    if median is None:
        return "not yet measured"
    reps = [r[name] for r in entry.get("repetitions", []) if isinstance(r.get(name), int | float)]
    text = f"{form.format(median)} {unit}"
    if len(reps) > 1:
        spread = f"{form.format(min(reps))}–{form.format(max(reps))}"
        text += f" (median of {len(reps)}: {spread})"
    return text


def main(settings: Settings) -> Path:
    return write_result(WORKLOAD, settings, run(settings))
