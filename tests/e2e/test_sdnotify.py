"""What systemd hears from a ``Type=notify`` daemon, through a real datagram socket."""

from __future__ import annotations

import signal

from tests.e2e.harness import run_daemon, wait_for

CONFIG = """
daemon:
  state_dir: {state}
  log: {{format: json, level: info}}
checkpoints: []
"""

LIFECYCLE = ("READY=1", "RELOADING=1", "STOPPING=1")


def test_ready_reloading_ready_stopping_and_watchdog_pings(tmp_path, notify_socket, daemon_loop):
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "400000"}
    with run_daemon(
        CONFIG.format(state=tmp_path / "state"), tmp_path, env=env, loop=daemon_loop
    ) as daemon:

        def lifecycle() -> list[str]:
            return [line for line in notify_socket.lines() if line in LIFECYCLE]

        assert lifecycle() == ["READY=1"]  # run_daemon waited for /readyz
        # Pinged every WATCHDOG_USEC / 2 while healthy: several pings arrive.
        wait_for(lambda: notify_socket.lines().count("WATCHDOG=1") >= 3, what="watchdog pings")

        daemon.signal(signal.SIGHUP)
        wait_for(lambda: lifecycle() == ["READY=1", "RELOADING=1", "READY=1"], what="reload")
        reloading = next(m for m in notify_socket.messages if m.startswith("RELOADING=1"))
        assert "MONOTONIC_USEC=" in reloading  # systemd's Type=notify-reload needs it

        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        assert lifecycle() == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
        statuses = [line for line in notify_socket.lines() if line.startswith("STATUS=")]
        assert statuses
        assert statuses[-1] == "STATUS=draining"
