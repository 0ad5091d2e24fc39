"""Stopping with runs in flight: a SIGTERM drain, and a kill -9; nothing accepted is lost.

The state dir's SQLite is read directly (tables: daemon/schema.py): the journal
row of every accepted event, and the runs recorded against its key.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.e2e.datagen import SLOW_VALIDATORS
from tests.e2e.harness import DaemonProcess, query_state, run_daemon, wait_for

GRACE_SECONDS = 2

# Show every ResourceWarning (unclosed sockets, files, transports) on stderr.
_WARNINGS = {"PYTHONWARNINGS": "always::ResourceWarning"}

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: {slots}
  graceful_shutdown_timeout: {grace}s
  on_crash: rerun
  log: {{format: json, level: info}}
checkpoints:
  - name: slow
    data_source: {{type: csv, path: {data}}}
    overlap: allow
    timeout: 10m
    validators:
{validators}
    triggers:
      - {{type: manual}}
"""


def _config(tmp_path: Path, slow_csv: Path, slots: int) -> tuple[str, Path]:
    # The data is a symlink, so the test can make re-runs quick by pointing it elsewhere.
    data = tmp_path / "data.csv"
    data.symlink_to(slow_csv)
    text = CONFIG.format(
        state=tmp_path / "state",
        slots=slots,
        grace=GRACE_SECONDS,
        data=data,
        validators=SLOW_VALIDATORS,
    )
    return text, data


def _make_runs_quick(data: Path, tmp_path: Path) -> None:
    """Point the data at the slow data's columns with two rows: the same validators pass
    in milliseconds."""
    quick = tmp_path / "quick.csv"
    quick.write_text("id,amount,email\n1,7,user1@example.com\n2,14,user2@example.com\n")
    data.unlink()
    data.symlink_to(quick)


def _journal(state: Path) -> dict[str, str]:
    return dict(query_state(state, "SELECT key, state FROM journal"))


def _runs_by_key(state: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, status in query_state(state, "SELECT journal_key, status FROM runs ORDER BY seq"):
        out.setdefault(key, []).append(status)
    return out


def _in_flight(daemon: DaemonProcess) -> float:
    return daemon.metric("checkpointd_runs_in_flight") or 0.0


def test_sigterm_with_20_runs_in_flight_drains_in_the_grace_time_and_a_restart_reruns_the_rest(
    tmp_path, slow_csv
):
    state = tmp_path / "state"
    text, data = _config(tmp_path, slow_csv, slots=20)
    with run_daemon(text, tmp_path, loop="uvloop", env=_WARNINGS) as daemon:
        keys = {f"manual:{daemon.post_run('slow')}" for _ in range(20)}
        wait_for(lambda: _in_flight(daemon) == 20, timeout=120, what="20 runs in flight")

        stop_asked = time.monotonic()
        daemon.signal(signal.SIGTERM)
        # Not ready from the moment the signal lands, while the drain still runs.
        wait_for(
            lambda: daemon.get("/readyz", timeout=2).status == 503,
            what="/readyz turning 503 during the drain",
        )
        assert daemon.proc.poll() is None, "the drain ended before /readyz was seen failing"
        assert daemon.post("/api/v1/checkpoints/slow/runs").status == 503  # no new runs
        # Exits with 0 within the grace time, plus slack for cancelling, the last store
        # flush and exiting (busy run threads are not waited for: they cannot be stopped).
        assert daemon.wait(timeout=GRACE_SECONDS + 3) == 0
        drained_in = time.monotonic() - stop_asked

        log = daemon.log()
        for bad in ("Task was destroyed", "Unclosed", "ResourceWarning", "Traceback"):
            assert bad not in log, f"{bad!r} in the daemon's output:\n{log[-3000:]}"

        # Every accepted run either completed or is journaled interrupted.
        journal = _journal(state)
        assert set(journal) == keys
        assert set(journal.values()) <= {"done", "interrupted"}, journal
        interrupted = {k for k, s in journal.items() if s == "interrupted"}
        assert interrupted, f"all 20 runs finished within the {drained_in:.1f}s drain"
        runs = _runs_by_key(state)
        for key in keys:
            assert runs[key] == (["cancelled"] if key in interrupted else ["success"]), key

        # Restart: the interrupted runs are run again (daemon.on_crash: rerun).
        _make_runs_quick(data, tmp_path)
        again = daemon.restart()
        try:
            wait_for(lambda: set(_journal(state).values()) == {"done"}, what="every run re-run")
            runs = _runs_by_key(state)
            for key in keys:
                expected = ["cancelled", "success"] if key in interrupted else ["success"]
                assert runs[key] == expected, key
            assert again.metric("checkpointd_recovered_runs_total") == float(len(interrupted))
        finally:
            again.signal(signal.SIGTERM)
            assert again.wait(timeout=30) == 0


def test_kill_9_with_runs_in_flight_then_restart_gives_each_accepted_event_one_completed_run(
    tmp_path, slow_csv
):
    state = tmp_path / "state"
    text, data = _config(tmp_path, slow_csv, slots=3)
    with run_daemon(text, tmp_path, loop="asyncio") as daemon:
        keys = {f"manual:{daemon.post_run('slow')}" for _ in range(8)}
        wait_for(lambda: _in_flight(daemon) == 3, what="3 runs in flight")
        daemon.kill9()

        journal = _journal(state)
        assert set(journal) == keys  # every accepted event was journaled before the 202
        unfinished = {k for k, s in journal.items() if s in ("accepted", "running")}
        assert unfinished, journal

        _make_runs_quick(data, tmp_path)
        again = daemon.restart()
        try:
            wait_for(lambda: set(_journal(state).values()) == {"done"}, what="every event done")
            runs = _runs_by_key(state)
            assert set(runs) == keys
            for key in keys:
                assert runs[key] == ["success"], (key, runs[key])
        finally:
            again.signal(signal.SIGTERM)
            assert again.wait(timeout=30) == 0
