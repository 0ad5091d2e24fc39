"""The action outbox: one SQLite row per notification to deliver (table ``action_outbox``).

Rows are written by :func:`enqueue` inside the transaction that stores the
result (``Store.save_results(extra=...)``), so a stored result always has its
deliveries and a crash never leaves one without the other. The dispatcher
then moves each row ``pending → delivered`` or ``pending → dead``; an
operator moves ``dead → pending`` again (:func:`requeue`).

::

    pending ──accepted──▶ delivered
       │  ▲
       │  └─ retryable failure (attempts < max_attempts): next_attempt_at later
       └──── attempts used up, or a failure retrying cannot fix ──▶ dead ──requeue──▶ pending

Nothing here holds a secret: ``destination`` is redacted, ``last_error`` is
scrubbed before it is written, ``result`` is the public result JSON.

The checkpoint's previous status (for ``status_change`` and recoveries) is
kept in ``kv_state`` under :data:`LAST_STATUS_NAMESPACE`, written in the same
transaction, so retention deleting old runs cannot make a status look new.

Every function takes a connection: writes run inside ``Store.write`` (the
writer's open transaction), reads on ``Store.read``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

import aiosqlite

from checkpointd.actions.channel import Delivery, NotificationKind
from checkpointd.actions.notify import is_verdict
from checkpointd.actions.plan import ActionSpec, plan
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.ids import uuid7
from checkpointd.store.model import db_time, dump_json, parse_db_time

__all__ = [
    "LAST_STATUS_NAMESPACE",
    "Candidate",
    "DeliveryStatus",
    "OutboxEntry",
    "counts",
    "due",
    "enqueue",
    "get_entry",
    "last_statuses",
    "list_entries",
    "mark_delivered",
    "mark_failed",
    "next_due",
    "prune_delivered",
    "requeue",
]

DeliveryStatus = Literal["pending", "delivered", "dead"]
DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = get_args(DeliveryStatus)
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


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One delivery and how far it got."""

    id: str
    run_id: str
    checkpoint: str
    action: str
    action_type: str
    position: int
    stage: int
    kind: NotificationKind
    previous_status: Status | None
    destination: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    run_status: str | None
    result: CheckpointResult | None = None
    """Loaded only by :func:`due` (what the dispatcher sends)."""

    def delivery(self) -> Delivery:
        """The next attempt of this entry, as a channel sees it (needs ``result``)."""
        if self.result is None:
            raise ValueError(f"delivery {self.id} was read without its result")
        return Delivery(
            id=self.id,
            run_id=self.run_id,
            checkpoint=self.checkpoint,
            action=self.action,
            action_type=self.action_type,
            kind=self.kind,
            previous_status=self.previous_status,
            attempt=self.attempts + 1,
            result=self.result,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``checkpointd deliveries`` and ``/api/v1/deliveries``."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "checkpoint": self.checkpoint,
            "run_status": self.run_status,
            "action": self.action,
            "action_type": self.action_type,
            "kind": self.kind,
            "previous_status": self.previous_status.value if self.previous_status else None,
            "destination": self.destination,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at) if self.status == "pending" else None,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "delivered_at": _iso(self.delivered_at) if self.delivered_at else None,
            "last_error": self.last_error,
            "last_status_code": self.last_status_code,
        }


def _iso(value: datetime) -> str:
    return db_time(value)


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


# ------------------------------------------------------------------ writing new deliveries


@dataclass(frozen=True, slots=True)
class Candidate:
    """A result being stored, with its checkpoint's actions (and their destinations).

    Prepared outside the transaction; :func:`enqueue` decides inside it.
    """

    result: CheckpointResult
    actions: Sequence[tuple[ActionSpec, str]] = ()


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


async def enqueue(
    conn: aiosqlite.Connection,
    candidates: Sequence[Candidate],
    now: datetime,
    new_id: Callable[[], str] = uuid7,
) -> list[tuple[str, str]]:
    """Write the deliveries ``candidates`` call for and advance each checkpoint's last status.

    Results are taken in order, so two runs of one checkpoint in one batch
    compare against each other. Skipped and cancelled runs change nothing.
    Returns (delivery id, action name) of each row written.
    """
    last = await last_statuses(conn, (c.result.checkpoint for c in candidates))
    stamp = db_time(now)
    rows: list[tuple[Any, ...]] = []
    written: list[tuple[str, str]] = []
    changed: dict[str, Status] = {}
    for candidate in candidates:
        result = candidate.result
        if not is_verdict(result.status):
            continue
        previous = last.get(result.checkpoint)
        destinations = {spec.name: dest for spec, dest in candidate.actions}
        chosen = plan([spec for spec, _ in candidate.actions], result.status, previous)
        result_json = dump_json(result.to_dict()) if chosen else ""
        for planned in chosen:
            spec = planned.spec
            delivery_id = new_id()
            rows.append((
                delivery_id, result.run_id, result.checkpoint, spec.name, spec.action_type,
                spec.index, spec.stage, planned.kind, previous.value if previous else None,
                destinations[spec.name], stamp, stamp, stamp, result_json,
            ))  # fmt: skip
            written.append((delivery_id, spec.name))
        last[result.checkpoint] = changed[result.checkpoint] = result.status
    if rows:
        await conn.executemany(_INSERT, rows)
    if changed:
        await conn.executemany(
            "INSERT INTO kv_state (namespace, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            [(LAST_STATUS_NAMESPACE, name, st.value, stamp) for name, st in changed.items()],
        )
    return written


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
