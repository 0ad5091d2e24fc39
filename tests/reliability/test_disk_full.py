"""A full disk under the state dir: refuse new work, stay up, recover alone.

The state dir lives on a small file system of its own, a tmpfs the test mounts (a loop-
mounted ext4 image when tmpfs is refused). The test fills it with a filler file while files
keep landing, then deletes the filler. Meanwhile the daemon must not exit or restart (a
restart makes no room), must stay live (``/healthz`` 200, so no supervisor kills it), must
accept no file it cannot journal, and once space returns must catch up by itself: every
landed file gets exactly one run. ``/readyz`` must say 503 while the store cannot write.

Mounting needs root (CAP_SYS_ADMIN); the test fails, with that reason, where it has neither.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkpointd.errors import StoreError
from checkpointd.store.sqlite.store import SqliteStore
from tests.e2e.harness import query_state, run_daemon, wait_for
from tests.reliability.support import FedFile, FileFeeder, integrity_check, land_csv

FS_SIZE_MIB = 6

CONFIG = """
daemon:
  state_dir: {state}
  graceful_shutdown_timeout: 5s
  log: {{format: json, level: info}}
checkpoints:
  - name: landing
    data_source: {{type: csv, path: "{{trigger.path}}"}}
    validators:
      - {{type: not_null, columns: [id]}}
      - {{type: unique, columns: [id]}}
    triggers:
      - {{type: file, directory: {incoming}, pattern: "*.csv", stable_for: 100ms,
          poll_interval: 50ms}}
