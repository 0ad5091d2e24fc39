"""Files landing in a watched directory, seen from outside the daemon."""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.datagen import write_ids_csv
from tests.e2e.harness import run_daemon, wait_for

CONFIG = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
checkpoints:
  - name: landing
    data_source: {{type: csv, path: "{{trigger.path}}"}}
    validators:
      - {{type: not_null, columns: [id]}}
      - {{type: unique, columns: [id]}}
    triggers:
      - {{type: file, directory: {incoming}, pattern: "*.csv", stable_for: 300ms,
          poll_interval: 100ms}}
"""


def _config(tmp_path: Path) -> tuple[str, Path]:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    return CONFIG.format(state=tmp_path / "state", incoming=incoming), incoming


def test_each_renamed_part_file_gives_exactly_one_run_with_the_right_status(tmp_path, daemon_loop):
    text, incoming = _config(tmp_path)
    with run_daemon(text, tmp_path, loop=daemon_loop) as daemon:
        good = write_ids_csv(tmp_path / "good.part", [1, 2, 3])
        bad = write_ids_csv(tmp_path / "bad.part", [1, 1, None])
        os.rename(good, incoming / "good.csv.part")  # still partial: ignored
        os.rename(incoming / "good.csv.part", incoming / "good.csv")
        os.rename(bad, incoming / "bad.csv")

        runs = wait_for(lambda: len(daemon.runs()) >= 2 and daemon.runs(), what="two runs")
        by_file = {Path(r["trigger"]["path"]).name: r for r in runs}
        assert set(by_file) == {"good.csv", "bad.csv"}
        assert by_file["good.csv"]["status"] == "success"
        assert by_file["bad.csv"]["status"] == "failure"
        failed = {v["type"]: v["failed_count"] for v in by_file["bad.csv"]["validators"]}
        assert failed == {"not_null": 1, "unique": 2}

        # Nothing fires twice: a later file is a barrier (the trigger scans in order, so
        # once its run exists the first two files have been seen again by later scans).
        write_ids_csv(incoming / "later.csv", [7])
        wait_for(lambda: len(daemon.runs()) >= 3, what="the later file's run")
        names = sorted(Path(r["trigger"]["path"]).name for r in daemon.runs())
        assert names == ["bad.csv", "good.csv", "later.csv"]
        assert all(r["trigger"]["type"] == "file" for r in daemon.runs())

        def counted(status: str) -> float | None:
            return daemon.metric("checkpointd_runs_total", checkpoint="landing", status=status)

        wait_for(
            lambda: (counted("success"), counted("failure")) == (2.0, 1.0),
            what="2 successes and 1 failure in /metrics",
        )
        assert counted("skipped") in (None, 0.0)
        assert (
            daemon.metric(
                "checkpointd_trigger_events_total", trigger_type="file", checkpoint="landing"
            )
            == 3.0
        )


def test_a_symlink_pointing_outside_the_watched_directory_is_never_run(tmp_path, daemon_loop):
    text, incoming = _config(tmp_path)
    outside = write_ids_csv(tmp_path / "secret.csv", [1, 2])
    with run_daemon(text, tmp_path, loop=daemon_loop) as daemon:
        (incoming / "link.csv").symlink_to(outside)
        write_ids_csv(incoming / "after.csv", [5])
        wait_for(lambda: len(daemon.runs()) >= 1, what="the regular file's run")
        wait_for(
            lambda: (
                (daemon.metric("checkpointd_file_trigger_refused_total", reason="outside") or 0)
                >= 1
            ),
            what="refusal metric",
        )
        paths = [r["trigger"]["path"] for r in daemon.runs()]
        assert [Path(p).name for p in paths] == ["after.csv"]
