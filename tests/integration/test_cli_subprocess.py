"""``python -m checkpointd`` as an operator runs it: exit codes, stdout, stderr, the state dir.

Real processes, real files, a real SQLite state dir; the lock on that dir is
held by another real process where that matters, and the progress spinner is
read from a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CONFIG = """\
daemon:
  state_dir: ./state
checkpoints:
  - name: clean
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: not_null, columns: [id]}
  - name: warned
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: range, column: amount, min: 0, severity: warning}
  - name: failing
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: range, column: amount, min: 0, max: 100}
  - name: broken
    data_source: {type: csv, path: data/never-landed.csv}
    validators:
      - {type: not_null, columns: [id]}
  - name: slow
    data_source: {type: csv, path: data/orders.csv}
    validators:
      - {type: row_count, min: 1}
    timeout: 0.001ms   # one microsecond: the read always takes longer
  - name: patient
    data_source: {type: csv, path: data/never-landed.csv}
    retries: {max_retries: 1, delay: 1s, jitter: false}
"""

ORDERS = "id,amount\n1,5.0\n2,-3.0\n3,50.0\n"

# Holds the state-dir lock the way a running daemon does, until its stdin closes.
HOLDER = """\
import sys
from pathlib import Path
from checkpointd.store.statelock import acquire_state_dir
lock = acquire_state_dir(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINTD_")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text(ORDERS)
    (tmp_path / "checkpointd.yaml").write_text(CONFIG)
    return tmp_path


def checkpointd(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "checkpointd", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_once(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return checkpointd(cwd, "run-once", "-c", "checkpointd.yaml", *args)


def history(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return checkpointd(cwd, "history", "-c", "checkpointd.yaml", *args)


@pytest.fixture
def lock_holder(project: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the state dir's lock, as a running daemon does."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(project / "state")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        try:
            assert holder.stdout.readline() == "locked\n"
            yield holder
        finally:
            holder.stdin.close()  # the holder releases the lock and exits
            holder.wait(timeout=30)


# ---------------------------------------------------------------- check


def test_check_a_valid_config(project):
    done = checkpointd(project, "check", "checkpointd.yaml")

    assert done.returncode == 0
    assert done.stdout == "ok: checkpointd.yaml — 6 checkpoints, 0 triggers, 0 actions\n"
    assert done.stderr == ""


def test_check_an_invalid_config_lists_every_error(project):
    (project / "bad.yaml").write_text(
        "daemon: {max_concurrent_checkpoints: 0}\n"
        "checkpoints:\n"
        "  - name: a\n"
        "    data_source: {type: csv}\n"
    )

    done = checkpointd(project, "check", "bad.yaml")

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("2 errors in config:")
    assert "bad.yaml:1: daemon.max_concurrent_checkpoints" in done.stderr
    assert "bad.yaml:4: checkpoints[0].data_source: missing required key 'path'" in done.stderr


# ---------------------------------------------------------------- run-once


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("clean", 0, "success"),
        ("warned", 0, "warning"),
        ("failing", 1, "failure"),
        ("broken", 2, "error"),
        ("slow", 2, "timeout"),
    ],
)
def test_run_once_exit_code_follows_the_status(project, name, code, status):
    done = run_once(project, name, "--output", "json")

    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout)["status"] == status


def test_run_once_of_an_unknown_checkpoint_exits_2(project):
    done = run_once(project, "nope")

    assert done.returncode == 2
    assert done.stdout == ""
    assert "no checkpoint named 'nope'" in done.stderr


def test_run_once_json_is_exactly_one_document_in_the_shared_shape(project):
    done = run_once(project, "failing", "--output", "json")

    result = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert list(result) == [
        "run_id", "checkpoint", "status", "started_at", "finished_at", "duration_seconds",
        "attempt", "trigger", "row_count", "validators", "error",
    ]  # fmt: skip
    (amount,) = result["validators"]
    assert amount["failed_count"] == 1
    assert amount["sample"] == [-3.0]
    assert done.stderr == ""


def test_run_once_table_shows_the_failing_validator(project):
    done = run_once(project, "failing")

    assert done.stdout.startswith("failing: FAIL (failure) in ")
    assert any(
        line.split()[:5] == ["FAIL", "range", "amount", "error", "1/3"]
        for line in done.stdout.splitlines()
    )


# ---------------------------------------------------------------- the state dir


def test_history_before_any_run(project):
    done = history(project)

    assert done.returncode == 0
    assert done.stdout == "no runs recorded yet\n"


def test_runs_are_recorded_and_history_lists_and_filters_them(project):
    ids = {}
    for name in ("clean", "failing", "broken"):
        ids[name] = json.loads(run_once(project, name, "--output", "json").stdout)["run_id"]

    table = history(project)
    as_json = json.loads(history(project, "--output", "json").stdout)
    failures = json.loads(history(project, "--status", "failure", "--output", "json").stdout)
    cleans = json.loads(history(project, "--checkpoint", "clean", "--output", "json").stdout)
    newest = json.loads(history(project, "--limit", "1", "--output", "json").stdout)

    assert table.returncode == 0
    rows = table.stdout.splitlines()[2:]
    assert [row.split()[1] for row in rows] == ["broken", "failing", "clean"]
    assert [row.split()[-1] for row in rows] == [ids["broken"], ids["failing"], ids["clean"]]
    assert [r["run_id"] for r in as_json] == [ids["broken"], ids["failing"], ids["clean"]]
    assert [r["run_id"] for r in failures] == [ids["failing"]]
    assert [r["run_id"] for r in cleans] == [ids["clean"]]
    assert [r["run_id"] for r in newest] == [ids["broken"]]


def test_run_once_beside_a_process_holding_the_state_dir_notes_it_and_still_runs(
    project, lock_holder
):
    done = run_once(project, "failing")

    assert done.returncode == 1
    assert done.stdout.startswith("failing: FAIL (failure)")
    assert done.stderr.startswith(
        f"note: not recording this run: the state dir {project / 'state'} "
        f"is in use by pid {lock_holder.pid}"
    )
    # History reads beside the holder, as it does beside a running daemon.
    assert history(project).stdout == "no runs recorded yet\n"


# ---------------------------------------------------------------- progress on a terminal


def test_a_long_run_shows_a_spinner_with_its_phase_on_a_terminal_and_clears_it(project):
    # `patient` fails, waits 1 s, and fails again: long enough for the spinner to show.
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "checkpointd", "run-once", "-c", "checkpointd.yaml",
             "patient", "--no-store"],
            cwd=project,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
        )  # fmt: skip
        os.close(secondary)
        stdout, _ = proc.communicate(timeout=60)
        terminal = _read_all(primary)
    finally:
        os.close(primary)

    assert proc.returncode == 2
    assert stdout.startswith("patient: ERROR (error)")
    assert ", attempt 2" in stdout.splitlines()[0]
    assert "running patient: attempt 1 of 2 failed, retrying in 1.0s … " in terminal
    assert terminal.endswith("\r\x1b[K")  # the spinner's line is cleared before the result


def test_no_spinner_when_stderr_is_not_a_terminal(project):
    done = run_once(project, "patient", "--no-store")

    assert done.returncode == 2
    assert done.stderr == ""


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side of the pty is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()
