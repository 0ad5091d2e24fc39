"""The command line, called in-process: ``main(argv)`` returns the exit code, output in capsys.

Every command reads a real config file, real CSV data and a real SQLite state
dir under ``tmp_path``. (tests/integration/test_cli_subprocess.py runs the
same commands as ``python -m checkpointd``.)
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from checkpointd.cli import EXIT_ERROR, EXIT_FAILURE, EXIT_OK, _retry_sleep, main
from checkpointd.config import CheckpointConfig
from checkpointd.progress import Progress
from checkpointd.store.statelock import acquire_state_dir

CONFIG = """\
daemon:
  state_dir: ./state
checkpoints:
  - name: clean
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: not_null, columns: [id]}
      - {type: row_count, min: 1}
  - name: warned
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: range, column: amount, min: 0, severity: warning}
  - name: failing
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: unique, columns: [id]}
      - {type: range, column: amount, min: 0, max: 100}
  - name: broken
    data_source: {type: csv, path: data/never-landed.csv}
    validators:
      - {type: not_null, columns: [id]}
  - name: slow
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: row_count, min: 1}
    # One microsecond: the read in the worker thread always takes longer.
    timeout: 0.001ms
  - name: landing
    data_source: {type: csv, path: "{trigger.path}"}
    validators:
      - {type: not_null, columns: [id]}
