"""Shared pieces of the reliability suite: scale, figures, process sampling, file feeders."""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkpointd.store.sqlite.store import DB_FILE_NAME

ROOT = Path(__file__).resolve().parents[2]
FIGURES_DIR = ROOT / ".cache" / "reliability"
"""Where each test leaves its figures (JSON); ``scripts/reliability`` reads them."""

FORBIDDEN_AT_EXIT = ("Task was destroyed", "Unclosed", "ResourceWarning", "Traceback")
"""Text a clean exit never prints (asyncio's leak reports, unclosed resources, crashes)."""

WARNINGS_ENV = {"PYTHONWARNINGS": "always::ResourceWarning"}
"""ResourceWarning is silent by default: make the daemon report every unclosed resource."""


@dataclass(frozen=True)
class Scale:
    """How hard the suite pushes: ``ci()`` fits a CI run, ``full_scale()`` is the real thing."""

    full: bool
    crash_cycles: int
    check_examples: int
    check_subprocess_examples: int
    reload_examples: int
    burst_requests: int
    soak_seconds: float
    soak_sample_every: float
    soak_warmup: float

    @classmethod
    def ci(cls) -> Scale:
        return cls(
            full=False,
            crash_cycles=5,
            check_examples=150,
            check_subprocess_examples=3,
            reload_examples=25,
            burst_requests=1000,
            soak_seconds=180.0,
            soak_sample_every=5.0,
            soak_warmup=30.0,
        )

    @classmethod
    def full_scale(cls) -> Scale:
        return cls(
            full=True,
            crash_cycles=20,
            check_examples=3000,
            check_subprocess_examples=60,
            reload_examples=300,
            burst_requests=1000,
            soak_seconds=1800.0,
            soak_sample_every=15.0,
            soak_warmup=180.0,
        )


@dataclass
class Figures:
    """Named measurements of one test, for docs/reliability.md."""

    test: str
    mode: str
    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def as_dict(self) -> dict[str, Any]:
        return {"test": self.test, "mode": self.mode, **self.values}


# ------------------------------------------------------------------ the daemon process


def proc_status(pid: int) -> dict[str, int]:
    """Numeric fields of /proc/PID/status (VmRSS, VmHWM in kB; Threads)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


def rss_mib(pid: int) -> float:
    return proc_status(pid)["VmRSS"] / 1024


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory."""
    return proc_status(pid)["VmHWM"] / 1024


def thread_kinds(pid: int) -> tuple[int, int]:
    """(threads Python started, threads native libraries started) in process ``pid``.

    Threads inherit the name of the thread that created them unless they set their own, as
    polars' Rust pools do (``tokio-rt-worker``, ``polars-0``, ...): the threads still named
    like the main thread are the interpreter's (executors, aiosqlite connections)."""
    main = Path(f"/proc/{pid}/comm").read_text().strip()
    python = native = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
        except OSError:
            continue  # the thread ended while we looked
        if name == main:
            python += 1
        else:
            native += 1
    return python, native


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_minute(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (seconds), per minute."""
    if len(times) < 2:
        return 0.0
    result = statistics.linear_regression(times, values)
    return float(result.slope) * 60.0


def integrity_check(state_dir: Path) -> str:
    """``PRAGMA integrity_check`` of the daemon's database ("ok" when sound)."""
    conn = sqlite3.connect(state_dir / DB_FILE_NAME, timeout=30)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def log_mentions(text: str, needles: tuple[str, ...] = FORBIDDEN_AT_EXIT) -> list[str]:
    """The lines of ``text`` that contain any of ``needles``."""
    return [line for line in text.splitlines() if any(n in line for n in needles)]


# ------------------------------------------------------------------ landing files


@dataclass(frozen=True)
class FedFile:
    """One CSV the feeder landed: its path, the file trigger's key, the verdict it deserves."""

    path: Path
    key: str
    expected: str  # "success" or "failure" (a duplicated id fails `unique`)


def land_csv(incoming: Path, staging: Path, name: str, ids: list[int]) -> FedFile:
    """Write a CSV of ``ids`` in ``staging`` and rename it into ``incoming`` (atomic, as a
    careful producer does); the key is computed from what landed."""
    tmp = staging / name
    tmp.write_text("id\n" + "".join(f"{i}\n" for i in ids))
    target = incoming / name
    os.rename(tmp, target)
    st = os.stat(target)
    key = f"file:{target}:{st.st_size}:{st.st_mtime_ns}"
    expected = "failure" if len(set(ids)) != len(ids) else "success"
    return FedFile(target, key, expected)


class FileFeeder(threading.Thread):
    """Lands small CSVs in ``incoming`` every ``interval`` seconds until stopped.

    Runs in a thread so it keeps landing files while the test kills and restarts the daemon.
    About one file in four has a duplicated id (so both verdicts occur).
    """

    def __init__(
        self,
        incoming: Path,
        staging: Path,
        *,
        interval: float,
        seed: int,
        prefix: str = "f",
    ) -> None:
        super().__init__(name="reliability-feeder", daemon=True)
        self.incoming = incoming
        self.staging = staging
        self.interval = interval
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.fed: list[FedFile] = []
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        seq = 0
        try:
            while not self._stop_event.is_set():
                rows = self.rng.randint(1, 40)
                ids = list(range(rows))
                if self.rng.random() < 0.25:
                    ids.append(ids[0])
                fed = land_csv(self.incoming, self.staging, f"{self.prefix}{seq:06d}.csv", ids)
                with self._lock:
                    self.fed.append(fed)
                seq += 1
                self._stop_event.wait(self.interval * self.rng.uniform(0.5, 1.5))
        except BaseException as exc:  # reported by stop(); a silent feeder would hide a bug
            self.error = exc

    def snapshot(self) -> list[FedFile]:
        with self._lock:
            return list(self.fed)

    def stop(self) -> list[FedFile]:
        """Stop landing files; everything landed so far."""
        self._stop_event.set()
        self.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"the feeder failed: {self.error!r}") from self.error
        return self.snapshot()


def wait_seconds(seconds: float) -> None:
    """Sleep (named, so a reader sees the pause is part of the scenario)."""
    time.sleep(seconds)
