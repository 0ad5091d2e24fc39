"""Bad data: corrupt CSV and Parquet, empty files, FIFOs and device nodes, 2 GB sparse files.

Each bad file that lands must end as exactly one run with a clear error (naming the file,
printable, short) or, for odd-but-readable CSVs, a plain verdict; FIFOs and device nodes are
refused without ever being opened; memory stays bounded (a sparse 2 GB file used to take
~20 GB to "parse"); and the daemon keeps running and checking good files afterwards.

(Bad Kafka values come with the Kafka trigger.)
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from checkpointd.checkpoints.checkpoint import Checkpoint
from tests.e2e.harness import run_daemon, wait_for
from tests.reliability.badfiles import (
    BENIGN_CSV,
    BIT_FLIPPED_PARQUET,
    CSV_CORPUS,
    PARQUET_CORPUS,
    make_char_device,
    make_fifo,
)
from tests.reliability.support import peak_rss_mib

MAX_PEAK_RSS_MIB = 1024
"""The daemon's resident memory must stay under this whatever lands (sparse 2 GB files too)."""

MAX_ERROR_CHARS = 600

CASES = (
    [("csv", name) for name in CSV_CORPUS]
    + [("parquet", name) for name in PARQUET_CORPUS]
    + [("parquet", name) for name in BIT_FLIPPED_PARQUET]
)


def _maker(kind: str, name: str):
    if kind == "csv":
        return CSV_CORPUS[name]
    return PARQUET_CORPUS.get(name) or BIT_FLIPPED_PARQUET[name]


def _expected(kind: str, name: str) -> set[str]:
    if kind == "csv" and name in BENIGN_CSV:
        return {"success", "failure"}
    if name in BIT_FLIPPED_PARQUET:
        return {"success", "failure", "error"}
    return {"error"}


def _assert_clear(error: str | None, validator_errors: list[str], path: Path) -> None:
    """A run-level error names the file; a validator-level one (a missing column) names the
    column instead; both are short and printable (no binary data echoed back)."""
    messages = [error] if error else validator_errors
    assert messages, "an error result without a message"
    if error:
        assert path.name in error, f"the error does not name the file: {error!r}"
    for message in messages:
        assert message.isprintable(), f"binary or control characters: {message!r}"
        assert len(message) <= MAX_ERROR_CHARS, f"a wall of text ({len(message)} chars)"


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_each_bad_file_gives_a_result_with_a_clear_error(tmp_path, kind, name):
    path = _maker(kind, name)(tmp_path / f"{name}.{kind}")
    checkpoint = Checkpoint.from_dict(
        {
            "name": "bad",
            "data_source": {"type": kind, "path": str(path)},
            "validators": [{"type": "not_null", "columns": ["id"]}],
            "timeout": "60s",
        }
    )

    result = checkpoint.run()

    assert result.status.value in _expected(kind, name), (result.status, result.error)
    if result.status.value == "error":
        failed = [v.message for v in result.validators if v.status.value == "error"]
        _assert_clear(result.error, failed, path)


CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 4
  log: {{format: json, level: info}}
checkpoints:
  - name: csv_landing
    data_source: {{type: csv, path: "{{trigger.path}}"}}
    timeout: 60s
    validators:
      - {{type: not_null, columns: [id]}}
    triggers:
      - {{type: file, directory: {incoming}, pattern: "*.csv", stable_for: 100ms,
          poll_interval: 50ms}}
  - name: parquet_landing
    data_source: {{type: parquet, path: "{{trigger.path}}"}}
    timeout: 60s
    validators:
      - {{type: not_null, columns: [id]}}
    triggers:
      - {{type: file, directory: {incoming}, pattern: "*.parquet", stable_for: 100ms,
          poll_interval: 50ms}}
"""


def test_the_daemon_survives_a_directory_of_bad_files_with_bounded_memory(tmp_path, figures):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    text = CONFIG.format(state=tmp_path / "state", incoming=incoming)
    with run_daemon(text, tmp_path, loop="uvloop") as daemon:
        landed: dict[str, tuple[str, str]] = {}
        for kind, name in CASES:
            path = _maker(kind, name)(incoming / f"{name}.{kind}")
            landed[str(path)] = (kind, name)
        specials = [
            make_fifo(incoming / "fifo.csv"),
            make_fifo(incoming / "fifo.parquet"),
            make_char_device(incoming / "device.csv"),
        ]

        wait_for(
            lambda: len(daemon.runs()) >= len(landed),
            timeout=120,
            interval=0.5,
            what=f"one run per bad file ({len(landed)})",
        )
        wait_for(
            lambda: (
                daemon.metric("checkpointd_file_trigger_refused_total", reason="not_regular")
                == len(specials)
            ),
            what="the FIFOs and the device refused",
        )

        # Still running, still checking: a good file after all that.
        good = incoming / "good.csv"
        good.write_text("id\n1\n2\n")
        wait_for(
            lambda: any(r["trigger"]["path"] == str(good) for r in daemon.runs()),
            what="the good file's run",
        )
        runs = daemon.runs()
        peak = peak_rss_mib(daemon.proc.pid)
        healthy = daemon.get("/healthz").status
        alive = daemon.proc.poll() is None
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.log()[-3000:]

    by_path: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_path.setdefault(run["trigger"]["path"], []).append(run)
    figures["bad_files_tried"] = len(landed)
    figures["special_nodes_refused"] = len(specials)
    figures["errors"] = sum(1 for r in runs if r["status"] == "error")
    figures["daemon_peak_rss_mib"] = round(peak, 1)
    assert alive
    assert healthy == 200
    assert peak < MAX_PEAK_RSS_MIB, f"peak RSS {peak:.0f} MiB"
    assert {str(p) for p in specials}.isdisjoint(by_path), "a FIFO or device node was run"
    assert by_path[str(good)][0]["status"] == "success"
    for path, (kind, name) in landed.items():
        assert len(by_path.get(path, [])) == 1, (name, by_path.get(path))
        (run,) = by_path[path]
        assert run["status"] in _expected(kind, name), (kind, name, run["status"], run["error"])
        if run["status"] == "error":
            failed = [v["message"] for v in run["validators"] if v["status"] == "error"]
            _assert_clear(run["error"], failed, Path(path))