"""

ORDERS = "id,amount\n1,5.0\n2,-3.0\n3,50.0\n4,70.0\n"

# What DESIGN.md promises `run-once --output json` holds (row_count is an addition).
RESULT_KEYS = {
    "run_id", "checkpoint", "status", "started_at", "finished_at", "duration_seconds",
    "attempt", "trigger", "validators", "error", "row_count",
}  # fmt: skip
VALIDATOR_KEYS = {
    "type", "column", "status", "severity", "checked_count", "failed_count", "failed_ratio",
    "sample", "message",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    # CHECKPOINTD_STATE_DIR and friends in the developer's shell must not leak in.
    for name in list(os.environ):
        if name.startswith("CHECKPOINTD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config file (returned) with its data next to it; the state dir is ``state/``."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text(ORDERS)
    config = tmp_path / "checkpointd.yaml"
    config.write_text(CONFIG)
    return config


def run_once(project: Path, *args: str) -> int:
    return main(["run-once", "-c", str(project), *args])


def history(project: Path, *args: str) -> int:
    return main(["history", "-c", str(project), *args])


# ---------------------------------------------------------------- check


def test_check_prints_one_summary_line_for_a_valid_config(project, capsys):
    code = main(["check", str(project)])

    out, err = capsys.readouterr()
    assert code == EXIT_OK
    assert out.splitlines() == [f"ok: {project} — 6 checkpoints, 0 triggers, 0 actions"]
    assert err == ""


def test_check_lists_every_error_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "checkpoints:\n"
        "  - name: a\n"
        "    data_source: {type: csv, path: x.csv}\n"
        "    validators:\n"
        "      - {type: range, column: amount, min: high}\n"
        "    timeout: soon\n"
    )

    code = main(["check", str(bad)])

    out, err = capsys.readouterr()
    assert code == EXIT_FAILURE
    assert out == ""
    assert err.startswith("2 errors in config:")
    assert "checkpoints[0].validators[0].min" in err
    assert "checkpoints[0].timeout" in err
    assert f"{bad}:5" in err  # the line of the bad value


def test_check_of_a_missing_file_exits_1_naming_it(tmp_path, capsys):
    code = main(["check", str(tmp_path / "nope.yaml")])

    assert code == EXIT_FAILURE
    assert "nope.yaml" in capsys.readouterr().err


# ---------------------------------------------------------------- run-once: exit codes


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("clean", EXIT_OK, "success"),
        ("warned", EXIT_OK, "warning"),
        ("failing", EXIT_FAILURE, "failure"),
        ("broken", EXIT_ERROR, "error"),
        ("slow", EXIT_ERROR, "timeout"),
    ],
)
def test_run_once_exits_by_the_status_of_the_run(project, capsys, name, code, status):
    assert run_once(project, name, "--output", "json") == code

    assert json.loads(capsys.readouterr().out)["status"] == status


def test_run_once_of_an_unknown_checkpoint_exits_2_naming_the_known_ones(project, capsys):
    code = run_once(project, "nope")

    out, err = capsys.readouterr()
    assert code == EXIT_ERROR
    assert out == ""
    assert err.strip() == (
        "checkpointd: no checkpoint named 'nope' "
        "(known: clean, warned, failing, broken, slow, landing)"
    )


def test_run_once_with_an_invalid_config_exits_2_with_its_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("checkpoints: 7\n")

    code = main(["run-once", "-c", str(bad), "anything"])

    assert code == EXIT_ERROR
    assert "1 error in config" in capsys.readouterr().err


# ---------------------------------------------------------------- run-once: output


def test_run_once_json_is_the_shared_result_shape(project, capsys):
    run_once(project, "failing", "--output", "json")

    result = json.loads(capsys.readouterr().out)
    assert set(result) == RESULT_KEYS
    assert result["checkpoint"] == "failing"
    assert result["attempt"] == 1
    assert result["trigger"] is None
    assert result["error"] is None
    assert result["row_count"] == 4
    assert result["started_at"].endswith("Z")
    unique, amount = result["validators"]
    assert set(amount) == VALIDATOR_KEYS
    assert unique["status"] == "success"
    assert amount == {
        "type": "range",
        "column": "amount",
        "status": "failure",
        "severity": "error",
        "checked_count": 4,
        "failed_count": 1,
        "failed_ratio": 0.25,
        "sample": [-3.0],
        "message": "1 of 4 values of amount outside [0, 100]",
    }


def test_run_once_table_shows_the_failing_validators(project, capsys):
    run_once(project, "failing")

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("failing: FAIL (failure) in ")
    assert lines[0].endswith(", attempt 1, 4 rows")
    failing = [line for line in lines if line.startswith("FAIL")]
    assert len(failing) == 1
    assert failing[0].split()[:6] == ["FAIL", "range", "amount", "error", "1/4", "25.00%"]
    assert any(line.startswith("ok    unique") for line in lines)


def test_run_once_table_shows_the_error_of_a_run_that_could_not_load(project, capsys):
    run_once(project, "broken")

    out = capsys.readouterr().out
    assert "broken: ERROR (error)" in out
    assert f"error: no such file: {project.parent / 'data' / 'never-landed.csv'}" in out


def test_run_once_param_fills_trigger_placeholders(project, capsys, tmp_path):
    landed = tmp_path / "landed.csv"
    landed.write_text("id\n1\n2\n")

    code = run_once(project, "landing", "--param", f"path={landed}", "--output", "json")

    result = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert result["row_count"] == 2
    assert result["trigger"]["type"] == "manual"
    assert result["trigger"]["path"] == str(landed)


def test_run_once_without_the_param_a_placeholder_needs_hints_at_it(project, capsys):
    code = run_once(project, "landing")

    out, err = capsys.readouterr()
    assert code == EXIT_ERROR
    assert "needs {trigger.path}" in out
    assert "hint: fill placeholders with --param NAME=VALUE" in err


def test_run_once_rejects_a_param_without_a_value(project, capsys):
    with pytest.raises(SystemExit) as exited:
        run_once(project, "landing", "--param", "path")

    assert exited.value.code == 2
    assert "expected NAME=VALUE, found 'path'" in capsys.readouterr().err


# ---------------------------------------------------------------- recording and history


def test_history_without_a_state_dir_says_no_runs_yet(project, capsys):
    assert history(project) == EXIT_OK
    assert capsys.readouterr().out == "no runs recorded yet\n"
    assert not (project.parent / "state").exists()  # reading history creates nothing


def test_history_json_without_runs_is_an_empty_list(project, capsys):
    assert history(project, "--output", "json") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == []


def test_run_once_records_the_run_and_history_shows_it(project, capsys):
    run_once(project, "failing", "--output", "json")
    run_id = json.loads(capsys.readouterr().out)["run_id"]

    assert history(project) == EXIT_OK

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "started", "checkpoint", "status", "duration", "attempt", "trigger", "failed", "run",
    ]  # fmt: skip
    assert len(lines) == 3
    row = lines[2].split()
    assert row[1:3] == ["failing", "failure"]
    assert row[-2:] == ["1", run_id]


def test_history_json_holds_the_same_result_run_once_printed(project, capsys):
    run_once(project, "failing", "--output", "json")
    printed = json.loads(capsys.readouterr().out)

    history(project, "--output", "json")

    (stored,) = json.loads(capsys.readouterr().out)
    # The store keeps timestamps to the millisecond, and the duration follows from them.
    assert stored.pop("duration_seconds") == pytest.approx(
        printed.pop("duration_seconds"), abs=2e-3
    )
    assert stored == printed


def test_history_filters_by_checkpoint_and_status_and_limits_newest_first(project, capsys):
    ids = []
    for name in ("clean", "failing", "clean", "broken", "clean"):
        run_once(project, name, "--output", "json")
        ids.append(json.loads(capsys.readouterr().out)["run_id"])

    def listed(*args: str) -> list[tuple[str, str, str]]:
        history(project, "--output", "json", *args)
        runs = json.loads(capsys.readouterr().out)
        return [(r["checkpoint"], r["status"], r["run_id"]) for r in runs]

    assert [run_id for *_, run_id in listed()] == ids[::-1]
    assert listed("--checkpoint", "clean") == [
        ("clean", "success", ids[4]),
        ("clean", "success", ids[2]),
        ("clean", "success", ids[0]),
    ]
    assert listed("--status", "error") == [("broken", "error", ids[3])]
    assert listed("--checkpoint", "clean", "--limit", "2") == [
        ("clean", "success", ids[4]),
        ("clean", "success", ids[2]),
    ]
    assert listed("--checkpoint", "failing", "--status", "success") == []


def test_run_once_no_store_records_nothing(project, capsys):
    run_once(project, "clean", "--no-store")
    history(project)

    assert capsys.readouterr().out.splitlines()[-1] == "no runs recorded yet"


def test_run_once_while_another_process_holds_the_state_dir_notes_it_and_still_runs(
    project, capsys
):
    state_dir = project.parent / "state"
    # flock conflicts within one process too, so holding it here stands in for a daemon.
    with acquire_state_dir(state_dir):
        code = run_once(project, "failing")
        out, err = capsys.readouterr()

    assert code == EXIT_FAILURE
    assert out.startswith("failing: FAIL (failure)")
    assert err.startswith(
        f"note: not recording this run: the state dir {state_dir} is in use by pid {os.getpid()}"
    )
    assert "POST /api/v1/checkpoints/failing/runs" in err
    history(project)
    assert capsys.readouterr().out == "no runs recorded yet\n"


def test_history_rejects_a_status_that_does_not_exist(project, capsys):
    with pytest.raises(SystemExit) as exited:
        history(project, "--status", "failed")

    assert exited.value.code == 2
    assert "invalid choice: 'failed'" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_history_rejects_a_limit_that_is_not_a_positive_number(project, capsys, limit):
    with pytest.raises(SystemExit) as exited:
        history(project, "--limit", limit)

    assert exited.value.code == 2
    assert "argument --limit" in capsys.readouterr().err


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("checkpointd ")


# ---------------------------------------------------------------- progress


class FakeTty(io.StringIO):
    """A terminal as far as Progress can tell; ``until`` waits for what it was written."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._changed.set()
        return super().write(text)

    async def until(self, condition: Callable[[str], bool]) -> None:
        async with asyncio.timeout(10):  # a hang guard, not a speed assertion
            while not condition(self.getvalue()):
                self._changed.clear()
                await self._changed.wait()


