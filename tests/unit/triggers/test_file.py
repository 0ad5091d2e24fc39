"""The file trigger on real files: what fires, what never does, and what survives a restart.

Polls are fast (30–50 ms) and every wait is a bounded poll for a condition; "never fires" is
checked after the trigger has completed scans well past ``stable_for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from checkpointd.config.models import FileTrigger
from checkpointd.events import TriggerEvent
from checkpointd.protocols import TriggerSource
from checkpointd.triggers.file import FileSource
from checkpointd.triggers.file_listing import scan_directories
from checkpointd.triggers.file_move import move_file
from checkpointd.triggers.filescan import Rules

FAST = {"poll_interval": "30ms", "stable_for": "100ms"}


class MemoryState:
    """An in-memory StateStore that counts the queries it answers."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}
        self.values: dict[tuple[str, str], str] = {}
        self.has_seen_calls = 0

    async def get_state(self, namespace: str, key: str) -> str | None:
        return self.values.get((namespace, key))

    async def set_state(self, namespace: str, key: str, value: str) -> None:
        self.values[(namespace, key)] = value

    async def has_seen(self, namespace: str, key: str) -> bool:
        self.has_seen_calls += 1
        return key in self.seen.get(namespace, set())

    async def mark_seen(self, namespace: str, keys: Sequence[str]) -> None:
        self.seen.setdefault(namespace, set()).update(keys)


class Recorder:
    """An emit that records events and answers ``accept`` (True: journaled)."""

    def __init__(self, accept: bool = True) -> None:
        self.events: list[TriggerEvent] = []
        self.accept = accept

    async def __call__(self, event: TriggerEvent) -> bool:
        self.events.append(event)
        return self.accept

    @property
    def names(self) -> list[str]:
        return [e.params["name"] for e in self.events]


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


async def more_scans(source: FileSource, count: int) -> None:
    target = source.scans + count
    await wait_for(lambda: source.scans >= target)


async def settle(source: FileSource, scans: int = 3, stable_for: float = 0.1) -> None:
    """Let the trigger complete `scans` more scans spanning more than `stable_for`."""
    target = source.scans + scans
    not_before = time.monotonic() + stable_for * 1.5
    await wait_for(lambda: source.scans >= target and time.monotonic() > not_before)


@contextlib.asynccontextmanager
async def running(source: FileSource, emit: Any) -> AsyncIterator[FileSource]:
    task = asyncio.create_task(source.run(emit))
    try:
        await wait_for(lambda: source.scans >= 1 or task.done())
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_source(directory: Path, state: MemoryState | None = None, **options: Any) -> FileSource:
    extra = {k: options.pop(k) for k in ("on_refused", "watch") if k in options}
    spec = FileTrigger(type="file", directory=directory, **{**FAST, **options})
    return FileSource("landing", 0, spec, state=state or MemoryState(), **extra)


