"""Interval schedules seen from outside: on-time fires, and catch-up after downtime."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta

import pytest

from tests.e2e.datagen import write_ids_csv
from tests.e2e.harness import DaemonProcess, query_state, run_daemon, wait_for

INTERVAL = timedelta(seconds=1)

CONFIG = """
daemon:
  state_dir: {state}
  graceful_shutdown_timeout: 10s
  log: {{format: json, level: info}}
checkpoints:
  - name: ticker
    data_source: {{type: csv, path: {data}}}
    validators:
      - {{type: not_null, columns: [id]}}
    catch_up: {catch_up}
    max_catch_up: 100
    triggers:
      - {{type: schedule, interval: 1s}}
"""


def _fires(daemon: DaemonProcess) -> list[tuple[datetime, bool]]:
    """(fire time, was a catch-up) of every ticker run, oldest first.

    A catch-up run always runs. An on-time fire may find the last catch-up still running
    and be recorded as skipped (``overlap: skip``): it still fired, so it counts here.
    """
    out = []
    for run in daemon.runs(checkpoint="ticker"):
        trigger = run["trigger"]  # {"type", "key", **params}
        assert trigger["type"] == "schedule"
        late = trigger["catch_up"] == "true"
        assert run["status"] in (("success",) if late else ("success", "skipped")), run
        out.append((datetime.fromisoformat(trigger["fire_time"]), late))
    return sorted(out)


def _on_time_after(daemon: DaemonProcess, moment: datetime, count: int) -> bool:
    return sum(1 for when, late in _fires(daemon) if when > moment and not late) >= count


@pytest.mark.parametrize(("catch_up", "loop"), [("latest", "uvloop"), ("all", "asyncio")])
def test_an_interval_schedule_fires_and_catches_up_on_the_fires_missed_while_down(
    tmp_path, catch_up, loop
):
    data = write_ids_csv(tmp_path / "ids.csv", [1, 2, 3])
    state = tmp_path / "state"
    text = CONFIG.format(state=state, data=data, catch_up=catch_up)
    with run_daemon(text, tmp_path, loop=loop) as daemon:
        wait_for(lambda: len(_fires(daemon)) >= 2, what="two on-time fires")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        # Read the first life's fires from the state itself: exact, whatever fired late.
        first_life = sorted(
            datetime.fromisoformat(json.loads(params)["fire_time"])
            for (params,) in query_state(state, "SELECT params FROM journal")
        )
        time.sleep(3.5 * INTERVAL.total_seconds())  # downtime of three and a half intervals
        again = daemon.restart()
        try:
            last_before_stop = first_life[-1]
            wait_for(
                lambda: _on_time_after(again, last_before_stop, 2),
                what="on-time fires after the restart",
            )
            fires = _fires(again)
            upcoming = again.checkpoints()["ticker"]["next_fire_time"]
        finally:
            again.signal(signal.SIGTERM)
            assert again.wait(timeout=30) == 0

    # The API shows the next fire: on the whole-second grid, after the last one that ran.
    assert upcoming is not None
    upcoming_at = datetime.fromisoformat(upcoming)
    assert upcoming_at.microsecond == 0
    assert upcoming_at > fires[-1][0]
    times = [when for when, _ in fires]
    assert len(times) == len(set(times)), f"a fire time ran twice: {fires}"
    # The first life: one on-time run per interval, no gaps.
    assert [(when, False) for when in first_life] == [f for f in fires if f[0] <= first_life[-1]]
    assert first_life == [first_life[0] + INTERVAL * k for k in range(len(first_life))]
    # Every fire time owed by the downtime: strictly between the last fire before the
    # stop and the first on-time fire after the restart.
    resumed = min(when for when, late in fires if when > last_before_stop and not late)
    owed = []
    step = last_before_stop + INTERVAL
    while step < resumed:
        owed.append(step)
        step += INTERVAL
    assert len(owed) >= 3, f"the daemon was down for {len(owed)} intervals only"
    caught_up = [when for when, late in fires if late]
    if catch_up == "latest":
        assert caught_up == [owed[-1]], f"owed {owed}, caught up {caught_up}"
    else:
        assert caught_up == owed, f"owed {owed}, caught up {caught_up}"
    # After the catch-up the grid goes on with no gaps.
    after = [when for when, late in fires if when >= resumed]
    assert after == [resumed + INTERVAL * k for k in range(len(after))]
    assert all(not late for when, late in fires if when >= resumed)