async def test_progress_on_a_tty_spins_with_label_and_elapsed_time_then_clears_its_line():
    stream = FakeTty()
    ticks = iter(range(100))

    async with Progress("running orders", stream=stream, delay=0, every=0.001,
                        monotonic=lambda: float(next(ticks))):  # fmt: skip
        await stream.until(lambda text: text.count("running orders") >= 3)

    written = stream.getvalue()
    draws = written.split("\r\033[K")
    assert draws[0] == ""
    assert draws[1] == "| running orders … 1.0s"
    assert draws[2] == "/ running orders … 2.0s"
    assert draws[3] == "- running orders … 3.0s"
    assert written.endswith("\r\033[K")  # the line is cleared at the end


async def test_progress_shows_the_current_phase():
    stream = FakeTty()

    async with Progress("running orders", stream=stream, delay=0, every=0.001) as progress:
        progress.phase = "attempt 1 of 3 failed, retrying in 2.0s"
        await stream.until(lambda text: "retrying" in text)

    assert "running orders: attempt 1 of 3 failed, retrying in 2.0s … " in stream.getvalue()


async def test_progress_writes_nothing_when_not_a_tty():
    stream = io.StringIO()

    async with Progress("running orders", stream=stream, delay=0, every=0.001) as progress:
        assert not progress.active
        await asyncio.sleep(0.02)

    assert stream.getvalue() == ""


async def test_progress_of_a_quick_command_never_shows():
    stream = FakeTty()

    async with Progress("running orders", stream=stream, delay=30) as progress:
        assert progress.active

    assert not progress.active
    assert stream.getvalue() == ""


async def test_the_retry_wait_of_run_once_tells_progress_which_attempt_comes():
    config = CheckpointConfig.model_validate(
        {
            "name": "broken",
            "data_source": {"type": "csv", "path": "x.csv"},
            "retries": {"max_retries": 2},
        }
    )
    progress = Progress("running broken", stream=io.StringIO())
    phases: list[str] = []

    async def spy(delay: float) -> None:
        phases.append(progress.phase)

    wait = _retry_sleep(progress, config, sleep=spy)
    await wait(1.5)
    await wait(3.0)

    assert phases == [
        "attempt 1 of 3 failed, retrying in 1.5s",
        "attempt 2 of 3 failed, retrying in 3.0s",
    ]
    assert progress.phase == "attempt 3 of 3"
