"""``overlap: skip`` seen from outside: a run that would overlap is recorded as skipped."""

from __future__ import annotations

from tests.e2e.datagen import SLOW_VALIDATORS
from tests.e2e.harness import run_daemon, wait_for

CONFIG = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
checkpoints:
  - name: slow
    data_source: {{type: csv, path: {data}}}
    overlap: skip
    validators:
{validators}
    triggers:
      - {{type: manual}}
"""


def test_a_run_fired_while_the_previous_one_runs_is_recorded_as_skipped(
    tmp_path, slow_csv, daemon_loop
):
    text = CONFIG.format(state=tmp_path / "state", data=slow_csv, validators=SLOW_VALIDATORS)
    with run_daemon(text, tmp_path, loop=daemon_loop) as daemon:
        first = daemon.post_run("slow")
        wait_for(lambda: daemon.checkpoints()["slow"]["running"] == 1, what="the first run")
        second = daemon.post_run("slow")

        runs = wait_for(lambda: len(daemon.runs()) == 2 and daemon.runs(), what="two runs")
        by_id = {r["run_id"]: r for r in runs}
        assert by_id[first]["status"] == "success"
        assert by_id[second]["status"] == "skipped"
        assert "overlap" in by_id[second]["error"]
        assert by_id[second]["validators"] == []
        # Visible by id and in metrics, not dropped.
        assert daemon.get(f"/api/v1/runs/{second}").json()["status"] == "skipped"
        wait_for(
            lambda: (
                daemon.metric("checkpointd_runs_total", checkpoint="slow", status="skipped") == 1.0
            ),
            what="the skipped run in /metrics",
        )
        assert daemon.metric("checkpointd_runs_skipped_total", reason="overlap") == 1.0
        wait_for(
            lambda: (
                daemon.metric("checkpointd_runs_total", checkpoint="slow", status="success") == 1.0
            ),
            what="the first run in /metrics",
        )

        # Once the first run is over, the checkpoint runs again.
        third = daemon.post_run("slow")
        wait_for(
            lambda: (
                daemon.get(f"/api/v1/runs/{third}").status == 200
                and daemon.get(f"/api/v1/runs/{third}").json()["status"] == "success"
            ),
            what="a third run after the first finished",
        )
