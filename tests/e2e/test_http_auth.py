"""The bearer token on mutating calls, and refusing to listen openly without one."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.datagen import write_ids_csv
from tests.e2e.harness import free_port, run_daemon, start_daemon, stop_quietly, wait_for

CONFIG = """
daemon:
  state_dir: {state}
  http: {{token: "{token}"}}
  log: {{format: json, level: info}}
checkpoints:
  - name: small
    data_source: {{type: csv, path: {data}}}
    validators:
      - {{type: not_null, columns: [id]}}
"""

OPEN_CONFIG = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
checkpoints: []
"""


def test_mutating_calls_need_the_token_and_reads_do_not(tmp_path, daemon_loop):
    data = write_ids_csv(tmp_path / "ids.csv", [1])
    text = CONFIG.format(state=tmp_path / "state", token="s3cret", data=data)
    with run_daemon(text, tmp_path, loop=daemon_loop) as daemon:
        for path in ("/api/v1/checkpoints/small/runs", "/-/reload"):
            missing = daemon.post(path, token="")
            assert missing.status == 401, (path, missing.body)
            assert "bearer token" in missing.json()["error"]
            assert daemon.post(path, token="wrong").status == 401
        assert daemon.runs() == []  # nothing ran without the token

        assert daemon.post("/api/v1/checkpoints/small/runs", token="s3cret").status == 202
        assert daemon.post("/-/reload", token="s3cret").status == 200
        for path in ("/healthz", "/readyz", "/metrics", "/api/v1/checkpoints", "/api/v1/runs"):
            assert daemon.get(path, token="").status == 200, path

        # A reload rotates the token: the old one stops working at once.
        daemon.config_path.write_text(
            CONFIG.format(state=tmp_path / "state", token="n3w", data=data)
        )
        assert daemon.post("/-/reload", token="s3cret").status == 200
        assert daemon.post("/api/v1/checkpoints/small/runs", token="s3cret").status == 401
        assert daemon.post("/api/v1/checkpoints/small/runs", token="n3w").status == 202
        wait_for(lambda: len(daemon.runs()) == 2, what="the two authorised runs")


def test_refuses_to_listen_on_all_interfaces_without_a_token_unless_insecure(tmp_path, daemon_loop):
    config = tmp_path / "checkpointd.yaml"
    config.write_text(OPEN_CONFIG.format(state=tmp_path / "state"))
    port = free_port()
    env = {"CHECKPOINTD_HTTP_LISTEN": f"0.0.0.0:{port}"}
    refused = subprocess.run(
        [sys.executable, "-m", "checkpointd", "run", "-c", str(config), "--loop", daemon_loop],
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "refusing to listen on 0.0.0.0" in refused.stderr
    assert "--insecure" in refused.stderr
    assert not (tmp_path / "state").exists()  # it stopped before touching anything

    daemon = start_daemon(
        config,
        port=port,
        log_path=tmp_path / "daemon.log",
        env=env,
        args=["--insecure"],
        loop=daemon_loop,
    )
    try:
        assert daemon.ready()  # reachable on loopback, as 0.0.0.0 includes it
    finally:
        stop_quietly(daemon)
    assert daemon.proc.returncode == 0


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CHECKPOINTD_HTTP_TOKEN", None)
    env.pop("NOTIFY_SOCKET", None)
    return env