def write(path: Path, data: bytes = b"id\n1\n", mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


@pytest.fixture(autouse=True)
def _plain_structlog() -> Any:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


# ---------------------------------------------------------------- firing


async def test_a_file_renamed_from_part_fires_once_after_stable_for(tmp_path):
    emit = Recorder()
    async with running(make_source(tmp_path), emit) as source:
        part = write(tmp_path / "orders.csv.part", b"id\n1\n2\n")
        await settle(source)
        assert emit.events == []
        part.rename(tmp_path / "orders.csv")
        await wait_for(lambda: len(emit.events) == 1)
        await settle(source)
    (event,) = emit.events
    st = (tmp_path / "orders.csv").stat()
    path = str(tmp_path / "orders.csv")
    assert event.type == "file"
    assert event.checkpoint == "landing"
    assert event.key == f"file:{path}:{st.st_size}:{st.st_mtime_ns}"
    assert dict(event.params) == {
        "path": path,
        "name": "orders.csv",
        "directory": str(tmp_path),
        "root": str(tmp_path),
        "relative_path": "orders.csv",
        "size": str(st.st_size),
        "mtime_ns": str(st.st_mtime_ns),
    }
    trigger: TriggerSource = source  # the daemon's protocol, checked by mypy
    assert trigger.name == "landing/file[0]"


async def test_a_growing_file_fires_only_once_it_stops_changing(tmp_path):
    emit = Recorder()
    target = tmp_path / "big.csv"
    # No two scans ever see the same size, so no scan may find the file stable early.
    async with running(make_source(tmp_path, stable_for="1s"), emit) as source:
        for i in range(8):
            with target.open("ab") as out:
                out.write(b"row %d\n" % i)
            await more_scans(source, 2)
        assert emit.events == []
        await wait_for(lambda: len(emit.events) == 1)
        await settle(source, stable_for=1.0)
    assert [e.params["size"] for e in emit.events] == [str(target.stat().st_size)]


async def test_dotfiles_ignored_names_and_pattern_mismatches_never_fire(tmp_path):
    for name in (".hidden.csv", "upload.tmp", "orders.csv.part", "notes.json", "sub.csv/x.csv"):
        write(tmp_path / name)
    emit = Recorder()
    refused: list[str] = []
    source = make_source(tmp_path, pattern="*.csv", on_refused=refused.append)
    async with running(source, emit):
        write(tmp_path / "good.csv")
        await wait_for(lambda: emit.names == ["good.csv"])
        await settle(source)
    assert emit.names == ["good.csv"]
    assert refused == ["not_regular"]  # the directory named sub.csv


async def test_with_a_marker_files_wait_for_it_and_the_marker_never_fires(tmp_path):
    write(tmp_path / "part-0.csv")
    write(tmp_path / "part-1.csv")
    emit = Recorder()
    async with running(make_source(tmp_path, marker="_SUCCESS"), emit) as source:
        await settle(source)
        assert emit.events == []
        write(tmp_path / "_SUCCESS", b"")
        await wait_for(lambda: len(emit.events) == 2)
        await settle(source)
    assert sorted(emit.names) == ["part-0.csv", "part-1.csv"]


async def test_recursive_scans_sub_directories_but_not_hidden_ones(tmp_path):
    write(tmp_path / "a.csv")
    write(tmp_path / "day=1" / "deep" / "b.csv")
    write(tmp_path / ".staging" / "c.csv")
    emit = Recorder()
    async with running(make_source(tmp_path, recursive=True), emit) as source:
        await wait_for(lambda: len(emit.events) == 2)
        await settle(source)
    by_name = {e.params["name"]: e for e in emit.events}
    assert sorted(by_name) == ["a.csv", "b.csv"]
    assert by_name["b.csv"].params["relative_path"] == "day=1/deep/b.csv"
    assert by_name["b.csv"].params["directory"] == str(tmp_path / "day=1" / "deep")


async def test_without_recursive_sub_directories_are_not_scanned(tmp_path):
    write(tmp_path / "day=1" / "b.csv")
    emit = Recorder()
    refused: list[str] = []
    source = make_source(tmp_path, pattern="*.csv", on_refused=refused.append)
    async with running(source, emit):
        write(tmp_path / "a.csv")
        await wait_for(lambda: len(emit.events) == 1)
        await settle(source)
    assert emit.names == ["a.csv"]
    assert refused == []


# ---------------------------------------------------------------- refusals


async def test_symlinks_are_refused_inside_or_outside_and_logged_once(tmp_path):
    watched = tmp_path / "in"
    secret = write(tmp_path / "outside" / "secret.csv")
    real = write(watched / "real.csv")
    (watched / "escape.csv").symlink_to(secret)
    (watched / "alias.csv").symlink_to(real)
    emit = Recorder()
    refused: list[str] = []
    with capture_logs() as logs:
        source = make_source(watched, on_refused=refused.append)
        async with running(source, emit):
            await wait_for(lambda: len(emit.events) == 1)
            await settle(source)
    assert emit.names == ["real.csv"]
    assert sorted(refused) == ["outside", "symlink"]
    warnings = {
        Path(line["path"]).name: line["reason"] for line in logs if line["event"] == "file refused"
    }
    assert warnings == {"escape.csv": "outside", "alias.csv": "symlink"}
    assert sum(line["event"] == "file refused" for line in logs) == 2


async def test_a_fifo_is_refused_without_blocking_the_trigger(tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")
    emit = Recorder()
    refused: list[str] = []
    source = make_source(tmp_path, on_refused=refused.append)
    async with running(source, emit):
        write(tmp_path / "after.csv")
        await wait_for(lambda: emit.names == ["after.csv"])
        await settle(source)
    assert refused == ["not_regular"]
    assert emit.names == ["after.csv"]


# ---------------------------------------------------------------- once per version


async def test_a_restart_with_the_same_store_fires_only_files_it_has_not_seen(tmp_path):
    state = MemoryState()
    write(tmp_path / "old.csv")
    first = Recorder()
    async with running(make_source(tmp_path, state), first):
        await wait_for(lambda: first.names == ["old.csv"])
    write(tmp_path / "landed_while_down.csv")
    second = Recorder()
    async with running(make_source(tmp_path, state), second) as source:
        await wait_for(lambda: second.names == ["landed_while_down.csv"])
        await settle(source)
    assert second.names == ["landed_while_down.csv"]


async def test_two_checkpoints_on_one_directory_each_get_every_file(tmp_path):
    state = MemoryState()
    write(tmp_path / "a.csv")
    one, two = Recorder(), Recorder()
    spec = FileTrigger(type="file", directory=tmp_path, **FAST)
    async with (
        running(FileSource("one", 0, spec, state=state), one),
        running(FileSource("two", 0, spec, state=state), two),
    ):
        await wait_for(lambda: one.names == ["a.csv"] and two.names == ["a.csv"])


async def test_a_rewritten_file_fires_again_as_a_new_version(tmp_path):
    target = write(tmp_path / "a.csv", b"id\n1\n", mtime_ns=1_000_000_000_000_000_000)
    emit = Recorder()
    async with running(make_source(tmp_path), emit) as source:
        await wait_for(lambda: len(emit.events) == 1)
        write(target, b"id\n1\n2\n", mtime_ns=1_000_000_001_000_000_000)
        await wait_for(lambda: len(emit.events) == 2)
        await settle(source)
    assert [e.params["size"] for e in emit.events] == ["5", "7"]
    assert emit.events[0].key != emit.events[1].key


async def test_a_duplicate_answer_from_emit_still_marks_the_file_seen(tmp_path):
    state = MemoryState()
    emit = Recorder(accept=False)
    write(tmp_path / "a.csv")
    async with running(make_source(tmp_path, state), emit) as source:
        await wait_for(lambda: len(emit.events) == 1)
        await settle(source)
    assert emit.names == ["a.csv"]
    assert state.seen == {"file:landing": {emit.events[0].key}}


async def test_a_steady_directory_costs_no_store_queries_per_poll(tmp_path):
    for i in range(20):
        write(tmp_path / f"f{i:02}.csv")
    state = MemoryState()
    emit = Recorder()
    async with running(make_source(tmp_path, state), emit) as source:
        await wait_for(lambda: len(emit.events) == 20)
        queries = state.has_seen_calls
        await settle(source, scans=5)
    assert queries == 20
    assert state.has_seen_calls == queries


async def test_while_emit_waits_no_further_file_is_emitted(tmp_path):
    for name in ("a.csv", "b.csv", "c.csv"):
        write(tmp_path / name)
    release = asyncio.Event()
    calls: list[str] = []

    async def slow_emit(event: TriggerEvent) -> bool:
        calls.append(event.params["name"])
        await release.wait()
        return True

    async with running(make_source(tmp_path), slow_emit):
        await wait_for(lambda: len(calls) == 1)
        scans_blocked = time.monotonic() + 0.3
        await wait_for(lambda: time.monotonic() > scans_blocked)
        assert len(calls) == 1
        release.set()
        await wait_for(lambda: len(calls) == 3)
    assert sorted(calls) == ["a.csv", "b.csv", "c.csv"]


# ---------------------------------------------------------------- directories


async def test_a_missing_directory_is_logged_once_and_files_fire_once_it_appears(tmp_path):
    watched = tmp_path / "not-yet"
    emit = Recorder()
    with capture_logs() as logs:
        source = make_source(watched)
        async with running(source, emit):
            await settle(source, scans=5)
            watched.mkdir()
            write(watched / "a.csv")
            await wait_for(lambda: emit.names == ["a.csv"])
    events = [line["event"] for line in logs]
    assert events.count("cannot read watched directory; will keep polling") == 1
    assert events.count("directory error cleared") == 1


async def test_the_first_scan_of_an_unreadable_directory_does_not_raise(tmp_path):
    listing = scan_directories([str(tmp_path / "missing")], Rules.of())
    assert listing.entries == []
    assert listing.failed_dirs == {str(tmp_path / "missing"): "No such file or directory"}


# ---------------------------------------------------------------- moving files after the run


async def test_move_on_success_and_failure_move_the_file_and_never_overwrite(tmp_path):
    watched, done, failed = tmp_path / "in", tmp_path / "in" / "done", tmp_path / "failed"
    write(done / "a.csv", b"older")
    emit = Recorder()
    source = make_source(
        watched, recursive=True, move_on_success=done, move_on_failure=failed, pattern="*.csv"
    )
    async with running(source, emit):
        write(watched / "a.csv", b"id\n1\n")
        write(watched / "b.csv", b"id\n2\n")
        await wait_for(lambda: len(emit.events) == 2)
        by_name = {e.params["name"]: e for e in emit.events}
        assert await source.finish(by_name["a.csv"], True) == str(done / "a.1.csv")
        assert await source.finish(by_name["b.csv"], False) == str(failed / "b.csv")
        await settle(source)
    assert (done / "a.csv").read_bytes() == b"older"
    assert (done / "a.1.csv").read_bytes() == b"id\n1\n"
    assert (failed / "b.csv").read_bytes() == b"id\n2\n"
    assert not (watched / "a.csv").exists()
    assert sorted(emit.names) == ["a.csv", "b.csv"]  # done/ is not watched


async def test_finish_leaves_a_file_that_changed_since_it_fired(tmp_path):
    emit = Recorder()
    source = make_source(tmp_path / "in", move_on_success=tmp_path / "done")
    target = write(tmp_path / "in" / "a.csv", b"v1", mtime_ns=1_000_000_000_000_000_000)
    async with running(source, emit):
        await wait_for(lambda: len(emit.events) == 1)
        write(target, b"v2!", mtime_ns=1_000_000_001_000_000_000)
        assert await source.finish(emit.events[0], True) is None
    assert target.read_bytes() == b"v2!"


async def test_finish_ignores_files_of_other_triggers(tmp_path):
    other = write(tmp_path / "other" / "a.csv")
    st = other.stat()
    source = make_source(tmp_path / "in", move_on_success=tmp_path / "done")
    event = TriggerEvent(
        type="file",
        key="file:elsewhere",
        fired_at=datetime.now(UTC),
        params={"path": str(other), "size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns)},
    )
    assert await source.finish(event, True) is None
    assert other.exists()


async def test_finish_without_a_target_directory_does_nothing(tmp_path):
    source = make_source(tmp_path)
    write(tmp_path / "a.csv")
    emit = Recorder()
    async with running(source, emit):
        await wait_for(lambda: len(emit.events) == 1)
        assert await source.finish(emit.events[0], True) is None
    assert (tmp_path / "a.csv").exists()


def test_move_file_copies_across_filesystems_when_it_cannot_link(tmp_path, monkeypatch):
    src = write(tmp_path / "in" / "a.csv", b"payload", mtime_ns=1_234_000_000_000)
    st = src.stat()

    def no_link(*args: Any, **kwargs: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    moved = move_file(str(src), (st.st_size, st.st_mtime_ns), str(tmp_path / "out"))
    assert moved == str(tmp_path / "out" / "a.csv")
    assert Path(moved).read_bytes() == b"payload"
    assert Path(moved).stat().st_mtime_ns == 1_234_000_000_000
    assert not src.exists()


# ---------------------------------------------------------------- change notifications


async def test_use_inotify_without_watchfiles_warns_and_polls(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # makes `import watchfiles` fail
    emit = Recorder()
    with capture_logs() as logs:
        source = make_source(tmp_path, use_inotify=True)
        async with running(source, emit):
            write(tmp_path / "a.csv")
            await wait_for(lambda: emit.names == ["a.csv"])
    assert any("watchfiles package is not installed" in line["event"] for line in logs)


async def test_a_change_notification_wakes_the_poll_loop_early(tmp_path):
    changes: asyncio.Queue[str] = asyncio.Queue()
    watched_roots: list[Sequence[str]] = []

    async def fake_watch(roots: Sequence[str], stop: Any) -> AsyncIterator[object]:
        watched_roots.append(roots)
        while True:
            yield await changes.get()

    emit = Recorder()
    # A 60 s poll: only the notification can make the file fire within the wait below.
    source = make_source(tmp_path, poll_interval="60s", stable_for="0s", watch=fake_watch)
    async with running(source, emit):
        await wait_for(lambda: watched_roots == [(str(tmp_path),)])
        write(tmp_path / "a.csv")
        changes.put_nowait("a.csv")
        await wait_for(lambda: emit.names == ["a.csv"], within=20.0)
