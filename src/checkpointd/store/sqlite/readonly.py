"""Read a state dir without owning it, so ``checkpointd history`` and ``checkpointd
deliveries`` work beside a running daemon (SQLite WAL lets readers and the daemon's
writer proceed together)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite

from checkpointd.checkpoints.result import CheckpointResult
from checkpointd.store.model import DELIVERY_STATUSES, DeliveryStatus, OutboxEntry
from checkpointd.store.sqlite import outbox as outbox_rows
from checkpointd.store.sqlite import queries as store_queries
from checkpointd.store.sqlite.store import DB_FILE_NAME


def read_history(
    state_dir: Path, *, checkpoint: str | None = None, status: str | None = None, limit: int = 20
) -> list[CheckpointResult]:
    """Newest first; an empty list when nothing was ever recorded there."""
    path = Path(state_dir) / DB_FILE_NAME
    if not path.exists():
        return []
    return asyncio.run(_read(path, checkpoint, status, limit))


async def _read(
    path: Path, checkpoint: str | None, status: str | None, limit: int
) -> list[CheckpointResult]:
    async with aiosqlite.connect(f"file:{path}?mode=ro", uri=True) as conn:
        await conn.execute("PRAGMA busy_timeout = 5000")
        return await store_queries.list_runs(
            conn, checkpoint=checkpoint, status=status, limit=limit
        )


async def read_deliveries(
    state_dir: Path, *, status: DeliveryStatus | None, checkpoint: str | None, limit: int
) -> tuple[list[OutboxEntry], dict[str, int]]:
    """Deliveries newest first and counts by status; empty when none were kept."""
    path = Path(state_dir) / DB_FILE_NAME
    empty: dict[str, int] = {s: 0 for s in DELIVERY_STATUSES}
    if not path.exists():
        return [], empty
    async with aiosqlite.connect(f"file:{path}?mode=ro", uri=True) as conn:
        await conn.execute("PRAGMA busy_timeout = 5000")
        tables = await conn.execute_fetchall(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'action_outbox'"
        )
        if not list(tables):
            return [], empty  # a state dir from before the outbox existed
        entries = await outbox_rows.list_entries(
            conn, status=status, checkpoint=checkpoint, limit=limit
        )
        counts = {str(k): v for k, v in (await outbox_rows.counts(conn)).items()}
    return entries, counts
