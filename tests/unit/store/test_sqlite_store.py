"""The durable store, against real SQLite files in tmp_path.

Crash recovery with a real SIGKILL lives in tests/integration/test_store_crash.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import aiosqlite
import pytest

from checkpointd.checkpoints.result import (
    CheckpointResult,
    Status,
    ValidatorResult,
)
from checkpointd.clock import FrozenClock
from checkpointd.config.models import RetentionConfig
from checkpointd.errors import StateDirInUseError, StoreError
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7
from checkpointd.protocols import RunJournal
from checkpointd.store.model import JournalEntry, RetentionReport
from checkpointd.store.sqlite.schema import LATEST_VERSION, Migration, current_version, migrate
from checkpointd.store.sqlite.store import DB_FILE_NAME, SqliteStore
from checkpointd.store.statelock import acquire_state_dir

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return FrozenClock(T0)


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
async def store(state_dir, clock):
    async with await SqliteStore.open(state_dir, clock=clock) as opened:
        yield opened


def event(key, *, type="kafka", fired_at=T0, params=None, records=None):
    return TriggerEvent(type=type, key=key, fired_at=fired_at, params=params or {}, records=records)


def result(checkpoint="orders", *, status=Status.SUCCESS, started_at=T0, ev=None, run_id=None):
    return CheckpointResult(
        run_id=run_id or uuid7(),
        checkpoint=checkpoint,
        status=status,
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=2),
        trigger=ev.info() if ev is not None else None,
        validators=(
            ValidatorResult(
                type="range",
                status=Status.FAILURE,
                column="amount",
                checked_count=5000,
                failed_count=15,
                failed_ratio=0.003,
                sample=(1200.5, -3.0),
                message="15 values out of range",
            ),
            ValidatorResult(type="unique", status=Status.SUCCESS, columns=("id", "day")),
        ),
        row_count=5000,
    )


@contextlib.contextmanager
def raw(state_dir):
    """An independent connection to the same file, to check what is really on disk."""
    conn = sqlite3.connect(state_dir / DB_FILE_NAME)
    try:
        with conn:  # commits on success
            yield conn
    finally:
        conn.close()


# ---------------------------------------------------------------- opening


async def test_open_creates_a_wal_database_at_the_latest_schema(store, state_dir):
    with raw(state_dir) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        versions = conn.execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v in range(1, LATEST_VERSION + 1)]
    assert store.healthy


async def test_reopening_keeps_the_data_and_applies_no_migration_twice(state_dir, clock):
    async with await SqliteStore.open(state_dir, clock=clock) as store:
        await store.set_state("schedule", "last", "x")
    async with await SqliteStore.open(state_dir, clock=clock) as store:
        assert await store.get_state("schedule", "last") == "x"
    with raw(state_dir) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (LATEST_VERSION,)


async def test_a_database_newer_than_the_code_is_refused_and_the_dir_released(state_dir):
    async with await SqliteStore.open(state_dir):
        pass
    with raw(state_dir) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 'now')")

    with pytest.raises(StoreError, match="schema version 99, newer than this checkpointd"):
        await SqliteStore.open(state_dir)

    acquire_state_dir(state_dir).release()  # the failed open did not keep the lock


async def test_a_file_that_is_not_a_database_is_a_store_error(state_dir):
    state_dir.mkdir()
    (state_dir / DB_FILE_NAME).write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(StoreError, match=DB_FILE_NAME):
        await SqliteStore.open(state_dir)


async def test_a_second_store_on_the_same_dir_is_refused_with_our_pid(store, state_dir):
    with pytest.raises(StateDirInUseError, match=f"in use by pid {os.getpid()}"):
        await SqliteStore.open(state_dir)


async def test_closing_releases_the_dir(state_dir):
    store = await SqliteStore.open(state_dir)
    await store.close()
    await store.close()  # idempotent

    async with await SqliteStore.open(state_dir) as again:
        assert again.healthy
    assert not store.healthy


async def test_writes_and_reads_after_close_are_store_errors(state_dir):
    store = await SqliteStore.open(state_dir)
    await store.close()

    with pytest.raises(StoreError, match="closed"):
        await store.journal_accept(event("k"), "orders")
    with pytest.raises(StoreError, match="closed"):
        await store.list_runs()


async def test_the_store_serves_the_runner_as_its_run_journal(store):
    journal: RunJournal = store  # mypy checks the protocol here
    ev = event("orders/0/7")

    assert await journal.journal_accept(ev, "orders") is True
    await journal.journal_mark_running(ev, "orders")
    await journal.save_results([(result(ev=ev), ev)])

    assert [e.state for e in await store.journal_entries()] == ["done"]


# ---------------------------------------------------------------- journal


async def test_an_event_is_journaled_once_per_checkpoint(store):
    first = event("orders/0/42")

    assert await store.journal_accept(first, "orders") is True
    assert await store.journal_accept(event("orders/0/42"), "orders") is False
    assert await store.journal_accept(first, "payments") is True  # same event, other checkpoint

    entries = await store.journal_entries()
    assert [(e.key, e.checkpoint, e.state) for e in entries] == [
        ("orders/0/42", "orders", "accepted"),
        ("orders/0/42", "payments", "accepted"),
    ]


async def test_duplicates_in_one_group_commit_are_accepted_exactly_once(store):
    answers = await asyncio.gather(
        *(store.journal_accept(event("dup"), "orders") for _ in range(20))
    )

    assert sorted(answers) == [False] * 19 + [True]
    assert len(await store.journal_entries()) == 1


async def test_a_duplicate_key_is_refused_after_a_restart(state_dir):
    async with await SqliteStore.open(state_dir) as store:
        assert await store.journal_accept(event("file:/in/a.csv:10:99"), "landing")
    async with await SqliteStore.open(state_dir, on_recover=_ignore) as store:
        assert await store.journal_accept(event("file:/in/a.csv:10:99"), "landing") is False


async def _ignore(entries):
    return None


async def test_a_journal_row_goes_accepted_running_done(store, clock):
    ev = event("k1", params={"path": "/in/a.csv"}, records=[{"id": 1}])
    await store.journal_accept(ev, "orders")
    clock.advance(5)
    await store.journal_mark_running(ev, "orders")
    await store.journal_mark_running(ev, "orders")  # a retry counts another attempt
    (running,) = await store.journal_entries()
    done_result = result(ev=ev)
    clock.advance(5)

    await store.save_results([(done_result, ev)])

    (done,) = await store.journal_entries()
    assert (running.state, running.attempts, running.records) == ("running", 2, ({"id": 1},))
    assert running.accepted_at == T0
    assert running.updated_at == T0 + timedelta(seconds=5)
    assert (done.state, done.run_id, done.updated_at) == (
        "done",
        done_result.run_id,
        T0 + timedelta(seconds=10),
    )
    assert done.records is None  # a finished batch's records are not kept


async def test_only_unfinished_rows_can_be_marked_failed_or_interrupted(store):
    await store.journal_accept(event("a"), "orders")
    await store.journal_accept(event("b"), "orders")
    await store.save_results([(result(ev=event("b")), event("b"))])

    assert await store.journal_mark("a", "orders", "interrupted") is True
    assert await store.journal_mark("a", "orders", "failed") is False  # already finished
    assert await store.journal_mark("b", "orders", "failed") is False  # done stays done
    assert await store.journal_mark("nope", "orders", "failed") is False
    with pytest.raises(ValueError, match="'done'"):
        await store.journal_mark("a", "orders", "done")

    assert {e.key: e.state for e in await store.journal_entries()} == {
        "a": "interrupted",
        "b": "done",
    }
    assert [e.key for e in await store.journal_entries("done")] == ["b"]


# ---------------------------------------------------------------- recovery


async def test_rows_a_crash_left_unfinished_go_to_on_recover(state_dir, clock):
    fired = T0 - timedelta(minutes=1)
    waiting = event("w", type="file", fired_at=fired, params={"path": "/in/w.csv"})
    running = event("r", records=[{"id": 7, "amount": 1.5}])
    finished = event("f")
    async with await SqliteStore.open(state_dir, clock=clock) as store:
        for ev in (waiting, running, finished):
            await store.journal_accept(ev, "orders")
        await store.journal_mark_running(running, "orders")
        await store.save_results([(result(ev=finished), finished)])
    seen: list[list[JournalEntry]] = []

    async def on_recover(entries):
        seen.append(entries)

    async with await SqliteStore.open(state_dir, clock=clock, on_recover=on_recover) as store:
        recovered = store.recovered

    assert len(seen) == 1
    assert tuple(seen[0]) == recovered
    assert [(e.key, e.state) for e in recovered] == [("w", "accepted"), ("r", "running")]
    w, r = recovered
    assert (w.checkpoint, w.trigger_type, dict(w.params), w.fired_at, w.accepted_at) == (
        "orders",
        "file",
        {"path": "/in/w.csv"},
        fired,
        T0,
    )
    assert r.to_event() == TriggerEvent(
        type="kafka",
        key="r",
        fired_at=T0,
        checkpoint="orders",
        params={},
        records=({"id": 7, "amount": 1.5},),
    )


async def test_recovered_rows_marked_interrupted_are_not_offered_again(state_dir):
    async with await SqliteStore.open(state_dir) as store:
        await store.journal_accept(event("a"), "orders")
    async with await SqliteStore.open(state_dir, on_recover=_ignore) as store:
        for entry in store.recovered:
            await store.journal_mark(entry.key, entry.checkpoint, "interrupted")
    calls = []

    async def on_recover(entries):
        calls.append(entries)

    async with await SqliteStore.open(state_dir, on_recover=on_recover) as store:
        assert store.recovered == ()
    assert calls == []


async def test_a_failing_recover_hook_fails_open_and_releases_the_dir(state_dir):
    async with await SqliteStore.open(state_dir) as store:
        await store.journal_accept(event("a"), "orders")

    async def on_recover(entries):
        raise RuntimeError("cannot decide")

    with pytest.raises(RuntimeError, match="cannot decide"):
        await SqliteStore.open(state_dir, on_recover=on_recover)
    async with await SqliteStore.open(state_dir, on_recover=_ignore) as store:
        assert [e.key for e in store.recovered] == ["a"]


# ---------------------------------------------------------------- results


async def test_a_saved_result_reads_back_in_the_shared_json_shape(store):
    ev = event("orders/0/1", params={"partition": "0"})
    saved = result(status=Status.FAILURE, ev=ev)
    await store.save_results([(saved, ev)])

    loaded = await store.get_run(saved.run_id)

    assert loaded is not None
    assert loaded.to_dict() == saved.to_dict()
    assert await store.get_run("no-such-run") is None


async def test_validator_rows_are_indexed_next_to_the_run(store):
    saved = result()
    await store.save_results([(saved, None)])

    async def rows(conn: aiosqlite.Connection):
        return list(
            await conn.execute_fetchall(
                "SELECT position, type, column_name, columns, status, failed_count "
                "FROM validator_results WHERE run_id = ? ORDER BY position",
                (saved.run_id,),
            )
        )

    assert await store.read(rows) == [
        (0, "range", "amount", None, "failure", 15),
        (1, "unique", None, '["id", "day"]', "success", 0),
    ]


async def test_runs_are_listed_newest_first_and_filtered(store):
    def at(minutes):
        return T0 + timedelta(minutes=minutes)

    runs = [
        result("orders", status=Status.SUCCESS, started_at=at(1)),
        result("orders", status=Status.FAILURE, started_at=at(3)),
        result("payments", status=Status.FAILURE, started_at=at(2)),
        result("orders", status=Status.SUCCESS, started_at=at(4)),
    ]
    await store.save_results([(r, None) for r in runs])

    def ids(found):
        return [r.run_id for r in found]

    assert ids(await store.list_runs()) == ids([runs[3], runs[1], runs[2], runs[0]])
    assert ids(await store.list_runs(checkpoint="orders")) == ids([runs[3], runs[1], runs[0]])
    assert ids(await store.list_runs(status="failure")) == ids([runs[1], runs[2]])
    assert ids(await store.list_runs(checkpoint="orders", status=Status.SUCCESS, limit=1)) == ids(
        [runs[3]]
    )
    assert ids(await store.list_runs(before=at(3))) == ids([runs[2], runs[0]])
    last = await store.last_result("orders")
    assert last is not None
    assert last.run_id == runs[3].run_id
    assert await store.last_result("never-ran") is None
    assert await store.count_runs() == 4
    assert await store.count_runs(checkpoint="orders", status="success") == 2
    assert await store.count_runs(since=at(3)) == 2
    with pytest.raises(StoreError, match="limit"):
        await store.list_runs(limit=0)


async def test_one_save_call_is_all_or_nothing(store):
    await store.journal_accept(event("a"), "orders")
    existing = result()
    await store.save_results([(existing, None)])
    fresh = result(ev=event("a"))
    clash = result(run_id=existing.run_id)

    with pytest.raises(StoreError, match=existing.run_id):
        await store.save_results([(fresh, event("a")), (clash, None)])

    assert await store.get_run(fresh.run_id) is None
    assert [e.state for e in await store.journal_entries()] == ["accepted"]


async def test_a_bad_item_fails_only_its_own_caller(store):
    existing = result()
    await store.save_results([(existing, None)])
    good = [result() for _ in range(30)]
    before = store.writer_stats.failed_batches

    outcomes = await asyncio.gather(
        *(store.save_results([(r, None)]) for r in good[:15]),
        store.save_results([(result(run_id=existing.run_id), None)]),
        *(store.save_results([(r, None)]) for r in good[15:]),
        return_exceptions=True,
    )

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], StoreError)
    assert isinstance(errors[0].__cause__, sqlite3.IntegrityError)
    assert await store.count_runs() == 31
    assert store.writer_stats.failed_batches > before  # they really shared a batch
    assert store.healthy
    await store.set_state("x", "y", "still writing")
    assert await store.get_state("x", "y") == "still writing"


async def test_concurrent_writers_share_commits(store):
    before = store.writer_stats.commits

    await asyncio.gather(*(store.save_results([(result(), None)]) for _ in range(200)))

    assert await store.count_runs() == 200
    assert store.writer_stats.commits - before < 20


async def test_writes_queued_before_close_are_committed(state_dir):
    store = await SqliteStore.open(state_dir)
    saves = [asyncio.create_task(store.save_results([(result(), None)])) for _ in range(50)]
    await asyncio.sleep(0)  # let every task enqueue its write

    await store.close()

    await asyncio.gather(*saves)
    async with await SqliteStore.open(state_dir) as again:
        assert await again.count_runs() == 50


# ---------------------------------------------------------------- the transaction seam


async def _create_outbox(conn: aiosqlite.Connection) -> None:
    await conn.execute("CREATE TABLE outbox (run_id TEXT NOT NULL, action TEXT NOT NULL)")


async def test_extra_rows_commit_with_the_result(store):
    await store.write(_create_outbox, "creating the outbox")
    saved = result()

    async def enqueue(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO outbox VALUES (?, 'slack')", (saved.run_id,))

    await store.save_results([(saved, None)], extra=enqueue)

    async def outbox(conn: aiosqlite.Connection):
        return list(await conn.execute_fetchall("SELECT run_id, action FROM outbox"))

    assert await store.read(outbox) == [(saved.run_id, "slack")]


async def test_a_failing_extra_hook_leaves_nothing_of_its_call(store):
    await store.write(_create_outbox, "creating the outbox")
    lost, kept = result(), result()

    async def broken(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO outbox VALUES (?, 'slack')", (lost.run_id,))
        raise ValueError("cannot render the message")

    outcomes = await asyncio.gather(
        store.save_results([(lost, None)], extra=broken),
        store.save_results([(kept, None)]),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], StoreError)
    assert "cannot render the message" in str(outcomes[0])
    assert outcomes[1] is None
    assert await store.get_run(lost.run_id) is None
    assert await store.get_run(kept.run_id) is not None
    assert await store.read(lambda c: c.execute_fetchall("SELECT * FROM outbox")) == []


async def test_write_returns_what_the_function_returns(store):
    async def count(conn: aiosqlite.Connection) -> int:
        rows = list(await conn.execute_fetchall("SELECT count(*) FROM runs"))
        return int(rows[0][0])

    assert await store.write(count, "counting") == 0


# ---------------------------------------------------------------- component state


async def test_component_state_is_kept_per_namespace(state_dir, clock):
    async with await SqliteStore.open(state_dir, clock=clock) as store:
        await store.set_state("schedule", "orders#0", "2026-03-01T12:00:00Z")
        await store.set_state("schedule", "orders#0", "2026-03-01T12:15:00Z")
        await store.set_state("other", "orders#0", "unrelated")
        assert await store.get_state("schedule", "missing") is None
    async with await SqliteStore.open(state_dir, clock=clock) as store:
        assert await store.get_state("schedule", "orders#0") == "2026-03-01T12:15:00Z"
        assert await store.get_state("other", "orders#0") == "unrelated"


async def test_seen_keys_are_remembered_in_bulk_and_can_be_forgotten(store):
    keys = [f"/in/{i}.csv:100:{i}" for i in range(1200)]  # more than one query's worth

    await store.mark_seen("file:landing", keys[:1000])
    await store.mark_seen("file:landing", keys[:10])  # marking again is harmless

    assert await store.has_seen("file:landing", keys[0])
    assert not await store.has_seen("file:landing", keys[1100])
    assert not await store.has_seen("file:other", keys[0])
    assert await store.unseen("file:landing", [keys[1100], keys[5], keys[1100], keys[1199]]) == [
        keys[1100],
        keys[1199],
    ]
    assert await store.unseen("file:landing", keys) == keys[1000:]

    await store.forget_seen("file:landing", keys[:2])

    assert await store.unseen("file:landing", keys[:3]) == keys[:2]


# ---------------------------------------------------------------- retention


async def test_retention_keeps_the_newest_runs_per_checkpoint(state_dir, clock):
    retention = RetentionConfig(max_runs_per_checkpoint=3)
    async with await SqliteStore.open(state_dir, clock=clock, retention=retention) as store:
        orders = [result("orders", started_at=T0 + timedelta(minutes=m)) for m in range(5)]
        payments = [result("payments", started_at=T0 + timedelta(minutes=m)) for m in range(2)]
        await store.save_results([(r, None) for r in orders + payments])

        report = await store.apply_retention()

        assert report == RetentionReport(runs=2, validators=4, journal=0)
        kept = await store.list_runs(checkpoint="orders")
        assert [r.run_id for r in kept] == [r.run_id for r in reversed(orders[2:])]
        assert await store.count_runs(checkpoint="payments") == 2
        assert await store.get_run(orders[0].run_id) is None
        assert await store.apply_retention() == RetentionReport()


async def test_retention_by_age_drops_old_runs_and_finished_journal_rows(state_dir, clock):
    retention = RetentionConfig(max_age=timedelta(days=7))
    async with await SqliteStore.open(state_dir, clock=clock, retention=retention) as store:
        old_done, old_open, recent = event("old-done"), event("old-open"), event("recent")
        for ev in (old_done, old_open):
            await store.journal_accept(ev, "orders")
        old_run = result(ev=old_done)
        await store.save_results([(old_run, old_done)])
        clock.advance(timedelta(days=8).total_seconds())
        await store.journal_accept(recent, "orders")
        new_run = result(started_at=clock.now(), ev=recent)
        await store.save_results([(new_run, recent)])

        report = await store.apply_retention()

        assert report == RetentionReport(runs=1, validators=2, journal=1)
        assert await store.get_run(old_run.run_id) is None
        assert await store.get_run(new_run.run_id) is not None
        # An unfinished row is never dropped, however old: it still owes a run.
        assert {e.key: e.state for e in await store.journal_entries()} == {
            "old-open": "accepted",
            "recent": "done",
        }
        # Forgetting a finished key is what max_age means: it may be accepted again.
        assert await store.journal_accept(old_done, "orders") is True


async def test_without_retention_nothing_is_deleted(store):
    await store.save_results([(result(started_at=T0 - timedelta(days=3650)), None)])

    assert await store.apply_retention() == RetentionReport()
    assert await store.count_runs() == 1


# ---------------------------------------------------------------- migrations


async def test_a_failed_migration_leaves_the_previous_version_intact(tmp_path):
    first = Migration(1, "a table", ("CREATE TABLE a (x INTEGER)",))
    broken = Migration(
        2, "half a change", ("CREATE TABLE b (x INTEGER)", "ALTER TABLE missing ADD y")
    )
    async with aiosqlite.connect(tmp_path / "m.sqlite3", isolation_level=None) as conn:
        assert await migrate(conn, T0, (first,)) == 1

        with pytest.raises(StoreError, match=r"migration 2 \(half a change\) failed"):
            await migrate(conn, T0, (first, broken))

        assert await current_version(conn) == 1
        tables = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        assert "b" not in {row[0] for row in tables}  # DDL rolled back with the rest


async def test_migrations_must_be_numbered_in_order(tmp_path):
    gap = (Migration(1, "one", ()), Migration(3, "three", ()))
    async with aiosqlite.connect(tmp_path / "m.sqlite3", isolation_level=None) as conn:
        with pytest.raises(StoreError, match=r"numbered 1, 2, 3"):
            await migrate(conn, T0, gap)


async def test_a_run_cancelled_by_a_drain_is_journaled_interrupted_so_the_next_start_reruns_it(
    tmp_path,
):
    from datetime import UTC, datetime

    from checkpointd.checkpoints.result import CheckpointResult, Status
    from checkpointd.events import TriggerEvent
    from checkpointd.store.sqlite.store import SqliteStore

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    event = TriggerEvent(type="file", key="file:/in/a.csv:10:1", fired_at=now, checkpoint="cp")
    cancelled = CheckpointResult(
        run_id="0192f0a4-0000-7000-8000-000000000001",
        checkpoint="cp",
        status=Status.CANCELLED,
        started_at=now,
        finished_at=now,
        trigger=event.info(),
    )
    async with await SqliteStore.open(tmp_path) as store:
        assert await store.journal_accept(event, "cp")
        await store.save_results([(cancelled, event)])
        interrupted = await store.journal_entries(state="interrupted")
        assert [e.key for e in interrupted] == [event.key]
        assert await store.journal_entries(state="done") == []


# ---------------------------------------------------------------- the writer's cost


@contextlib.contextmanager
def counting_hops(store):
    """Count the calls the writer's connection runs on its thread (each one a round trip)."""
    conn = store._writer_conn
    real = conn._execute
    calls = []

    async def counted(fn, *args, **kwargs):
        calls.append(fn)
        return await real(fn, *args, **kwargs)

    conn._execute = counted
    try:
        yield calls
    finally:
        del conn._execute


