"""``checkpointd run``: choose the event loop, set up logging, refuse unsafe listening, serve."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable

import structlog

from checkpointd.config.models import Config
from checkpointd.daemon.http import is_loopback
from checkpointd.logs import configure_logging

EXIT_USAGE = 2

IDLE_THREAD_EXIT_SECONDS = 0.2
"""How long exit waits, in all, for run threads to notice the executor shut down."""


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when asked for and installed; asyncio's default loop otherwise."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            structlog.get_logger("checkpointd").warning(
                "uvloop is not installed; using the asyncio loop"
            )
            return asyncio.new_event_loop
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def unsafe_listen_reason(config: Config, insecure: bool) -> str | None:
    """Why the daemon must not start listening, or None when it may."""
    http = config.daemon.http
    if http.token is None and not is_loopback(http.host) and not insecure:
        return (
            f"refusing to listen on {http.listen} without a token: set daemon.http.token "
            "(or CHECKPOINTD_HTTP_TOKEN), listen on 127.0.0.1, or pass --insecure"
        )
    return None


def run_daemon_cli(config: Config, *, loop: str | None = None, insecure: bool = False) -> int:
    d = config.daemon
    configure_logging(d.log.level, d.log.format)
    reason = unsafe_listen_reason(config, insecure)
    if reason is not None:
        print(f"checkpointd: {reason}", file=sys.stderr)
        return EXIT_USAGE
    from checkpointd.daemon.app import RUN_THREAD_PREFIX, Daemon

    daemon = Daemon(config, insecure=insecure)
    with asyncio.Runner(loop_factory=loop_factory(loop or d.loop)) as runner:
        code = runner.run(daemon.serve())
    run_threads = [t for t in threading.enumerate() if t.name.startswith(RUN_THREAD_PREFIX)]
    # Idle workers exit at once after executor.shutdown(); one short deadline for them all,
    # not one per thread, or twenty busy threads would add seconds to the drain timeout.
    deadline = time.monotonic() + IDLE_THREAD_EXIT_SECONDS
    for thread in run_threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    busy = [t.name for t in run_threads if t.is_alive()]
    if busy:
        # Everything durable is flushed and closed by now; what is left are worker threads
        # still inside polars for runs that were cancelled (they cannot be interrupted).
        # Waiting for them would break the drain timeout operators rely on.
        structlog.get_logger("checkpointd").warning(
            "exiting with run threads still busy in cancelled runs", threads=len(busy)
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
