"""pytest plugin: a real Apache Kafka broker on 127.0.0.1 for the tests that need one.

Enable it with ``pytest_plugins = ["tests.kafka_broker"]`` in tests/conftest.py.

Fixtures:

- ``kafka_bootstrap`` (session): runs ``scripts/kafka-broker start`` once and returns
  ``"127.0.0.1:9092"``. A broker already running from an earlier ``start`` is reused.
  If the broker cannot start, every test that needs it fails with the broker's log
  tail; it never skips, so CI cannot go green without Kafka.
- ``unique_topic`` (function): a fresh topic name for this test (not created).
- ``broker_control`` (function): a :class:`BrokerControl` to stop, kill, start and
  restart the broker (outage tests); the broker is running again after the test.

Helpers: :func:`create_topic`, :func:`make_topic_name`.

Every test that uses ``kafka_bootstrap`` or ``broker_control`` is marked ``kafka``
automatically, so ``pytest -m "not kafka"`` runs without a broker.

Several pytest sessions may share one broker (engineers and CI in one checkout). Each
session holds a lease file while it runs; a broker that a test session started is
stopped by the last session to leave, and a broker started by hand is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "kafka-broker"
KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "broker_control"})

# First start may download the jars with Maven; that can take minutes on a slow mirror.
START_TIMEOUT_SECONDS = 600.0
COMMAND_TIMEOUT_SECONDS = 120.0
TOPIC_READY_SECONDS = 30.0


class BrokerUnavailable(Exception):
    """scripts/kafka-broker failed; the message carries its output and the log tail."""


@dataclass(frozen=True)
class BrokerStart:
    """What ``scripts/kafka-broker start`` reported on stdout."""

    bootstrap: str
    pid: int
    reused: bool


def parse_start_output(stdout: str) -> BrokerStart:
    """Read the ``key=value`` lines that ``start`` prints."""
    values = dict(
        line.split("=", 1) for line in stdout.splitlines() if re.match(r"^[a-z_]+=", line)
    )
    try:
        return BrokerStart(
            bootstrap=values["bootstrap"],
            pid=int(values["pid"]),
            reused=values["reused"] == "true",
        )
    except (KeyError, ValueError) as exc:
        raise BrokerUnavailable(f"unexpected output from kafka-broker start: {stdout!r}") from exc


def run_dir(env: Mapping[str, str]) -> Path:
    """The broker's runtime folder, resolved the way scripts/kafka-broker resolves it."""
    if env.get("KAFKA_BROKER_DIR"):
        return Path(env["KAFKA_BROKER_DIR"]).resolve()
    cache = Path(env.get("CHECKPOINTD_CACHE") or REPO / ".cache")
    return (cache / "kafka-run").resolve()