async def test_a_batch_of_mixed_writes_is_one_commit_and_one_trip_to_the_sqlite_thread(store):
    events = [event(f"orders/0/{i}") for i in range(10)]
    for ev in events[:5]:
        await store.journal_accept(ev, "orders")
    commits = store.writer_stats.commits

    with counting_hops(store) as hops:
        await asyncio.gather(
            *(store.journal_accept(ev, "orders") for ev in events[5:]),
            *(store.journal_mark_running(ev, "orders") for ev in events[:5]),
            *(store.save_results([(result(ev=ev), ev)]) for ev in events[:3]),
            store.set_state("schedule", "orders#0", "x"),
            store.mark_seen("file:landing", ["a", "b"]),
            store.journal_mark("orders/0/4", "orders", "failed"),
        )

    assert store.writer_stats.commits - commits == 1
    assert len(hops) == 1
    states = {e.key: (e.state, e.attempts) for e in await store.journal_entries()}
    assert states == {
        **{ev.key: ("done", 1) for ev in events[:3]},
        "orders/0/3": ("running", 1),
        "orders/0/4": ("failed", 1),
        **{ev.key: ("accepted", 0) for ev in events[5:]},
    }


async def test_a_write_hook_splits_the_transaction_but_shares_its_commit(store):
    await store.write(_create_outbox, "creating the outbox")
    saved, other = result(), result()

    async def enqueue(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO outbox VALUES (?, 'slack')", (saved.run_id,))

    commits = store.writer_stats.commits
    with counting_hops(store) as hops:
        await asyncio.gather(
            store.save_results([(saved, None)], extra=enqueue),
            store.save_results([(other, None)]),
            store.set_state("x", "y", "z"),
        )

    # BEGIN and both saves' rows, then the hook's INSERT, then set_state and COMMIT.
    assert len(hops) == 3
    assert store.writer_stats.commits - commits == 1
    assert await store.count_runs() == 2
    assert await store.get_state("x", "y") == "z"


# ---------------------------------------------------------------- running marks are queued


async def test_marking_running_returns_before_its_commit_and_journal_reads_wait_for_it(
    store, state_dir
):
    ev = event("orders/0/1")
    await store.journal_accept(ev, "orders")

    await store.journal_mark_running(ev, "orders")

    with raw(state_dir) as conn:  # no await since: the writer has not run yet
        on_disk = conn.execute("SELECT state, attempts FROM journal").fetchall()
    (entry,) = await store.journal_entries()
    assert on_disk == [("accepted", 0)]
    assert (entry.state, entry.attempts) == ("running", 1)


async def test_a_running_mark_commits_before_the_result_of_its_run(store):
    ev = event("orders/0/1")
    await store.journal_accept(ev, "orders")
    done = result(ev=ev)

    await store.journal_mark_running(ev, "orders")
    await store.save_results([(done, ev)])

    (entry,) = await store.journal_entries()
    assert (entry.state, entry.attempts, entry.run_id) == ("done", 1, done.run_id)


async def test_running_marks_queued_at_close_are_committed(state_dir):
    store = await SqliteStore.open(state_dir)
    ev = event("orders/0/1")
    await store.journal_accept(ev, "orders")
    await store.journal_mark_running(ev, "orders")

    await store.close()

    async with await SqliteStore.open(state_dir, on_recover=_ignore) as again:
        assert [(e.state, e.attempts) for e in again.recovered] == [("running", 1)]


async def test_marking_running_on_a_closed_store_is_a_store_error(state_dir):
    store = await SqliteStore.open(state_dir)
    await store.close()

    with pytest.raises(StoreError, match="closed"):
        await store.journal_mark_running(event("k"), "orders")


async def test_a_running_mark_that_fails_is_logged_and_the_row_stays_unfinished(store):
    from structlog.testing import capture_logs

    ev = event("orders/0/1")
    await store.journal_accept(ev, "orders")

    async def refuse_updates(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "CREATE TRIGGER no_updates BEFORE UPDATE ON journal "
            "BEGIN SELECT RAISE(ABORT, 'journal is frozen'); END"
        )

    await store.write(refuse_updates, "freezing the journal")
    with capture_logs() as logs:
        await store.journal_mark_running(ev, "orders")  # does not raise
        (entry,) = await store.journal_entries()

    assert (entry.state, entry.attempts) == ("accepted", 0)
    failures = [log for log in logs if log["event"] == "a queued store write failed"]
    assert len(failures) == 1
    assert "journal is frozen" in failures[0]["error"]
    assert store.healthy


async def test_a_write_hook_may_read_the_journal_while_running_marks_are_queued(store):
    ev = event("orders/0/1")
    await store.journal_accept(ev, "orders")

    async def read_journal(conn: aiosqlite.Connection) -> list[JournalEntry]:
        return await store.journal_entries()

    async with asyncio.timeout(10):  # waiting for the queued mark here would never end
        mark = asyncio.ensure_future(store.journal_mark_running(ev, "orders"))
        seen = await store.write(read_journal, "reading the journal")
        await mark

    assert [e.state for e in seen] == ["accepted"]  # committed state: the mark is in this batch
    assert [e.state for e in await store.journal_entries()] == ["running"]


# ---------------------------------------------------------------- last results in bulk


async def test_last_results_gives_the_newest_run_of_each_checkpoint_that_ran(store):
    def at(minutes):
        return T0 + timedelta(minutes=minutes)

    older = result("orders", started_at=at(1))
    newest = result("orders", started_at=at(3))
    tie_first = result("payments", started_at=at(2))
    tie_second = result("payments", started_at=at(2))  # same start: the later stored wins
    await store.save_results([(older, None), (newest, None), (tie_first, None)])
    await store.save_results([(tie_second, None)])

    found = await store.last_results(["payments", "orders", "never-ran", "orders"])

    assert {name: r.run_id for name, r in found.items()} == {
        "orders": newest.run_id,
        "payments": tie_second.run_id,
    }
    assert found["orders"].to_dict() == newest.to_dict()
    assert await store.last_results([]) == {}


async def test_last_results_answers_for_more_checkpoints_than_one_query_binds(store):
    names = [f"cp-{i:04d}" for i in range(1_100)]
    runs = {name: result(name, started_at=T0 + timedelta(seconds=i)) for i, name in
            enumerate(names[::2])}  # fmt: skip
    await store.save_results([(r, None) for r in runs.values()])

    found = await store.last_results(names)

    assert {name: r.run_id for name, r in found.items()} == {
        name: r.run_id for name, r in runs.items()
    }
    for name in names[:6]:
        single = await store.last_result(name)
        assert (single.run_id if single else None) == (
            found[name].run_id if name in found else None
        )
