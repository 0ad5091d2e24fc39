"""Read past runs without owning the state dir, so ``checkpointd history`` works beside a
running daemon (SQLite WAL lets readers and the daemon's writer proceed together)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite

from checkpointd.checkpoints.result import CheckpointResult
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
