"""The two SQLite connections of a store: opened, set up (WAL, pragmas) and migrated.

A store writes on one connection (through its one writer) and reads on another,
read-only one, so reads never wait for the writer. :func:`open_connections` opens
both or neither.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from checkpointd.errors import StoreError
from checkpointd.store.sqlite.schema import migrate
from checkpointd.store.sqlite.writer import check_aiosqlite_internals

__all__ = ["close_quietly", "open_connections"]


async def open_connections(
    db_path: Path, *, synchronous: str, now: datetime
) -> tuple[aiosqlite.Connection, aiosqlite.Connection]:
    """(writer, reader) on ``db_path``, migrated; on failure both are closed again.

    Raises StoreError naming the file and what went wrong.
    """
    opened: list[aiosqlite.Connection] = []
    try:
        writer = await _connect(db_path, opened)
        check_aiosqlite_internals(writer)
        await _setup_writer(writer, db_path, synchronous)
        await migrate(writer, now, where=str(db_path))
        reader = await _connect(db_path, opened)
        await _pragmas(reader, db_path, "PRAGMA busy_timeout = 5000")
        await _pragmas(reader, db_path, "PRAGMA query_only = ON")
    except BaseException as exc:
        for conn in opened:
            await close_quietly(conn)
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot open {db_path}: {exc}") from exc
        raise
    return writer, reader


async def _connect(db_path: Path, opened: list[aiosqlite.Connection]) -> aiosqlite.Connection:
    try:
        # isolation_level=None: no implicit BEGIN; the writer issues its own
        # BEGIN IMMEDIATE so it takes the write lock up front and never has
        # to upgrade a read transaction (which can fail with SQLITE_BUSY).
        conn = await aiosqlite.connect(db_path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {db_path}: {exc}") from exc
    opened.append(conn)
    return conn


async def _pragmas(conn: aiosqlite.Connection, db_path: Path, sql: str) -> list[Any]:
    try:
        return list(await conn.execute_fetchall(sql))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {db_path} ({sql}): {exc}") from exc


async def _setup_writer(conn: aiosqlite.Connection, db_path: Path, synchronous: str) -> None:
    mode = await _pragmas(conn, db_path, "PRAGMA journal_mode = WAL")
    if not mode or str(mode[0][0]).lower() != "wal":
        raise StoreError(
            f"cannot use WAL journaling for {db_path} (got {mode[0][0] if mode else None!r}); "
            "put daemon.state_dir on a local filesystem"
        )
    await _pragmas(conn, db_path, f"PRAGMA synchronous = {synchronous}")
    # Waits out a foreign `sqlite3` shell holding the lock instead of failing at once.
    await _pragmas(conn, db_path, "PRAGMA busy_timeout = 5000")
    await _pragmas(conn, db_path, "PRAGMA foreign_keys = ON")
    # After a checkpoint, shrink the WAL back instead of keeping its peak size.
    await _pragmas(conn, db_path, "PRAGMA journal_size_limit = 67108864")


async def close_quietly(conn: aiosqlite.Connection) -> None:
    # Best effort: everything worth keeping is committed already.
    with contextlib.suppress(Exception):
        await conn.close()
