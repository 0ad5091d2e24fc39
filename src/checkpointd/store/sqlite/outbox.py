"""The outbox table ``action_outbox`` of the SQLite backend: every statement on it.

Rows are written in the transaction that stores their result (:func:`write_plan`,
called by ``SaveOp``), so a stored result always has its deliveries and a crash
never leaves one without the other. Which deliveries a result calls for is the
actions layer's decision (``actions.outbox.plan_deliveries``, pure); this module
only reads and writes rows. The checkpoint's previous status (for ``status_change``
and recoveries) is kept in ``kv_state`` under :data:`LAST_STATUS_NAMESPACE`, written
in the same transaction, so retention deleting old runs cannot make a status look new.

Writes run inside the writer's transaction, reads on the read-only connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import aiosqlite

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.events import TriggerEvent
from checkpointd.store.model import (
    DELIVERY_STATUSES,
    DeliveryPlan,
    DeliveryPlanner,
    DeliveryStatus,
    OutboxEntry,
    db_time,
    parse_db_time,
)
from checkpointd.store.sqlite.ops import TransactionHook

LAST_STATUS_NAMESPACE: Final = "actions.last_status"

_COLUMNS = (
    "id, run_id, checkpoint, action, action_type, position, stage, kind, previous_status, "
    "destination, status, attempts, next_attempt_at, created_at, updated_at, delivered_at, "
    "last_error, last_status_code, json_extract(result, '$.status')"
)
_INSERT = """
INSERT INTO action_outbox (id, run_id, checkpoint, action, action_type, position, stage, kind,
                           previous_status, destination, status, attempts, next_attempt_at,
                           created_at, updated_at, result)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)
ON CONFLICT (run_id, action) DO NOTHING
"""
# Eligible: pending, due, not excluded, and no earlier stage of its run still pending.
_ELIGIBLE = """
o.status = 'pending'
AND o.id NOT IN (SELECT value FROM json_each(:busy))
AND o.destination NOT IN (SELECT value FROM json_each(:blocked))
AND o.run_id NOT IN (SELECT value FROM json_each(:full_runs))
AND NOT EXISTS (
    SELECT 1 FROM action_outbox AS p
    WHERE p.run_id = o.run_id AND p.status = 'pending' AND p.stage < o.stage)
"""


def _entry(row: Sequence[Any], result_json: str | None = None) -> OutboxEntry:
    (id_, run_id, checkpoint, action, action_type, position, stage, kind, previous,
     destination, status, attempts, next_at, created, updated, delivered, error, code,
     run_status) = row[:19]  # fmt: skip
    return OutboxEntry(
        id=id_,
        run_id=run_id,
        checkpoint=checkpoint,
        action=action,
        action_type=action_type,
        position=position,
        stage=stage,
        kind=kind,
        previous_status=Status(previous) if previous else None,
        destination=destination,
        status=status,
        attempts=attempts,
        next_attempt_at=parse_db_time(next_at),
        created_at=parse_db_time(created),
        updated_at=parse_db_time(updated),
        delivered_at=parse_db_time(delivered) if delivered else None,
        last_error=error,
        last_status_code=code,
        run_status=run_status,
        result=CheckpointResult.from_dict(json.loads(result_json)) if result_json else None,
    )


async def last_statuses(
    conn: aiosqlite.Connection, checkpoints: Iterable[str]
) -> dict[str, Status]:
    """The last verdict of each checkpoint that has one."""
    names = sorted(set(checkpoints))
    if not names:
        return {}
    rows = await conn.execute_fetchall(
        "SELECT key, value FROM kv_state WHERE namespace = ? "
        "AND key IN (SELECT value FROM json_each(?))",
        (LAST_STATUS_NAMESPACE, json.dumps(names)),
    )
    return {row[0]: Status(row[1]) for row in rows}


async def write_plan(conn: aiosqlite.Connection, plan: DeliveryPlan) -> None:
    """Write the deliveries of ``plan`` and advance each checkpoint's last status."""
    stamp = db_time(plan.written_at)
    if plan.rows:
        await conn.executemany(
            _INSERT,
            [
                (
                    r.id, r.run_id, r.checkpoint, r.action, r.action_type, r.position, r.stage,
                    r.kind, r.previous_status.value if r.previous_status else None,
                    r.destination, stamp, stamp, stamp, r.result_json,
                )
                for r in plan.rows
            ],
        )  # fmt: skip
    if plan.last_status:
        await conn.executemany(
            "INSERT INTO kv_state (namespace, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            [(LAST_STATUS_NAMESPACE, k, st.value, stamp) for k, st in plan.last_status.items()],
        )


# ------------------------------------------------------------------ dispatching


