"""Config fuzz: hypothesis mutates the example config; nothing may crash or slip through.

- ``checkpointd check`` answers every mutated file with exit 0 ("ok: ...") or exit 1 and a
  clean error naming the file; never an exception, never a traceback.
- A running daemon asked to reload a mutated file that does not validate answers 400 and
  keeps running exactly the config it had.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from checkpointd.cli import main as cli_main
from checkpointd.config import load_config
from checkpointd.errors import ConfigError
from tests.e2e.harness import free_port, start_daemon, stop_quietly
from tests.reliability.configfuzz import EXAMPLE_DIR, FUZZ_ENV, mutated_configs

TOKEN = "fuzz-token"


def _settings(examples: int, full: bool) -> settings:
    # CI replays the same examples every run (no flaky reds); the full run explores anew.
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not full,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture
def example_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The quickstart folder (config, data, incoming) copied, with the fuzz variables set."""
    target = tmp_path / "quickstart"
    shutil.copytree(EXAMPLE_DIR, target, ignore=shutil.ignore_patterns("state"))
    for name, value in FUZZ_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHECKPOINTD_FUZZ_UNSET", raising=False)
    return target


def _check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["check", str(path)])
    return code, out.getvalue(), err.getvalue()


def test_check_answers_every_mutated_config_with_ok_or_a_clean_error(example_copy, scale, figures):
    path = example_copy / "fuzzed.yaml"
    outcomes = {"ok": 0, "invalid": 0}
    kinds: set[str] = set()

    @_settings(scale.check_examples, scale.full)
    @given(mutated_configs())
    def check(case: tuple[bytes, list[str]]) -> None:
        content, mutations = case
        kinds.update(m.split(" ")[0] for m in mutations)
        path.write_bytes(content)
        code, out, err = _check(path)  # an exception here fails the test: that is the point
        assert code in (0, 1), (code, mutations)
        assert "Traceback" not in out + err, err
        if code == 0:
            assert out.startswith("ok: "), out
            outcomes["ok"] += 1
        else:
            assert err.strip(), f"exit 1 with nothing said ({mutations})"
            assert str(path) in err, f"the error does not name the file:\n{err}"
            outcomes["invalid"] += 1

    check()
    figures["check_examples_tried"] = outcomes["ok"] + outcomes["invalid"]
    figures["check_examples_valid"] = outcomes["ok"]
    figures["check_examples_invalid"] = outcomes["invalid"]
    # Guards the fuzzer itself: it breaks configs, and in every way it knows.
    assert outcomes["invalid"] > outcomes["ok"] / 10, "the mutations hardly ever break the config"
    assert kinds >= {"duration", "cron", "env", "type", "unknown", "emptied", "deleted", "replaced"}


def test_check_as_a_process_never_prints_a_traceback(example_copy, scale, figures):
    path = example_copy / "fuzzed.yaml"
    tried = []

    @_settings(scale.check_subprocess_examples, scale.full)
    @given(mutated_configs())
    def check(case: tuple[bytes, list[str]]) -> None:
        content, mutations = case
        path.write_bytes(content)
        done = subprocess.run(
            [sys.executable, "-m", "checkpointd", "check", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )
        tried.append(done.returncode)
        assert done.returncode in (0, 1), (done.returncode, done.stderr[-2000:], mutations)
        assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]

    check()
    figures["check_process_examples_tried"] = len(tried)


def test_a_reload_never_applies_an_invalid_config(example_copy, tmp_path, scale, figures):
    config = example_copy / "checkpointd.yaml"
    original = config.read_bytes()
    port = free_port()
    env = {"CHECKPOINTD_HTTP_TOKEN": TOKEN}
    daemon_env = {**os.environ, "CHECKPOINTD_HTTP_LISTEN": f"127.0.0.1:{port}", **env}
    daemon = start_daemon(
        config, port=port, log_path=tmp_path / "daemon.log", env=env, token=TOKEN, loop="uvloop"
    )
    refused: list[int] = []
    try:
        baseline = _overview(daemon)

        @_settings(scale.reload_examples, scale.full)
        @given(mutated_configs().filter(lambda case: not _valid(config, case[0], daemon_env)))
        def reload(case: tuple[bytes, list[str]]) -> None:
            content, mutations = case
            config.write_bytes(content)
            answer = daemon.post("/-/reload")
            assert answer.status == 400, (answer.status, answer.body[:500], mutations)
            assert answer.json()["result"] == "failure"
            assert _overview(daemon) == baseline, f"an invalid config was applied: {mutations}"
            assert daemon.metric("checkpointd_config_last_reload_successful") == 0.0
            refused.append(1)

        try:
            reload()
        finally:
            config.write_bytes(original)
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
        assert daemon.ready()

        # The same daemon still takes a good config: the refusals were about the files.
        config.write_bytes(original + EXTRA_CHECKPOINT.encode())
        answer = daemon.post("/-/reload")
        assert answer.status == 200, answer.body
        assert set(_overview(daemon)) == set(baseline) | {"fuzz_extra"}
        assert daemon.metric("checkpointd_config_last_reload_successful") == 1.0
    finally:
        stop_quietly(daemon)
    figures["invalid_reloads_refused"] = len(refused)
    assert daemon.proc.returncode == 0, daemon.log()[-3000:]


EXTRA_CHECKPOINT = """
  - name: fuzz_extra
    data_source: {type: inline, rows: [{id: 1}]}
    validators:
      - {type: not_null, columns: [id]}
"""


def _valid(path: Path, content: bytes, env: dict[str, str]) -> bool:
    """The oracle: does this content load? (Written aside, so the daemon's file is untouched.)"""
    probe = path.with_name("oracle.yaml")
    probe.write_bytes(content)
    try:
        load_config(probe, env=env)
    except ConfigError:
        return False
    return True


def _overview(daemon) -> dict[str, object]:
    """What the daemon runs: each checkpoint's description and triggers."""
    answer = daemon.get("/api/v1/checkpoints")
    assert answer.status == 200, answer.body
    return {c["name"]: (c["description"], c["triggers"]) for c in answer.json()["checkpoints"]}
