"""What the store writes: one WriteOp class per kind of write.

An op carries its rows ready to bind (they are encoded in the caller's task,
so a value that cannot be encoded fails its own caller and never reaches the
writer). ``apply_many`` applies a run of same-class ops from one batch, with
``executemany`` where it can. It is plain synchronous ``sqlite3`` code: the
writer runs the ``apply_many`` of a whole transaction, with its BEGIN and
COMMIT, in one call on the connection's thread, so a batch costs one round
trip to that thread, not one per statement.

Code that needs the event loop (``save_results``' ``extra`` hook, ``Store.write``)
is an op's :meth:`WriteOp.hook`: the writer runs it on the loop, with the
aiosqlite connection, inside the same transaction, right after its group's
rows.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import aiosqlite

from checkpointd.checkpoints.result import Status
from checkpointd.store.model import RetentionReport, db_time, result_json

if TYPE_CHECKING:
    from checkpointd.checkpoints.result import CheckpointResult
    from checkpointd.events import TriggerEvent

TransactionHook = Callable[[aiosqlite.Connection], Awaitable[Any]]
"""Async code that adds rows inside the writer's open transaction.

It must only use the connection it is given, must not commit or roll back,
and must have no effect outside the database: if its batch fails, it runs
again in a retry.
"""


class WriteOp(ABC):
    """One caller's write. Ops of one class that queue up together are applied together."""

    hook_result: ClassVar[bool] = False
    """True when the op's result is what its :meth:`hook` returns (not ``apply_many``'s)."""

    @classmethod
    @abstractmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        """Apply ``ops`` (in order) inside the open transaction; one result per op.

        Runs on the connection's own thread: synchronous sqlite3 calls only.
        """

    def hook(self) -> TransactionHook | None:
        """Async code to run on the event loop after this op's group, in the same
        transaction (see :data:`TransactionHook`); None for most ops."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """What this op writes, for error messages."""


# ------------------------------------------------------------------ journal


_INSERT_JOURNAL = """
INSERT INTO journal (key, checkpoint, trigger_type, params, records, fired_at, state,
                     accepted_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, 'accepted', ?, ?)
"""


@dataclass(frozen=True, slots=True)
class AcceptOp(WriteOp):
    """Journal an accepted event; the result is False when (key, checkpoint) exists."""

    key: str
    checkpoint: str
    row: tuple[Any, ...]  # the values of _INSERT_JOURNAL, key and checkpoint first

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        # One lookup for the whole group instead of one INSERT per event that
        # may fail: under the write lock nothing can slip in between.
        existing: set[tuple[str, str]] = set()
        keys = list({op.key for op in ops})
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, checkpoint FROM journal WHERE key IN ({marks})", chunk
            ).fetchall()
            existing.update((row[0], row[1]) for row in rows)
        fresh: list[tuple[Any, ...]] = []
        results: list[Any] = []
        for op in ops:
            pair = (op.key, op.checkpoint)
            results.append(pair not in existing)
            if pair not in existing:
                existing.add(pair)
                fresh.append(op.row)
        if fresh:
            conn.executemany(_INSERT_JOURNAL, fresh)
        return results

    def describe(self) -> str:
        return f"journaling event {self.key!r} for checkpoint {self.checkpoint!r}"


@dataclass(frozen=True, slots=True)
class MarkRunningOp(WriteOp):
    """accepted|running → running, counting the attempt."""

    key: str
    checkpoint: str
    now: str

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        conn.executemany(
            "UPDATE journal SET state = 'running', attempts = attempts + 1, updated_at = ? "
            "WHERE key = ? AND checkpoint = ? AND state IN ('accepted', 'running')",
            [(op.now, op.key, op.checkpoint) for op in ops],
        )
        return [None] * len(ops)

    def describe(self) -> str:
        return f"marking event {self.key!r} running for checkpoint {self.checkpoint!r}"


@dataclass(frozen=True, slots=True)
class MarkOp(WriteOp):
    """An unfinished journal row → failed | interrupted; the result says if a row changed."""

    key: str
    checkpoint: str
    state: str
    now: str

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        results: list[Any] = []
        for op in ops:
            cursor = conn.execute(
                "UPDATE journal SET state = ?, updated_at = ?, records = NULL "
                "WHERE key = ? AND checkpoint = ? AND state IN ('accepted', 'running')",
                (op.state, op.now, op.key, op.checkpoint),
            )
            results.append(cursor.rowcount > 0)
        return results

    def describe(self) -> str:
        return f"marking event {self.key!r} {self.state} for checkpoint {self.checkpoint!r}"


# ------------------------------------------------------------------ results

_INSERT_RUN = """
INSERT INTO runs (run_id, checkpoint, status, started_at, finished_at, duration_seconds,
                  attempt, trigger_type, journal_key, result)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_VALIDATOR = """
INSERT INTO validator_results (run_id, position, type, name, column_name, columns, status,
                               severity, checked_count, failed_count, failed_ratio, message)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# The run's data is in `runs` now; a Kafka batch's records are no longer needed once it is
# done. A run cancelled by a shutdown drain is journaled "interrupted" (and keeps its records):
# the next start re-runs it under `daemon.on_crash: rerun`.
_JOURNAL_DONE = """
UPDATE journal SET state = ?1, run_id = ?2, updated_at = ?3,
       records = CASE WHEN ?1 = 'done' THEN NULL ELSE records END
