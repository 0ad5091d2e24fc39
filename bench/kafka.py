"""Workload 5, Kafka on a real broker: wraps ``bench/kafka_throughput.py`` when it exists.

That script measures sustained msg/s and message-to-run-start
latency against the broker that ``scripts/kafka-broker`` starts. It is run as
``python bench/kafka_throughput.py --json OUT`` (the convention of the other bench
scripts); its JSON is stored as is under ``measured``. Without the script, or when it
fails, the result says so and the targets read "not yet measured".
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.common import BENCH, ROOT, Settings, Target, log, write_result

WORKLOAD = "kafka"
SCRIPT = BENCH / "kafka_throughput.py"


def run(settings: Settings) -> dict[str, Any]:
    measured: dict[str, Any] | None = None
    status = "not yet measured: bench/kafka_throughput.py does not exist yet"
    if SCRIPT.exists():
        out = settings.workdir / "kafka.json"
        argv = [settings.python, str(SCRIPT), "--json", str(out)]
        if settings.quick:
            argv.append("--quick")
        log(f"{WORKLOAD}: {' '.join(argv)}")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=ROOT)
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
    if measured is None:
        return [
            Target("Kafka sustained throughput", "≥ 5,000 msg/s", "not yet measured", None),
            Target(
                "Kafka p99 message-to-run-start at 1,000 msg/s",
                "< 100 ms",
                "not yet measured",
                None,
            ),
        ]
    rate = _find(measured, ("sustained_msg_per_s", "msg_per_s", "messages_per_second"))
    p99 = _find(measured, ("p99_ms", "latency_p99_ms", "message_to_run_start_p99_ms"))
    return [
        Target(
            "Kafka sustained throughput",
            "≥ 5,000 msg/s",
            f"{rate:,.0f} msg/s" if rate is not None else "see kafka.json",
            rate >= 5000 if rate is not None else None,
        ),
        Target(
            "Kafka p99 message-to-run-start at 1,000 msg/s",
            "< 100 ms",
            f"{p99:.1f} ms" if p99 is not None else "see kafka.json",
            p99 < 100 if p99 is not None else None,
        ),
    ]


def _find(data: Any, names: tuple[str, ...]) -> float | None:
    """The first number stored under one of ``names``, anywhere in ``data``."""
    if isinstance(data, dict):
        for name in names:
            if isinstance(data.get(name), int | float):
                return float(data[name])
        for value in data.values():
            found = _find(value, names)
            if found is not None:
                return found
    return None


def main(settings: Settings) -> Path:
    return write_result(WORKLOAD, settings, run(settings))
