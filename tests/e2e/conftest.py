"""End-to-end tests drive ``checkpointd run`` as a subprocess.

``daemon_loop`` runs a test once per event loop the daemon supports (uvloop and
asyncio). Slow tests pick one loop each instead (see the tests), to keep the
folder's run time reasonable on a 2-core CI machine.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.datagen import write_big_csv

LOOPS = ["uvloop", "asyncio"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def slow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV that takes the SLOW_VALIDATORS about a second to check (a "slow run")."""
    return write_big_csv(tmp_path_factory.mktemp("data") / "big.csv", 300_000)


@pytest.fixture(params=LOOPS)
def daemon_loop(request: pytest.FixtureRequest) -> str:
    """The event loop the daemon under test runs on (``--loop``)."""
    return str(request.param)


class NotifySocket:
    """What systemd offers a ``Type=notify`` service: an AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        """Read every datagram that arrived; all messages so far, one per datagram."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode())

    def lines(self) -> list[str]:
        """Every ``KEY=value`` line received so far, in order."""
        return [line for message in self.drain() for line in message.splitlines()]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # A short path of its own: AF_UNIX paths are limited to 107 bytes and pytest's
    # tmp_path for a long test name can exceed that.
    folder = Path(tempfile.mkdtemp(prefix="cpd-notify-"))
    notify = NotifySocket(folder / "notify.sock")
    try:
        yield notify
    finally:
        notify.close()
        shutil.rmtree(folder, ignore_errors=True)