"""


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A FS_SIZE_MIB file system mounted at a fresh directory, unmounted afterwards."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    tried = []
    done = _run("mount", "-t", "tmpfs", "-o", f"size={FS_SIZE_MIB}m", "tmpfs", str(mount_point))
    if done.returncode != 0:
        tried.append(f"tmpfs: {done.stderr.strip()}")
        image = tmp_path / "small-fs.img"
        with image.open("wb") as fh:
            fh.truncate(FS_SIZE_MIB * 1024 * 1024)
        made = _run("mkfs.ext4", "-q", "-F", str(image))
        done = (
            _run("mount", "-o", "loop", str(image), str(mount_point))
            if made.returncode == 0
            else made
        )
        if done.returncode != 0:
            tried.append(f"loop ext4: {done.stderr.strip()}")
            pytest.fail(
                "cannot mount a small file system for the disk-full test (needs root): "
                + "; ".join(tried)
            )
    try:
        yield mount_point
    finally:
        if _run("umount", str(mount_point)).returncode != 0:
            _run("umount", "-l", str(mount_point))


def fill(fs: Path) -> Path:
    """Write zeros into ``fs`` until not one more byte fits; the filler's path."""
    filler = fs / "filler"
    with filler.open("wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                written = fh.write(b"\0" * size)
                while written:  # until the file system takes no more bytes of this size
                    written = fh.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def _runs_by_key(state: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, status in query_state(state, "SELECT journal_key, status FROM runs"):
        out.setdefault(key, []).append(status)
    return out


def _start(tmp_path: Path, state: Path) -> tuple[str, Path, Path]:
    incoming, staging = tmp_path / "incoming", tmp_path / "staging"
    incoming.mkdir()
    staging.mkdir()
    return CONFIG.format(state=state, incoming=incoming), incoming, staging


def test_a_full_state_disk_pauses_intake_without_crashing_and_recovers_alone(
    tmp_path, small_fs, figures
):
    state = small_fs / "state"
    text, incoming, staging = _start(tmp_path, state)
    with run_daemon(text, tmp_path, loop="uvloop") as daemon:
        pid = daemon.proc.pid
        before = [land_csv(incoming, staging, f"before{i}.csv", [1, 2, 3]) for i in range(3)]
        wait_for(lambda: len(_runs_by_key(state)) == 3, what="the first three runs")

        filler = fill(small_fs)
        feeder = FileFeeder(incoming, staging, interval=0.2, seed=3, prefix="during")
        feeder.start()
        try:
            wait_for(
                lambda: "store cannot write" in daemon.log(),
                timeout=30,
                what="the store noticing the full disk",
            )
            # Files that landed before SQLite ran out of room in its WAL may have run.
            runs_at_detection = len(_runs_by_key(state))
            full_since = time.monotonic()
            # Stay full for a while: the daemon must neither exit nor take work it cannot keep.
            while time.monotonic() - full_since < 5:
                assert daemon.proc.poll() is None, daemon.log()[-3000:]
                assert daemon.get("/healthz").status == 200, (
                    "liveness failed: a supervisor would restart it"
                )
                time.sleep(0.5)
            runs_while_full = len(_runs_by_key(state))
        finally:
            during = feeder.stop()
        figures["files_landed_while_full"] = len(during)

        os.unlink(filler)
        freed = time.monotonic()
        landed: list[FedFile] = before + during
        wait_for(
            lambda: len(_runs_by_key(state)) >= len(landed),
            timeout=90,
            interval=0.5,
            what="every file landed while the disk was full",
        )
        figures["seconds_to_catch_up_after_space_returned"] = round(time.monotonic() - freed, 1)
        assert daemon.proc.pid == pid, "the daemon restarted"
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
        wait_for(daemon.ready, timeout=30, what="/readyz after space returned")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.log()[-3000:]

    runs = _runs_by_key(state)
    figures["runs_recorded_after_the_store_reported_full"] = runs_while_full - runs_at_detection
    assert runs_while_full == runs_at_detection, "runs were recorded while the store said full"
    assert {f.key for f in landed} == set(runs)
    assert all(len(statuses) == 1 for statuses in runs.values()), "an event ran twice"
    assert {f.key: f.expected for f in landed} == {k: v[0] for k, v in runs.items()}
    assert integrity_check(state) == "ok"


def test_readyz_is_503_while_the_state_disk_is_full_and_200_once_space_returns(tmp_path, small_fs):
    state = small_fs / "state"
    text, incoming, staging = _start(tmp_path, state)
    with run_daemon(text, tmp_path, loop="asyncio") as daemon:
        filler = fill(small_fs)
        land_csv(incoming, staging, "while-full.csv", [1, 2])
        wait_for(lambda: not daemon.ready(), timeout=15, what="/readyz turning 503")
        body = daemon.get("/readyz").json()
        assert body["store_writable"] is False, body
        assert daemon.get("/healthz").status == 200

        os.unlink(filler)
        # Nothing else needs to write: the store's own probe notices the space.
        wait_for(daemon.ready, timeout=30, what="/readyz back to 200 on its own")
        wait_for(lambda: len(_runs_by_key(state)) == 1, timeout=60, what="the deferred file's run")


def test_the_filler_really_fills_the_file_system(small_fs):
    """Guards the scenario itself: after fill() not even one more page fits."""
    filler = fill(small_fs)
    try:
        fd = os.open(small_fs / "probe", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError, match="No space left") as info:
                os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
        assert info.value.errno == errno.ENOSPC
        assert shutil.disk_usage(small_fs).free < 4096
    finally:
        filler.unlink()


async def _write_until_it_fails(store: SqliteStore) -> None:
    for i in range(10_000):  # the WAL may still have room for a few pages
        await store.set_state("test", f"k{i}", "x" * 4000)


async def test_the_store_turns_unwritable_on_a_full_disk_and_notices_space_on_its_own(small_fs):
    """The store side of it: a write failing with SQLITE_FULL makes ``writable`` False (but
    ``healthy`` stays True: the writer lives on), and the probe write brings it back without
    any other write once space returns."""
    store = await SqliteStore.open(small_fs / "state", probe_interval=0.1)
    try:
        await store.set_state("test", "before", "1")
        assert store.writable
        filler = fill(small_fs)
        with pytest.raises(StoreError, match="full"):
            await _write_until_it_fails(store)
        assert not store.writable
        assert store.healthy
        assert store.unwritable_reason is not None
        assert "disk is full" in store.unwritable_reason
        assert await store.get_state("test", "before") == "1"  # reads still work

        filler.unlink()
        for _ in range(100):
            if store.writable:
                break
            await asyncio.sleep(0.05)
        assert store.writable, "the probe did not notice that space returned"
        await store.set_state("test", "after", "1")
    finally:
        await store.close()
    assert integrity_check(small_fs / "state") == "ok"