async def due(
    conn: aiosqlite.Connection,
    now: datetime,
    *,
    busy: Iterable[str] = (),
    blocked: Iterable[str] = (),
    full_runs: Iterable[str] = (),
    limit: int = 100,
) -> list[OutboxEntry]:
    """Eligible deliveries due by ``now``, oldest due first, with their results.

    Not picked: ``busy`` delivery ids (in flight), ``blocked`` destinations
    (full, or behind an open circuit breaker), ``full_runs`` (runs at their
    strategy's ``max_concurrency``).
    """
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS}, o.result FROM action_outbox AS o WHERE {_ELIGIBLE} "
        "AND o.next_attempt_at <= :now ORDER BY o.next_attempt_at, o.seq LIMIT :limit",
        {
            **_exclusions(busy, blocked, full_runs),
            "now": db_time(now),
            "limit": limit,
        },
    )
    return [_entry(row, row[19]) for row in rows]


async def next_due(
    conn: aiosqlite.Connection,
    *,
    busy: Iterable[str] = (),
    blocked: Iterable[str] = (),
    full_runs: Iterable[str] = (),
) -> datetime | None:
    """When the next eligible delivery is due (possibly in the past), or None."""
    rows = await conn.execute_fetchall(
        f"SELECT min(o.next_attempt_at) FROM action_outbox AS o WHERE {_ELIGIBLE}",
        _exclusions(busy, blocked, full_runs),
    )
    value = next(iter(rows))[0] if rows else None
    return parse_db_time(value) if value else None


def _exclusions(
    busy: Iterable[str], blocked: Iterable[str], full_runs: Iterable[str]
) -> dict[str, str]:
    return {
        "busy": json.dumps(sorted(busy)),
        "blocked": json.dumps(sorted(blocked)),
        "full_runs": json.dumps(sorted(full_runs)),
    }


async def mark_delivered(
    conn: aiosqlite.Connection,
    delivery_id: str,
    now: datetime,
    *,
    attempts: int,
    status_code: int | None,
) -> None:
    """pending → delivered."""
    stamp = db_time(now)
    await conn.execute(
        "UPDATE action_outbox SET status = 'delivered', attempts = ?, updated_at = ?, "
        "delivered_at = ?, last_status_code = ?, last_error = NULL WHERE id = ? "
        "AND status = 'pending'",
        (attempts, stamp, stamp, status_code, delivery_id),
    )


async def mark_failed(
    conn: aiosqlite.Connection,
    delivery_id: str,
    now: datetime,
    *,
    attempts: int,
    error: str,
    status_code: int | None,
    retry_at: datetime | None,
) -> None:
    """A failed attempt: pending again at ``retry_at``, or dead when ``retry_at`` is None.

    ``error`` must already be scrubbed of secrets.
    """
    stamp = db_time(now)
    status = "dead" if retry_at is None else "pending"
    next_at = db_time(retry_at) if retry_at is not None else stamp
    await conn.execute(
        "UPDATE action_outbox SET status = ?, attempts = ?, next_attempt_at = ?, updated_at = ?, "
        "last_error = ?, last_status_code = ? WHERE id = ? AND status = 'pending'",
        (status, attempts, next_at, stamp, error, status_code, delivery_id),
    )


async def prune_delivered(conn: aiosqlite.Connection, before: datetime) -> int:
    """Delete delivered rows delivered before ``before``; dead and pending rows stay."""
    cursor = await conn.execute(
        "DELETE FROM action_outbox WHERE status = 'delivered' AND delivered_at < ?",
        (db_time(before),),
    )
    return cursor.rowcount


# ------------------------------------------------------------------ operators


