"""The store survives SIGKILL: real processes, real SQLite files.

A child process (store_writer_proc.py) journals events and saves runs in a
loop; we kill it with SIGKILL while it is journaling, reopen the state dir and
check that the file is sound, every run the child saw committed is there, and
exactly the journal rows it left unfinished are offered to ``on_recover``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from checkpointd.errors import StateDirInUseError
from checkpointd.store.model import JournalEntry
from checkpointd.store.sqlite.store import DB_FILE_NAME, SqliteStore
from checkpointd.store.statelock import read_lock_holder
from tests.integration.store_writer_proc import CHECKPOINT, ROUND_SIZE, round_events

HELPER = Path(__file__).with_name("store_writer_proc.py")


@contextlib.asynccontextmanager
async def child(mode: str, state_dir: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HELPER),
        mode,
        str(state_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()


async def next_message(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
        if not line:
            errors = await proc.stderr.read()
            raise AssertionError(f"the child exited early:\n{errors.decode()}")
    message: dict[str, Any] = json.loads(line)
    return message


def journal_on_disk(state_dir: Path) -> tuple[str, set[str]]:
    """integrity_check's verdict and the unfinished journal keys, read with plain sqlite3."""
    with contextlib.closing(sqlite3.connect(state_dir / DB_FILE_NAME)) as conn:
        verdict = conn.execute("PRAGMA integrity_check").fetchall()
        unfinished = conn.execute(
            "SELECT key FROM journal WHERE state IN ('accepted', 'running')"
        ).fetchall()
    return ", ".join(row[0] for row in verdict), {row[0] for row in unfinished}


def expected_event(key: str):
    index = int(key.rsplit("/", 1)[1])
    return round_events(index // ROUND_SIZE)[index % ROUND_SIZE]


async def test_sigkill_mid_journaling_loses_nothing_and_recovers_exactly_the_unfinished(
    tmp_path,
):
    state_dir = tmp_path / "state"
    accepted: set[str] = set()
    saved: set[str] = set()
    async with child("work", state_dir) as proc:
        while len(saved) < 20 * ROUND_SIZE:
            message = await next_message(proc)
            accepted.update(message.get("accepted", ()))
            saved.update(message.get("saved", ()))
        # The child has just reported a round saved and is journaling the next one.
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    verdict, unfinished_on_disk = journal_on_disk(state_dir)
    recovered: list[JournalEntry] = []

    async def on_recover(entries: list[JournalEntry]) -> None:
        recovered.extend(entries)

    async with await SqliteStore.open(state_dir, on_recover=on_recover) as store:
        done = {entry.key: entry for entry in await store.journal_entries("done")}
        journal_size = len(await store.journal_entries())
        run_count = await store.count_runs()
        runs = [await store.get_run(entry.run_id or "") for entry in done.values()]
        duplicate = await store.journal_accept(recovered[0].to_event(), CHECKPOINT)

    assert verdict == "ok"
    recovered_keys = {entry.key for entry in recovered}
    assert recovered_keys, "the kill should have left journaled events unfinished"
    assert recovered_keys == unfinished_on_disk  # exactly the unfinished rows, each once
    assert len(recovered) == len(recovered_keys)
    assert saved <= done.keys()  # every save the child saw return is on disk
    assert accepted - done.keys() <= recovered_keys  # every accepted event is done or recovered
    assert journal_size == len(done) + len(recovered)  # nothing in any other state
    # A run and its "done" journal row were committed together, or neither was.
    assert run_count == len(done)
    assert all(run is not None and run.trigger and run.trigger.key == key
               for key, run in zip(done, runs, strict=True))  # fmt: skip
    for entry in recovered:
        original = expected_event(entry.key)
        assert entry.state in ("accepted", "running")
        assert entry.checkpoint == CHECKPOINT
        assert (entry.trigger_type, dict(entry.params), entry.fired_at) == (
            original.type,
            dict(original.params),
            original.fired_at,
        )
    assert duplicate is False  # the journal still refuses a key it has seen


async def test_a_second_process_is_told_which_pid_holds_the_dir_until_it_dies(tmp_path):
    state_dir = tmp_path / "state"
    async with child("hold", state_dir) as holder:
        ready = await next_message(holder)
        assert ready == {"ready": holder.pid}

        with pytest.raises(StateDirInUseError) as in_this_process:
            await SqliteStore.open(state_dir)
        async with child("try-open", state_dir) as other:
            refusal = await next_message(other)
            await other.wait()

        holder.send_signal(signal.SIGKILL)
        await holder.wait()

    assert in_this_process.value.pid == holder.pid
    assert f"state dir {state_dir} in use by pid {holder.pid}" in str(in_this_process.value)
    assert other.returncode == 3
    assert refusal["in_use"] == holder.pid
    assert f"in use by pid {holder.pid}" in refusal["message"]
    # The dead holder's lock went with it; its pid is still in the file until we take over.
    assert read_lock_holder(state_dir) == holder.pid
    async with await SqliteStore.open(state_dir) as store:
        assert store.healthy
        assert read_lock_holder(state_dir) == os.getpid()
