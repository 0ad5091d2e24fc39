"""The store's reads, as functions of the read-only connection.

They run on their own connection, so under WAL they read the last committed
state without waiting for the writer. Every query fetches all its rows at
once: a half-read cursor would hold a read snapshot open and keep SQLite
from checkpointing the WAL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import aiosqlite

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.errors import StoreError
from checkpointd.store.model import (
    JOURNAL_COLUMNS,
    JOURNAL_STATES,
    JournalEntry,
    JournalState,
    db_time,
    entry_from_row,
)

_NEWEST_FIRST = "ORDER BY started_at DESC, seq DESC"


def _run_filter(
    checkpoint: str | None,
    status: Status | str | None,
    *,
    before: datetime | None = None,
    since: datetime | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if checkpoint is not None:
        clauses.append("checkpoint = ?")
        params.append(checkpoint)
    if status is not None:
        clauses.append("status = ?")
        params.append(Status(status).value)
    if before is not None:
        clauses.append("started_at < ?")
        params.append(db_time(before))
    if since is not None:
        clauses.append("started_at >= ?")
        params.append(db_time(since))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return where, params


def _result(text: str) -> CheckpointResult:
    return CheckpointResult.from_dict(json.loads(text))


async def get_run(conn: aiosqlite.Connection, run_id: str) -> CheckpointResult | None:
    """One run by id, or None."""
    rows = list(await conn.execute_fetchall("SELECT result FROM runs WHERE run_id = ?", (run_id,)))
    return _result(rows[0][0]) if rows else None


async def list_runs(
    conn: aiosqlite.Connection,
    *,
    checkpoint: str | None = None,
    status: Status | str | None = None,
    limit: int = 50,
    before: datetime | None = None,
) -> list[CheckpointResult]:
    """Runs newest first (by start time), optionally only those started before ``before``."""
    if limit < 1:
        raise StoreError(f"limit must be at least 1, got {limit}")
    where, params = _run_filter(checkpoint, status, before=before)
    rows = await conn.execute_fetchall(
        f"SELECT result FROM runs {where} {_NEWEST_FIRST} LIMIT ?", [*params, limit]
    )
    return [_result(row[0]) for row in rows]


async def last_result(conn: aiosqlite.Connection, checkpoint: str) -> CheckpointResult | None:
    """The newest run of ``checkpoint``, or None if it never ran."""
    runs = await list_runs(conn, checkpoint=checkpoint, limit=1)
    return runs[0] if runs else None


async def last_results(
    conn: aiosqlite.Connection, checkpoints: Iterable[str]
) -> dict[str, CheckpointResult]:
    """The newest run of each of ``checkpoints``, by name; one that never ran has no key.

    One query per 500 names; per name it is the same index seek as
    :func:`last_result` (``runs_checkpoint_started``), never a scan of the runs.
    """
    wanted = list(dict.fromkeys(checkpoints))
    found: dict[str, CheckpointResult] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        values = ",".join(["(?)"] * len(chunk))
        rows = await conn.execute_fetchall(
            f"WITH wanted(name) AS (VALUES {values}) "
            "SELECT runs.checkpoint, runs.result FROM wanted JOIN runs ON runs.seq = ("
            "  SELECT seq FROM runs WHERE checkpoint = wanted.name "
            f"  {_NEWEST_FIRST} LIMIT 1)",
            chunk,
        )
        found.update((row[0], _result(row[1])) for row in rows)
    return found


async def count_runs(
    conn: aiosqlite.Connection,
    *,
    checkpoint: str | None = None,
    status: Status | str | None = None,
    since: datetime | None = None,
) -> int:
    """How many runs match."""
    where, params = _run_filter(checkpoint, status, since=since)
    rows = list(await conn.execute_fetchall(f"SELECT count(*) FROM runs {where}", params))
    return int(rows[0][0])


async def journal_entries(
    conn: aiosqlite.Connection,
    *,
    states: Iterable[JournalState] | None = None,
    checkpoint: str | None = None,
) -> list[JournalEntry]:
    """Journal rows in acceptance order, optionally only those in ``states``."""
    clauses: list[str] = []
    params: list[Any] = []
    if states is not None:
        wanted = list(states)
        unknown = [s for s in wanted if s not in JOURNAL_STATES]
        if unknown:
            raise StoreError(f"unknown journal state(s) {unknown}; expected {JOURNAL_STATES}")
        clauses.append(f"state IN ({','.join('?' * len(wanted))})")
        params.extend(wanted)
    if checkpoint is not None:
        clauses.append("checkpoint = ?")
        params.append(checkpoint)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await conn.execute_fetchall(
        f"SELECT {JOURNAL_COLUMNS} FROM journal {where} ORDER BY id", params
    )
    return [entry_from_row(row) for row in rows]


async def get_state(conn: aiosqlite.Connection, namespace: str, key: str) -> str | None:
    """A component's persisted value, or None."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT value FROM kv_state WHERE namespace = ? AND key = ?", (namespace, key)
        )
    )
    return str(rows[0][0]) if rows else None


async def unseen(conn: aiosqlite.Connection, namespace: str, keys: Iterable[str]) -> list[str]:
    """The keys (in the given order, without repeats) not yet marked seen in ``namespace``."""
    wanted = list(dict.fromkeys(keys))
    seen: set[str] = set()
    # Chunked: SQLite limits the number of bound parameters per statement.
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = await conn.execute_fetchall(
            f"SELECT key FROM seen_keys WHERE namespace = ? AND key IN ({marks})",
            [namespace, *chunk],
        )
        seen.update(row[0] for row in rows)
    return [key for key in wanted if key not in seen]


async def journal_has(conn: aiosqlite.Connection, key: str, checkpoint: str) -> bool:
    """Whether the journal holds ``key`` for ``checkpoint``."""
    rows = await conn.execute_fetchall(
        "SELECT 1 FROM journal WHERE key = ? AND checkpoint = ? LIMIT 1", (key, checkpoint)
    )
    return bool(list(rows))


# A key under the prefix ends in "{offset}" or "{first}-{last}" (a message or a batch). The keys
# that start with the prefix are the range from it to the prefix with its last character
# incremented: a range the UNIQUE (key, checkpoint) index serves.
_LAST_OFFSET = """
SELECT MAX(CAST(CASE WHEN instr(rest, '-') > 0 THEN substr(rest, instr(rest, '-') + 1)
                     ELSE rest END AS INTEGER))
FROM (SELECT substr(key, ?) AS rest FROM journal
      WHERE key >= ? AND key < ? AND checkpoint = ?)
"""


async def journal_last_offset(
    conn: aiosqlite.Connection, key_prefix: str, checkpoint: str
) -> int | None:
    """The highest offset ending a journal key of ``checkpoint`` under ``key_prefix``."""
    if not key_prefix:
        raise StoreError("journal_last_offset needs a non-empty key prefix")
    upper = key_prefix[:-1] + chr(ord(key_prefix[-1]) + 1)
    rows: Any = await conn.execute_fetchall(
        _LAST_OFFSET, (len(key_prefix) + 1, key_prefix, upper, checkpoint)
    )
    row = next(iter(rows), None)
    value = row[0] if row is not None else None
    return int(value) if value is not None else None