WHERE key = ?4 AND checkpoint = ?5
"""


@dataclass(frozen=True, slots=True)
class SaveOp(WriteOp):
    """One ``save_results`` call: its runs, validator rows, journal updates and hook."""

    runs: list[tuple[Any, ...]]
    validators: list[tuple[Any, ...]]
    journal_done: list[tuple[Any, ...]]
    extra: TransactionHook | None = None
    run_ids: tuple[str, ...] = field(default=())

    @classmethod
    def build(
        cls,
        items: Sequence[tuple[CheckpointResult, TriggerEvent | None]],
        extra: TransactionHook | None,
        now: str,
    ) -> SaveOp:
        """Encode results into rows; the journal key is the event's, else the result's trigger's."""
        runs: list[tuple[Any, ...]] = []
        validators: list[tuple[Any, ...]] = []
        journal_done: list[tuple[Any, ...]] = []
        for result, event in items:
            # The journal key: the event's (a TriggerInfo needs not be built for it).
            source = event if event is not None else result.trigger
            started, finished = db_time(result.started_at), db_time(result.finished_at)
            runs.append((
                result.run_id, result.checkpoint, result.status.value, started, finished,
                result.duration_seconds, result.attempt,
                source.type if source else None, source.key if source else None,
                result_json(result, started, finished),
            ))  # fmt: skip
            for position, v in enumerate(result.validators):
                validators.append((
                    result.run_id, position, v.type, v.name, v.column,
                    json.dumps(list(v.columns)) if v.columns else None, v.status.value,
                    v.severity, v.checked_count, v.failed_count, v.failed_ratio, v.message,
                ))  # fmt: skip
            if source is not None:
                state = "interrupted" if result.status is Status.CANCELLED else "done"
                journal_done.append((state, result.run_id, now, source.key, result.checkpoint))
        run_ids = tuple(result.run_id for result, _ in items)
        return cls(runs, validators, journal_done, extra, run_ids)

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        runs = [row for op in ops for row in op.runs]
        validators = [row for op in ops for row in op.validators]
        journal_done = [row for op in ops for row in op.journal_done]
        if runs:
            conn.executemany(_INSERT_RUN, runs)
        if validators:
            conn.executemany(_INSERT_VALIDATOR, validators)
        if journal_done:
            conn.executemany(_JOURNAL_DONE, journal_done)
        return [None] * len(ops)

    def hook(self) -> TransactionHook | None:
        return self.extra

    def describe(self) -> str:
        shown = ", ".join(self.run_ids[:3]) + (", ..." if len(self.run_ids) > 3 else "")
        return f"saving {len(self.run_ids)} result(s) ({shown})"


