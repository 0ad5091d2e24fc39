"""Reloading the config of a running daemon: SIGHUP and ``POST /-/reload``."""

from __future__ import annotations

import signal
from datetime import datetime

from tests.e2e.datagen import SLOW_VALIDATORS, write_ids_csv
from tests.e2e.harness import DaemonProcess, run_daemon, wait_for

HEAD = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
checkpoints:
"""

SLOW = """
  - name: slow
    data_source: {{type: csv, path: {data}}}
    overlap: allow
    validators:
{validators}
    triggers:
      - {{type: manual}}
"""

FRESH = """
  - name: fresh
    data_source: {{type: csv, path: {data}}}
    validators:
      - {{type: not_null, columns: [id]}}
"""

TICKER = """
  - name: ticker
    data_source: {{type: csv, path: {data}}}
    validators:
      - {{type: not_null, columns: [id]}}
    catch_up: none
    triggers:
      - {{type: schedule, interval: {interval}}}
"""

ONE_VALIDATOR = "      - {type: not_null, columns: [id]}\n"


def _reloads(daemon: DaemonProcess, result: str) -> float | None:
    return daemon.metric("checkpointd_config_reloads_total", result=result)


def _finished(daemon: DaemonProcess, run_id: str) -> dict | None:
    resp = daemon.get(f"/api/v1/runs/{run_id}")
    return resp.json() if resp.status == 200 else None


def test_sighup_adds_a_checkpoint_without_touching_runs_in_flight_and_keeps_the_old_config_when_the_new_one_is_broken(  # noqa: E501
    tmp_path, slow_csv, daemon_loop
):
    state = tmp_path / "state"
    small = write_ids_csv(tmp_path / "ids.csv", [1, 2, 3])
    before = HEAD.format(state=state) + SLOW.format(data=slow_csv, validators=SLOW_VALIDATORS)
    with run_daemon(before, tmp_path, loop=daemon_loop) as daemon:
        in_flight = daemon.post_run("slow")
        wait_for(lambda: daemon.checkpoints()["slow"]["running"] == 1, what="a run in flight")

        # slow's validators change and a checkpoint is added, while slow runs.
        after = (
            HEAD.format(state=state)
            + SLOW.format(data=slow_csv, validators=ONE_VALIDATOR)
            + FRESH.format(data=small)
        )
        daemon.config_path.write_text(after)
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: _reloads(daemon, "success") == 1.0, what="the reload")
        assert "fresh" in daemon.checkpoints()
        assert daemon.metric("checkpointd_config_last_reload_successful") == 1.0

        # The run in flight finished, on the config it started with (three validators).
        old_run = wait_for(lambda: _finished(daemon, in_flight), what="the in-flight run")
        assert old_run["status"] == "success"
        assert [v["type"] for v in old_run["validators"]] == ["unique", "regex", "unique"]
        # New runs use the new config.
        new_run_id = daemon.post_run("slow")
        new_run = wait_for(lambda: _finished(daemon, new_run_id), what="a run on the new config")
        assert [v["type"] for v in new_run["validators"]] == ["not_null"]
        fresh_id = daemon.post_run("fresh")
        assert wait_for(lambda: _finished(daemon, fresh_id), what="fresh's run")["status"] == (
            "success"
        )

        # A broken file: refused, the previous config stays in force.
        daemon.config_path.write_text(after + "  - name: [unclosed\n")
        daemon.signal(signal.SIGHUP)
        wait_for(
            lambda: daemon.metric("checkpointd_config_last_reload_successful") == 0.0,
            what="the failed reload in /metrics",
        )
        assert _reloads(daemon, "failure") == 1.0
        assert set(daemon.checkpoints()) == {"slow", "fresh"}
        assert daemon.ready()

        resp = daemon.post("/-/reload")
        assert resp.status == 400
        body = resp.json()
        assert body["result"] == "failure"
        assert body["errors"], body
        assert any(str(daemon.config_path) in error for error in body["errors"]), body
        assert _reloads(daemon, "failure") == 2.0

        # Fixed again: the reload succeeds and the gauge says so.
        daemon.config_path.write_text(after)
        resp = daemon.post("/-/reload")
        assert resp.status == 200, resp.body
        assert resp.json()["summary"] == "no changes"
        assert daemon.metric("checkpointd_config_last_reload_successful") == 1.0


def test_reload_removes_replaces_and_rearms_checkpoints(tmp_path, daemon_loop):
    state = tmp_path / "state"
    small = write_ids_csv(tmp_path / "ids.csv", [1, 2, 3])
    first = (
        HEAD.format(state=state)
        + FRESH.format(data=small)
        + TICKER.format(data=small, interval="1h")
    )
    with run_daemon(first, tmp_path, loop=daemon_loop) as daemon:
        run_id = daemon.post_run("fresh")
        wait_for(lambda: _finished(daemon, run_id), what="fresh's run")
        hourly = daemon.checkpoints()["ticker"]["next_fire_time"]
        assert hourly is not None
        wait_for(
            lambda: (
                daemon.metric("checkpointd_runs_total", checkpoint="fresh", status="success") == 1.0
            ),
            what="fresh's run in /metrics",
        )

        # fresh removed, ticker's schedule changed (triggers only) to every second.
        second = HEAD.format(state=state) + TICKER.format(data=small, interval="1s")
        daemon.config_path.write_text(second)
        resp = daemon.post("/-/reload")
        assert resp.status == 200, resp.body
        summary = resp.json()["summary"]
        assert "removed fresh" in summary
        assert "changed ticker (triggers)" in summary

        assert set(daemon.checkpoints()) == {"ticker"}
        assert daemon.post("/api/v1/checkpoints/fresh/runs").status == 404
        # The removed checkpoint's metric series are gone (label sets do not pile up).
        metrics = daemon.get("/metrics").body.decode()
        assert 'checkpoint="fresh"' not in metrics
        # The re-armed schedule fires every second now.
        wait_for(lambda: len(daemon.runs(checkpoint="ticker")) >= 2, what="the re-armed schedule")
        rearmed = daemon.checkpoints()["ticker"]["next_fire_time"]
        assert datetime.fromisoformat(rearmed) < datetime.fromisoformat(hourly)

        # The run definition replaced: ticker now validates with a different validator.
        third = second.replace("{type: not_null, columns: [id]}", "{type: unique, columns: [id]}")
        assert third != second
        daemon.config_path.write_text(third)
        resp = daemon.post("/-/reload")
        assert resp.status == 200, resp.body
        assert "changed ticker (validators)" in resp.json()["summary"]

        def latest_validators() -> list[str]:
            newest = daemon.runs(checkpoint="ticker")[0]
            return [v["type"] for v in newest["validators"]]

        wait_for(lambda: latest_validators() == ["unique"], what="a run on the new validators")


def test_a_checkpoint_removed_while_it_runs_finishes_its_run_and_leaves_no_metric_series(
    tmp_path, slow_csv
):
    state = tmp_path / "state"
    small = write_ids_csv(tmp_path / "ids.csv", [1, 2, 3])
    both = (
        HEAD.format(state=state)
        + SLOW.format(data=slow_csv, validators=SLOW_VALIDATORS)
        + FRESH.format(data=small)
    )
    with run_daemon(both, tmp_path, loop="asyncio") as daemon:
        in_flight = daemon.post_run("slow")
        wait_for(lambda: daemon.checkpoints()["slow"]["running"] == 1, what="a run in flight")
        daemon.config_path.write_text(HEAD.format(state=state) + FRESH.format(data=small))
        resp = daemon.post("/-/reload")
        assert resp.status == 200, resp.body
        assert resp.json()["summary"] == "removed slow"

        finished = wait_for(lambda: _finished(daemon, in_flight), what="the in-flight run")
        assert finished["status"] == "success"  # not cancelled by the removal
        # Its result was stored, yet the removed checkpoint's series did not come back.
        metrics = daemon.get("/metrics").body.decode()
        assert 'checkpoint="slow"' not in metrics
        assert daemon.post("/api/v1/checkpoints/slow/runs").status == 404
