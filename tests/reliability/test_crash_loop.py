"""Crash loop: files keep landing while the daemon is SIGKILLed at random moments.

After the last kill the daemon starts once more and drains. Then every file that landed must
have been accepted exactly once (one journal row per idempotency key), every accepted event
must have exactly one completed run with the verdict its content deserves, and the SQLite
database must pass ``PRAGMA integrity_check`` after every kill.

(The Kafka half of this scenario, "no offset committed past the journal", comes with the
Kafka trigger.)
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

from tests.e2e.harness import DaemonProcess, free_port, query_state, start_daemon, wait_for
from tests.reliability.support import FileFeeder, integrity_check

CHECKPOINT = "landing"

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 2
  graceful_shutdown_timeout: 10s
  on_crash: rerun
  log: {{format: json, level: info}}
checkpoints:
  - name: {checkpoint}
    data_source: {{type: csv, path: "{{trigger.path}}"}}
    validators:
      - {{type: not_null, columns: [id]}}
      - {{type: unique, columns: [id]}}
    triggers:
      - {{type: file, directory: {incoming}, pattern: "*.csv", stable_for: 150ms,
          poll_interval: 50ms}}
"""

LOOPS = ("asyncio", "uvloop")
SEED = 20260301


def _kill_at_random(daemon: DaemonProcess, rng: random.Random) -> str:
    """SIGKILL now-ish: during start-up one time in four, otherwise while it works."""
    if rng.random() < 0.25:
        time.sleep(rng.uniform(0.0, 1.2))
        moment = "starting"
    else:
        wait_for(lambda: daemon.proc.poll() is None and daemon.ready(), timeout=60, what="ready")
        time.sleep(rng.uniform(0.2, 2.5))
        moment = "running"
    assert daemon.proc.poll() is None, f"the daemon died by itself:\n{daemon.log()[-3000:]}"
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=30)
    return moment


def test_no_event_is_lost_or_run_twice_across_random_sigkills(tmp_path: Path, scale, figures):
    rng = random.Random(SEED)
    state, incoming, staging = tmp_path / "state", tmp_path / "incoming", tmp_path / "staging"
    incoming.mkdir()
    staging.mkdir()
    config = tmp_path / "checkpointd.yaml"
    config.write_text(CONFIG.format(state=state, incoming=incoming, checkpoint=CHECKPOINT))
    port, log = free_port(), tmp_path / "daemon.log"
    feeder = FileFeeder(incoming, staging, interval=0.04, seed=SEED)
    feeder.start()
    moments: Counter[str] = Counter()
    try:
        for cycle in range(scale.crash_cycles):
            daemon = start_daemon(
                config, port=port, log_path=log, loop=LOOPS[cycle % 2], wait_ready=False
            )
            moments[_kill_at_random(daemon, rng)] += 1
            if state.joinpath("checkpointd.sqlite3").exists():
                assert integrity_check(state) == "ok", f"after kill {cycle + 1}"
    finally:
        fed = feeder.stop()

    # The final start drains everything: what landed while it was down, and what the
    # crashes left half-done in the journal.
    daemon = start_daemon(config, port=port, log_path=log)
    try:

        def all_ran() -> bool:
            done = query_state(state, "SELECT count(DISTINCT journal_key) FROM runs")[0][0]
            return bool(done >= len(fed))

        wait_for(all_ran, timeout=120, interval=0.5, what=f"runs of all {len(fed)} files")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, daemon.log()[-3000:]
    finally:
        if daemon.proc.poll() is None:
            daemon.kill9()

    journal = query_state(state, "SELECT key, state FROM journal WHERE checkpoint = ?", CHECKPOINT)
    runs = query_state(
        state, "SELECT journal_key, status FROM runs WHERE checkpoint = ?", CHECKPOINT
    )
    accepted = Counter(key for key, _ in journal)
    runs_per_key = Counter(key for key, _ in runs)
    status_of = {key: status for key, status in runs}
    expected = {f.key: f.expected for f in fed}
    lost = sorted(set(expected) - set(accepted))
    duplicates = sorted(key for key, n in runs_per_key.items() if n > 1)
    recovered = sum(
        e.get("count", 0) for e in daemon.log_events() if e.get("event", "").startswith("recover")
    )
    figures["crash_cycles"] = scale.crash_cycles
    figures["kills_during_startup"] = moments["starting"]
    figures["kills_while_running"] = moments["running"]
    figures["files_landed"] = len(fed)
    figures["events_accepted"] = len(accepted)
    figures["runs_recovered_after_crashes"] = recovered
    figures["events_lost"] = len(lost)
    figures["duplicate_runs"] = len(duplicates)

    assert lost == [], f"{len(lost)} landed files were never accepted, e.g. {lost[:3]}"
    assert set(accepted) == set(expected), "the journal holds keys of files that never landed"
    assert max(accepted.values()) == 1, "the journal accepted one key twice"
    assert duplicates == [], f"{len(duplicates)} events ran twice, e.g. {duplicates[:3]}"
    assert set(runs_per_key) == set(accepted), "some accepted events have no run"
    assert {s for _, s in journal} == {"done"}, Counter(s for _, s in journal)
    wrong = {k: (status_of[k], v) for k, v in expected.items() if status_of[k] != v}
    assert wrong == {}, f"runs with the wrong verdict (got, expected): {list(wrong.items())[:3]}"
    assert integrity_check(state) == "ok"