# ------------------------------------------------------------------ key-value state


@dataclass(frozen=True, slots=True)
class SetStateOp(WriteOp):
    """Upsert one key of a component's persistent state."""

    namespace: str
    key: str
    value: str
    now: str

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        conn.executemany(
            "INSERT INTO kv_state (namespace, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            [(op.namespace, op.key, op.value, op.now) for op in ops],
        )
        return [None] * len(ops)

    def describe(self) -> str:
        return f"setting state {self.namespace}/{self.key}"


@dataclass(frozen=True, slots=True)
class SeenOp(WriteOp):
    """Remember (or forget) keys of a namespace's seen-set."""

    namespace: str
    keys: tuple[str, ...]
    now: str
    forget: bool = False

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        for op in ops:
            if op.forget:
                conn.executemany(
                    "DELETE FROM seen_keys WHERE namespace = ? AND key = ?",
                    [(op.namespace, key) for key in op.keys],
                )
            else:
                conn.executemany(
                    "INSERT INTO seen_keys (namespace, key, seen_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (namespace, key) DO NOTHING",
                    [(op.namespace, key, op.now) for key in op.keys],
                )
        return [None] * len(ops)

    def describe(self) -> str:
        verb = "forgetting" if self.forget else "marking"
        return f"{verb} {len(self.keys)} seen key(s) in {self.namespace}"


@dataclass(frozen=True, slots=True)
class CallOp(WriteOp):
    """Arbitrary transactional code (retention, other modules' tables)."""

    fn: TransactionHook
    what: str = "a write"

    hook_result: ClassVar[bool] = True

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        return [None] * len(ops)  # all its work is its hook

    def hook(self) -> TransactionHook | None:
        return self.fn

    def describe(self) -> str:
        return self.what


# ------------------------------------------------------------------ retention


@dataclass(frozen=True, slots=True)
class RetentionOp(WriteOp):
    """Delete runs older than ``cutoff`` or beyond the newest ``max_runs`` of their
    checkpoint (with their validator rows), and finished journal rows older than
    ``cutoff``. The result is a RetentionReport."""

    cutoff: str | None
    max_runs: int | None

    @classmethod
    def apply_many(cls, conn: sqlite3.Connection, ops: Sequence[Self]) -> list[Any]:
        return [op._apply(conn) for op in ops]

    def _apply(self, conn: sqlite3.Connection) -> RetentionReport:
        # Collect the doomed runs once, then delete children before parents
        # so the validator count is exact (ON DELETE CASCADE would hide it).
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS doomed_runs (run_id TEXT PRIMARY KEY) WITHOUT ROWID"
        )
        conn.execute("DELETE FROM temp.doomed_runs")
        if self.cutoff is not None:
            conn.execute(
                "INSERT OR IGNORE INTO temp.doomed_runs "
                "SELECT run_id FROM runs WHERE started_at < ?",
                (self.cutoff,),
            )
        if self.max_runs is not None:
            conn.execute(
                "INSERT OR IGNORE INTO temp.doomed_runs SELECT run_id FROM ("
                "  SELECT run_id, row_number() OVER ("
                "    PARTITION BY checkpoint ORDER BY started_at DESC, seq DESC) AS newest"
                "  FROM runs) WHERE newest > ?",
                (self.max_runs,),
            )
        doomed = "SELECT run_id FROM temp.doomed_runs"
        validators = conn.execute(f"DELETE FROM validator_results WHERE run_id IN ({doomed})")
        runs = conn.execute(f"DELETE FROM runs WHERE run_id IN ({doomed})")
        report = RetentionReport(runs=runs.rowcount, validators=validators.rowcount)
        conn.execute("DELETE FROM temp.doomed_runs")
        if self.cutoff is not None:
            journal = conn.execute(
                "DELETE FROM journal WHERE state IN ('done', 'failed', 'interrupted') "
                "AND updated_at < ?",
                (self.cutoff,),
            )
            report = RetentionReport(report.runs, report.validators, journal.rowcount)
        return report

    def describe(self) -> str:
        return "applying retention"
