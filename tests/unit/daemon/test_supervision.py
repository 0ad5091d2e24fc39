"""No long-lived task of the daemon dies silently: a critical one stops the daemon with exit 1.

The daemon tests run the real :class:`Daemon` in-process (``serve()`` on the test's loop,
a free loopback port, a temporary state dir) and stop it with ``handle_exit()``, as a
signal would.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from checkpointd.config.loader import parse_config
from checkpointd.daemon.app import Daemon
from checkpointd.daemon.looplag import LoopLagMonitor
from checkpointd.daemon.sdnotify import SdNotifier
from checkpointd.daemon.supervision import TaskSupervisor

CONFIG = """
daemon:
  state_dir: ./state
  http: {listen: "127.0.0.1:0"}
checkpoints:
  - name: orders
    data_source: {type: inline, rows: [{id: 1}]}
    validators: [{type: not_null, columns: [id]}]
    triggers: [{type: manual}]
"""


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # the daemon freezes what it built at start-up; tests leave no such heap


class ReadyNotifier(SdNotifier):
    """No systemd; ``is_ready`` is set when the daemon says READY=1."""

    def __init__(self) -> None:
        super().__init__(environ={})
        self.is_ready = asyncio.Event()

    def ready(self) -> bool:
        self.is_ready.set()
        return super().ready()


def _daemon(tmp_path: Path, notifier: SdNotifier | None = None) -> Daemon:
    config = parse_config(CONFIG, base_dir=tmp_path)
    return Daemon(config, registry=CollectorRegistry(), notifier=notifier)


def _events(logs: list[dict[str, object]], event: str) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == event]


async def test_a_critical_task_that_raises_stops_a_running_daemon_with_exit_code_1(tmp_path):
    daemon = _daemon(tmp_path)

    def broken_sensor(lag: float) -> None:
        if daemon.started:
            raise RuntimeError("lag sensor unplugged")

    # The loop-lag monitor is a critical task; its callback's error propagates out of it.
    daemon.looplag = LoopLagMonitor(interval=0.01, on_sample=broken_sensor)

    with capture_logs() as logs:
        async with asyncio.timeout(30):
            code = await daemon.serve()

    assert code == 1
    assert daemon.exit_code == 1
    [ended] = _events(logs, "critical task ended")
    assert ended["task"] == "looplag"
    assert ended["error"] == "RuntimeError('lag sensor unplugged')"
    assert ended["log_level"] == "error"
    [died] = _events(logs, "critical task died; exiting so the supervisor restarts us")
    assert died["task"] == "looplag"
    assert _events(logs, "checkpointd started")  # it was running when the task died
    assert logs[-1]["event"] == "checkpointd stopped"
    assert logs[-1]["exit_code"] == 1
    assert daemon.tasks is not None
    assert len(daemon.tasks) == 0  # nothing outlives serve()


async def test_a_clean_stop_cancels_the_critical_tasks_without_calling_it_a_death(tmp_path):
    notifier = ReadyNotifier()
    daemon = _daemon(tmp_path, notifier)
    stop = asyncio.Event()

    with capture_logs() as logs:
        serving = asyncio.create_task(daemon.serve(shutdown_trigger=stop.wait()))
        async with asyncio.timeout(30):
            await notifier.is_ready.wait()
            assert daemon.control.health()[0]
            stop.set()
            code = await serving

    assert code == 0
    assert not _events(logs, "critical task ended")
    assert not _events(logs, "background task failed")
    assert logs[-1]["event"] == "checkpointd stopped"
    assert logs[-1]["exit_code"] == 0


async def _supervised(body):  # type: ignore[no-untyped-def]
    deaths: list[tuple[str, str]] = []
    async with asyncio.TaskGroup() as group:
        tasks = TaskSupervisor(group, on_death=lambda name, how: deaths.append((name, how)))
        try:
            await body(tasks)
        finally:
            await tasks.close()
    return tasks, deaths


async def test_a_critical_task_that_returns_is_a_death_too():
    async def returns() -> None:
        return None

    async def body(tasks: TaskSupervisor) -> None:
        await asyncio.wait([tasks.spawn(returns(), "sweeper", critical=True)])

    tasks, deaths = await _supervised(body)

    assert deaths == [("sweeper", "returned")]
    assert tasks.dead == "sweeper"


async def test_a_failing_background_task_is_logged_and_leaves_the_others_running():
    async def fails() -> None:
        raise ValueError("bad reload")

    async def body(tasks: TaskSupervisor) -> None:
        steady = tasks.spawn(asyncio.sleep(3600), "steady", critical=True)
        await asyncio.wait([tasks.spawn(fails(), "reload")])
        assert not steady.done()

    with capture_logs() as logs:
        tasks, deaths = await _supervised(body)

    assert deaths == []
    assert tasks.dead is None
    [failed] = _events(logs, "background task failed")
    assert failed["task"] == "reload"
    assert failed["error"] == "ValueError('bad reload')"


async def test_a_released_task_may_end_and_close_cancels_without_deaths():
    async def body(tasks: TaskSupervisor) -> None:
        watcher = tasks.spawn(asyncio.sleep(0), "watch-config", critical=True)
        tasks.release(watcher)
        await asyncio.wait([watcher])
        tasks.spawn(asyncio.sleep(3600), "looplag", critical=True)

    tasks, deaths = await _supervised(body)

    assert deaths == []
    assert tasks.closed
    with pytest.raises(RuntimeError, match="shutting down"):
        tasks.spawn(asyncio.sleep(0), "late")
