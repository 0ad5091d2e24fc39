"""An idle daemon holds neither polars nor aiokafka: each comes in when something needs it.

polars is ~25 MiB of RSS (and a thread pool), aiokafka ~3 MiB; a daemon that has
not run a checkpoint yet, or has no Kafka trigger, must not pay for them (the idle
RSS target of docs/benchmarks.md). Each check runs in a fresh interpreter, since
this one has imported everything long ago.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("polars", "aiokafka")

# The real command line (`checkpointd run -c FILE`) in a subprocess; a thread waits for
# /readyz, writes the imported top-level packages to OUT, and stops the daemon (SIGTERM).
DAEMON_SCRIPT = """
import json, os, signal, sys, threading, time, urllib.request
from checkpointd.cli import main

def report_when_ready():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:{port}/readyz", timeout=2):
                break
        except OSError:
            time.sleep(0.05)
    loaded = sorted({{name.split(".")[0] for name in sys.modules}})
    with open({out!r}, "w") as out:
        json.dump(loaded, out)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report_when_ready, daemon=True).start()
sys.exit(main(["run", "-c", {config!r}]))
"""

NO_KAFKA_TRIGGER = """\
daemon:
  state_dir: ./state
  log: {format: json, level: warning}
kafka: {bootstrap_servers: "127.0.0.1:9092"}
checkpoints:
  - name: orders
    data_source: {type: csv, path: orders.csv, dtypes: {amount: Float64, day: Date}}
    validators:
      - {type: not_null, columns: [id]}
      - {type: regex, column: email, pattern: "^[^@]+@[^@]+$"}
      - {type: schema, columns: {id: Int64, amount: Float64}}
    triggers:
      - {type: schedule, interval: 1h}
      - {type: file, directory: incoming, pattern: "*.csv"}
    actions:
      list:
        - {type: webhook, url: "http://127.0.0.1:9/hook", notify_on: failure}
  - name: inline_rows
    data_source: {type: inline, rows: [{id: 1}, {id: 2}]}
    validators: [{type: unique, columns: [id]}]
    triggers: [{type: schedule, cron: "0 * * * *"}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def packages_of_a_ready_daemon(config_text: str, tmp_path: Path) -> set[str]:
    config, out = tmp_path / "checkpointd.yaml", tmp_path / "modules.json"
    config.write_text(config_text)
    port = free_port()
    script = DAEMON_SCRIPT.format(port=port, out=str(out), config=str(config))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "CHECKPOINTD_HTTP_LISTEN": f"127.0.0.1:{port}"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(out.read_text()))


def packages_after(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + "\nimport sys\nprint(*sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {name.split(".")[0] for name in proc.stdout.split()}


def test_a_ready_daemon_without_kafka_triggers_has_imported_neither_polars_nor_aiokafka(
    tmp_path: Path,
) -> None:
    loaded = packages_of_a_ready_daemon(NO_KAFKA_TRIGGER, tmp_path)

    assert "aiohttp" in loaded  # the daemon really got as far as serving HTTP
    assert [name for name in HEAVY if name in loaded] == []


def test_building_a_checkpoint_does_not_import_polars_and_its_first_run_does() -> None:
    loaded = packages_after(
        """
        import sys
        from checkpointd import Checkpoint, Status

        checkpoint = Checkpoint.from_dict({
            "name": "rows",
            "data_source": {"type": "inline", "rows": [{"id": 1}, {"id": None}]},
            "validators": [{"type": "not_null", "columns": ["id"]}],
        })
        assert "polars" not in sys.modules
        result = checkpoint.run()
        assert result.status is Status.FAILURE, result
        assert result.validators[0].failed_count == 1
        """
    )

    assert "polars" in loaded


def test_the_kafka_hub_imports_aiokafka_only_once_a_kafka_trigger_attaches() -> None:
    # Nothing listens on port 9: the hub's connection fails, after importing aiokafka.
    loaded = packages_after(
        """
        import asyncio, sys
        from prometheus_client import CollectorRegistry
        from checkpointd.config.models import KafkaConfig, KafkaTrigger
        from checkpointd.triggers.kafka_metrics import KafkaMetrics
        from checkpointd.triggers.kafka import KafkaHub
        from checkpointd.triggers.kafka_source import KafkaSource

        class NoJournal:
            async def journaled(self, key, checkpoint):
                return False

            async def last_batch_offset(self, checkpoint, topic, partition):
                return None

        async def main():
            hub = KafkaHub(
                KafkaConfig(bootstrap_servers="127.0.0.1:9"),
                journal=NoJournal(),
                metrics=KafkaMetrics(CollectorRegistry()),
                max_backoff=0.1,
            )
            await hub.start()
            await asyncio.sleep(0.2)
            assert "aiokafka" not in sys.modules, "an idle hub imported aiokafka"
            source = KafkaSource("orders", 0, KafkaTrigger(type="kafka", topic="t"), hub=hub)
            async def emit(event):
                return True
            running = asyncio.create_task(source.run(emit))
            for _ in range(200):
                if "aiokafka" in sys.modules:
                    break
                await asyncio.sleep(0.05)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await hub.stop()

        asyncio.run(main())
        """
    )

    assert "aiokafka" in loaded
