"""sd_notify: messages reach a real AF_UNIX datagram socket, as systemd would receive them."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs

from checkpointd.daemon.sdnotify import SdNotifier
from checkpointd.logs import reset_logging


@pytest.fixture(autouse=True)
def _reset_logging():
    reset_logging()
    yield
    reset_logging()


@dataclass
class NotifySocket:
    """The receiving end systemd would hold; ``env_value`` is what goes in NOTIFY_SOCKET."""

    sock: socket.socket
    env_value: str

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def receive(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        self.sock.setblocking(False)
        out = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out

    async def receive_async(self) -> str:
        self.sock.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            return (await loop.sock_recv(self.sock, 4096)).decode()


def _path_socket() -> Iterator[NotifySocket]:
    # A short directory: AF_UNIX paths are limited to 108 bytes.
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield NotifySocket(sock, path)
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def _abstract_socket() -> Iterator[NotifySocket]:
    name = f"checkpointd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield NotifySocket(sock, "@" + name)
    finally:
        sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request) -> Iterator[NotifySocket]:
    yield from (_path_socket() if request.param == "path" else _abstract_socket())


@pytest.fixture
def path_socket() -> Iterator[NotifySocket]:
    yield from _path_socket()


# ---------------------------------------------------------------- messages


def test_without_notify_socket_everything_is_a_quiet_no_op():
    notifier = SdNotifier({})

    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_ready_reaches_the_socket(notify_socket):
    notifier = SdNotifier(notify_socket.env())

    assert notifier.enabled
    assert notifier.ready() is True
    assert notify_socket.receive() == "READY=1"


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (lambda n: n.stopping(), "STOPPING=1"),
        (lambda n: n.watchdog(), "WATCHDOG=1"),
        (lambda n: n.status("draining 3 runs"), "STATUS=draining 3 runs"),
        (lambda n: n.status("line one\nline two"), "STATUS=line one line two"),
    ],
)
def test_each_message_has_the_systemd_wording(notify_socket, send, expected):
    notifier = SdNotifier(notify_socket.env())

    send(notifier)

    assert notify_socket.receive() == expected


def test_reloading_carries_the_monotonic_time_in_microseconds(notify_socket):
    notifier = SdNotifier(notify_socket.env())

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    first, second = notify_socket.receive().split("\n")
    assert first == "RELOADING=1"
    key, _, usec = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after


def test_a_vanished_socket_never_raises_and_is_logged_once(path_socket):
    notifier = SdNotifier(path_socket.env())
    os.unlink(path_socket.env_value)

    with capture_logs() as logs:
        assert notifier.ready() is False
        assert notifier.watchdog() is False

    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["socket"] == path_socket.env_value


def test_a_socket_that_returns_is_used_again(path_socket):
    notifier = SdNotifier(path_socket.env())
    path = path_socket.env_value
    os.rename(path, path + ".away")
    assert notifier.ready() is False

    os.rename(path + ".away", path)

    assert notifier.ready() is True
    assert path_socket.receive() == "READY=1"


# ---------------------------------------------------------------- watchdog


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "init"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process(env, interval):
    notifier = SdNotifier({"NOTIFY_SOCKET": "/run/systemd/notify", **env})

    assert notifier.watchdog_interval() == interval


async def test_watchdog_loop_pings_while_healthy_and_stops_when_not(notify_socket):
    notifier = SdNotifier(notify_socket.env(WATCHDOG_USEC="100000"))  # ping every 50 ms
    healthy = True
    task = asyncio.create_task(notifier.watchdog_loop(lambda: healthy))
    try:
        assert await notify_socket.receive_async() == "WATCHDOG=1"
        assert await notify_socket.receive_async() == "WATCHDOG=1"

        healthy = False
        await asyncio.sleep(0.1)
        notify_socket.pending()  # pings sent before the flag flipped
        await asyncio.sleep(0.3)
        assert notify_socket.pending() == []

        healthy = True
        assert await notify_socket.receive_async() == "WATCHDOG=1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_health_check_that_raises_withholds_the_ping(notify_socket):
    notifier = SdNotifier(notify_socket.env())

    def broken() -> bool:
        raise RuntimeError("store unreachable")

    with capture_logs() as logs:
        task = asyncio.create_task(notifier.watchdog_loop(broken, interval=0.02))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert notify_socket.pending() == []
    assert logs
    assert all(line["log_level"] == "error" for line in logs)
    assert "store unreachable" in logs[0]["error"]


@pytest.mark.parametrize(
    "env",
    [{}, {"WATCHDOG_USEC": "30000000"}, {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "x"}],
)
async def test_watchdog_loop_returns_at_once_when_the_watchdog_is_off(env):
    notifier = SdNotifier(env)

    async with asyncio.timeout(5):
        await notifier.watchdog_loop(lambda: True)