def run_broker_script(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    """Run scripts/kafka-broker with the test interpreter; never raises on exit codes."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=dict(env if env is not None else os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_broker(env: Mapping[str, str] | None = None, *, keep_data: bool = False) -> BrokerStart:
    """``scripts/kafka-broker start``; raises BrokerUnavailable with its output on failure."""
    args = ["start", "--keep-data"] if keep_data else ["start"]
    done = run_broker_script(*args, env=env, timeout=START_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise BrokerUnavailable(
            f"scripts/kafka-broker {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout}{done.stderr}"
        )
    return parse_start_output(done.stdout)


class BrokerControl:
    """Stop, kill and start one broker from inside a test, without blocking the event loop.

    ``env`` selects the broker (KAFKA_PORT, KAFKA_BROKER_DIR...); by default the
    session's shared broker.
    """

    def __init__(self, bootstrap: str, env: Mapping[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self._env = dict(env if env is not None else os.environ)

    async def _run(self, *args: str, limit: float = COMMAND_TIMEOUT_SECONDS) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            *args,
            env=self._env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(limit):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise BrokerUnavailable(f"kafka-broker {' '.join(args)} took over {limit} s") from None
        if process.returncode != 0:
            raise BrokerUnavailable(
                f"kafka-broker {' '.join(args)} exited {process.returncode}:\n"
                f"{stdout.decode()}{stderr.decode()}"
            )
        return stdout.decode()

    async def stop(self) -> None:
        """Graceful shutdown (SIGTERM); returns once the process is gone."""
        await self._run("stop")

    async def kill(self) -> None:
        """SIGKILL, as a crash would; returns once the process is gone."""
        await self._run("kill")

    async def start(self) -> None:
        """Start again with the same data (topics, offsets) and wait until it answers."""
        await self._run("start", "--keep-data", limit=START_TIMEOUT_SECONDS)

    async def restart(self) -> None:
        """Graceful stop, then start with the same data."""
        await self._run("restart", limit=START_TIMEOUT_SECONDS)

    async def is_running(self) -> bool:
        """True when the broker process is alive and answers metadata requests."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "status",
            env=self._env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await process.wait() == 0


def make_topic_name(label: str) -> str:
    """A topic name unique to this call, readable in broker logs (``t-<label>-<hex>``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")[:60] or "topic"
    return f"t-{cleaned}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create a topic and wait until every partition has a leader.

    Raises RuntimeError if the broker refuses (including "already exists": tests
    should use fresh names from ``unique_topic`` / :func:`make_topic_name`).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(TOPIC_READY_SECONDS):
            response = await admin.create_topics([NewTopic(name, partitions, 1)])
            for topic, code, message in response.topic_errors:
                if code != 0:
                    raise RuntimeError(f"creating topic {topic!r} failed: error {code} {message}")
            # Metadata is eventually consistent: poll until the leaders show up.
            while True:
                if await _has_leaders(admin, name, partitions):
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _has_leaders(admin: AIOKafkaAdminClient, name: str, partitions: int) -> bool:
    (described,) = await admin.describe_topics([name])
    ready = [p for p in described["partitions"] if p["error_code"] == 0 and p["leader"] >= 0]
    return described["error_code"] == 0 and len(ready) == partitions


# --------------------------------------------------------------------------- session leases


@contextlib.contextmanager
def _leases_locked(directory: Path) -> Iterator[Path]:
    leases = directory / "sessions"
    leases.mkdir(parents=True, exist_ok=True)
    with (directory / "sessions.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield leases
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_leases(leases: Path) -> list[int]:
    live = []
    for lease in leases.iterdir():
        if lease.name.isdigit() and _pid_alive(int(lease.name)):
            live.append(int(lease.name))
        else:
            lease.unlink(missing_ok=True)  # left by a session that died
    return live


def acquire_session_broker(env: Mapping[str, str]) -> BrokerStart:
    """Start (or reuse) the broker and register this process as one of its users."""
    directory = run_dir(env)
    with _leases_locked(directory) as leases:
        started = start_broker(env)
        if not started.reused:
            (directory / "started-by-tests").write_text(f"{os.getpid()}\n")
        (leases / str(os.getpid())).touch()
        return started


def release_session_broker(env: Mapping[str, str]) -> None:
    """Drop this process's lease; the last user of a test-started broker stops it."""
    directory = run_dir(env)
    with _leases_locked(directory) as leases:
        (leases / str(os.getpid())).unlink(missing_ok=True)
        owned = directory / "started-by-tests"
        if owned.exists() and not _live_leases(leases):
            done = run_broker_script("stop", env=env)
            if done.returncode != 0:
                raise BrokerUnavailable(f"kafka-broker stop failed:\n{done.stdout}{done.stderr}")
            owned.unlink(missing_ok=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of the real broker, started for this session if needed."""
    env = dict(os.environ)
    try:
        started = acquire_session_broker(env)
    except (BrokerUnavailable, subprocess.TimeoutExpired, OSError) as exc:
        pytest.fail(
            f"the Kafka broker could not start (Kafka tests never skip):\n{exc}", pytrace=False
        )
    yield started.bootstrap
    release_session_broker(env)


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses; create it with :func:`create_topic` if needed."""
    return make_topic_name(request.node.name)


@pytest.fixture
def broker_control(kafka_bootstrap: str) -> Iterator[BrokerControl]:
    """Control over the session broker; it is running again when the test ends."""
    control = BrokerControl(kafka_bootstrap)
    yield control
    if run_broker_script("status").returncode != 0:
        start_broker(keep_data=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the broker ``kafka``."""
    for item in items:
        if KAFKA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)
