"""Daemon settings a reload applies without a restart: the run pool's size and watching
the config file."""

from __future__ import annotations

import threading
import time

from tests.e2e.datagen import SLOW_VALIDATORS, write_ids_csv
from tests.e2e.harness import DaemonProcess, run_daemon, wait_for

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: {slots}
  watch_config: {watch}
  log: {{format: json, level: info}}
checkpoints:
  - name: slow
    data_source: {{type: csv, path: {data}}}
    overlap: allow
    validators:
{validators}
    triggers:
      - {{type: manual}}
{extra}"""

EXTRA = """
  - name: {name}
    data_source: {{type: csv, path: {data}}}
    validators:
      - {{type: not_null, columns: [id]}}
"""


def _post_in_background(daemon: DaemonProcess, count: int) -> list[threading.Thread]:
    """POST ``count`` manual runs of ``slow`` at once (a POST waits while the pool is full)."""
    threads = [threading.Thread(target=daemon.post_run, args=("slow",)) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _most_running(daemon: DaemonProcess, threads: list[threading.Thread]) -> int:
    """The most runs of ``slow`` seen running at once until every POST returned and every
    run ended."""
    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = int(daemon.checkpoints()["slow"]["running"])
        most = max(most, running)
        if running == 0 and not any(t.is_alive() for t in threads):
            return most
        time.sleep(0.02)
    raise AssertionError("the runs did not end within 120 s")


def test_a_reload_resizes_the_run_pool(tmp_path, slow_csv):
    state = tmp_path / "state"

    def config(slots: int) -> str:
        return CONFIG.format(
            state=state,
            slots=slots,
            watch="false",
            data=slow_csv,
            validators=SLOW_VALIDATORS,
            extra="",
        )

    with run_daemon(config(1), tmp_path) as daemon:
        assert _most_running(daemon, _post_in_background(daemon, 3)) == 1

        daemon.config_path.write_text(config(3))
        answer = daemon.post("/-/reload")
        assert answer.status == 200, answer.body
        assert daemon.metric("checkpointd_pool_slots") == 3.0
        assert _most_running(daemon, _post_in_background(daemon, 4)) == 3

        daemon.config_path.write_text(config(2))
        assert daemon.post("/-/reload").status == 200
        assert daemon.metric("checkpointd_pool_slots") == 2.0
        assert _most_running(daemon, _post_in_background(daemon, 4)) == 2
        assert "take effect at the next restart" not in daemon.log()


def test_a_reload_turns_watching_the_config_file_on_and_off(tmp_path):
    state = tmp_path / "state"
    data = write_ids_csv(tmp_path / "ids.csv", [1, 2, 3])

    def config(watch: str, *extra: str) -> str:
        return CONFIG.format(
            state=state,
            slots=2,
            watch=watch,
            data=data,
            validators="      - {type: not_null, columns: [id]}",
            extra="".join(EXTRA.format(name=name, data=data) for name in extra),
        )

    def reloads() -> float:
        return daemon.metric("checkpointd_config_reloads_total", result="success") or 0.0

    with run_daemon(config("false"), tmp_path) as daemon:
        # Turned on by an explicit reload: from now on an edit is enough.
        daemon.config_path.write_text(config("true"))
        assert daemon.post("/-/reload").status == 200
        daemon.config_path.write_text(config("true", "fresh"))
        wait_for(lambda: "fresh" in daemon.checkpoints(), what="the edit picked up by itself")

        # Turned off by an edit the watcher itself reloads.
        before = reloads()
        daemon.config_path.write_text(config("false", "fresh"))
        wait_for(lambda: reloads() == before + 1, what="the watcher's last reload")

        daemon.config_path.write_text(config("false", "fresh", "later"))
        time.sleep(3.5)  # three watch intervals: a watcher still running would have reloaded
        assert "later" not in daemon.checkpoints()
        assert reloads() == before + 1
        # The watcher ended without the daemon taking it for a crashed task.
        assert daemon.ready()
        assert daemon.proc.poll() is None
        assert "critical task ended" not in daemon.log()


def test_a_reload_that_sets_retention_sweeps_at_once(tmp_path):
    state = tmp_path / "state"
    data = write_ids_csv(tmp_path / "ids.csv", [1, 2, 3])
    base = CONFIG.format(
        state=state,
        slots=2,
        watch="false",
        data=data,
        validators="      - {type: not_null, columns: [id]}",
        extra="",
    )
    with run_daemon(base, tmp_path) as daemon:
        for _ in range(5):
            daemon.post_run("slow")
        wait_for(lambda: len(daemon.runs(checkpoint="slow")) == 5, what="five runs recorded")

        daemon.config_path.write_text(
            base.replace(
                "  watch_config: false\n",
                "  watch_config: false\n  retention: {max_runs_per_checkpoint: 2}\n",
            )
        )
        answer = daemon.post("/-/reload")
        assert answer.status == 200, answer.body
        # Not at the next ten-minute sweep: now.
        wait_for(lambda: len(daemon.runs(checkpoint="slow")) == 2, timeout=20, what="the sweep")