async def requeue(
    conn: aiosqlite.Connection, now: datetime, ids: Sequence[str] | None = None
) -> list[str]:
    """Dead deliveries (those of ``ids``, or all when None) → pending, due now, attempts reset.

    Returns the ids requeued; ids that are not dead are left alone.
    """
    stamp = db_time(now)
    if ids is None:
        rows = await conn.execute_fetchall("SELECT id FROM action_outbox WHERE status = 'dead'")
    else:
        rows = await conn.execute_fetchall(
            "SELECT id FROM action_outbox WHERE status = 'dead' "
            "AND id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        )
    found = [row[0] for row in rows]
    await conn.executemany(
        "UPDATE action_outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, "
        "updated_at = ? WHERE id = ? AND status = 'dead'",
        [(stamp, stamp, delivery_id) for delivery_id in found],
    )
    return found


async def list_entries(
    conn: aiosqlite.Connection,
    *,
    status: DeliveryStatus | None = None,
    checkpoint: str | None = None,
    limit: int = 50,
) -> list[OutboxEntry]:
    """Deliveries newest first (without their results)."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValueError(f"status must be one of {', '.join(DELIVERY_STATUSES)}, not {status!r}")
    where = []
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if checkpoint is not None:
        where.append("checkpoint = ?")
        params.append(checkpoint)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM action_outbox {clause} ORDER BY seq DESC LIMIT ?",
        [*params, limit],
    )
    return [_entry(row) for row in rows]


async def get_entry(conn: aiosqlite.Connection, delivery_id: str) -> OutboxEntry | None:
    """One delivery by id (without its result), or None."""
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM action_outbox WHERE id = ?", (delivery_id,)
    )
    return _entry(next(iter(rows))) if rows else None


async def counts(conn: aiosqlite.Connection) -> Mapping[DeliveryStatus, int]:
    """How many deliveries are pending, delivered, dead."""
    rows = await conn.execute_fetchall("SELECT status, count(*) FROM action_outbox GROUP BY status")
    found = {row[0]: int(row[1]) for row in rows}
    return {status: found.get(status, 0) for status in DELIVERY_STATUSES}


def with_deliveries(
    items: Sequence[tuple[CheckpointResult, TriggerEvent | None]],
    deliveries: DeliveryPlanner,
    extra: TransactionHook | None,
) -> TransactionHook:
    """``extra`` preceded by writing the deliveries ``deliveries`` plans for ``items`` (the
    transaction hook of ``SqliteStore.save_results(deliveries=...)``)."""
    checkpoints = [result.checkpoint for result, _ in items]

    async def write_deliveries(conn: aiosqlite.Connection) -> None:
        last = await last_statuses(conn, checkpoints)
        await write_plan(conn, deliveries(last))
        if extra is not None:
            await extra(conn)

    return write_deliveries


# ------------------------------------------------------------------ the backend's OutboxStore

Read = Callable[[Callable[[aiosqlite.Connection], Awaitable[Any]]], Awaitable[Any]]
Write = Callable[[Callable[[aiosqlite.Connection], Awaitable[Any]], str], Awaitable[Any]]


class SqliteOutbox:
    """``protocols.OutboxStore`` on the store's connections (``Store.outbox``): reads on the
    read-only connection, writes through the one writer."""

    def __init__(self, read: Read, write: Write) -> None:
        self._read = read
        self._write = write

    async def due(
        self,
        now: datetime,
        *,
        busy: Iterable[str] = (),
        blocked: Iterable[str] = (),
        full_runs: Iterable[str] = (),
        limit: int = 100,
    ) -> list[OutboxEntry]:
        found: list[OutboxEntry] = await self._read(
            lambda c: due(c, now, busy=busy, blocked=blocked, full_runs=full_runs, limit=limit)
        )
        return found

    async def next_due(
        self,
        *,
        busy: Iterable[str] = (),
        blocked: Iterable[str] = (),
        full_runs: Iterable[str] = (),
    ) -> datetime | None:
        when: datetime | None = await self._read(
            lambda c: next_due(c, busy=busy, blocked=blocked, full_runs=full_runs)
        )
        return when

    async def mark_delivered(
        self, delivery_id: str, now: datetime, *, attempts: int, status_code: int | None
    ) -> None:
        await self._write(
            lambda c: mark_delivered(
                c, delivery_id, now, attempts=attempts, status_code=status_code
            ),
            f"marking delivery {delivery_id} delivered",
        )

    async def mark_failed(
        self,
        delivery_id: str,
        now: datetime,
        *,
        attempts: int,
        error: str,
        status_code: int | None,
        retry_at: datetime | None,
    ) -> None:
        await self._write(
            lambda c: mark_failed(
                c,
                delivery_id,
                now,
                attempts=attempts,
                error=error,
                status_code=status_code,
                retry_at=retry_at,
            ),
            f"recording a failed attempt of delivery {delivery_id}",
        )

    async def prune_delivered(self, before: datetime) -> int:
        pruned: int = await self._write(
            lambda c: prune_delivered(c, before), "pruning delivered actions"
        )
        return pruned

    async def requeue(self, now: datetime, ids: Sequence[str] | None = None) -> list[str]:
        found: list[str] = await self._write(
            lambda c: requeue(c, now, ids), "requeueing dead deliveries"
        )
        return found

    async def entries(
        self,
        *,
        status: DeliveryStatus | None = None,
        checkpoint: str | None = None,
        limit: int = 50,
    ) -> list[OutboxEntry]:
        found: list[OutboxEntry] = await self._read(
            lambda c: list_entries(c, status=status, checkpoint=checkpoint, limit=limit)
        )
        return found

    async def get(self, delivery_id: str) -> OutboxEntry | None:
        found: OutboxEntry | None = await self._read(lambda c: get_entry(c, delivery_id))
        return found

    async def counts(self) -> Mapping[DeliveryStatus, int]:
        found: Mapping[DeliveryStatus, int] = await self._read(counts)
        return found
