"""The SQLite schema of the state dir, as numbered migrations.

``MIGRATIONS`` is append-only: a released migration is never edited, a change
is a new entry with the next version. Each migration runs in its own
``BEGIN IMMEDIATE`` transaction together with the ``schema_version`` row that
records it, so a crash mid-upgrade leaves the database at the previous
version, never half-way. A database whose version is newer than this code
knows is refused (an older checkpointd must not write a schema it does not
understand).

Timestamps are stored as UTC text, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: readable
in the ``sqlite3`` shell and, being fixed-width, sorted chronologically by
plain text comparison.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from checkpointd.errors import StoreError
from checkpointd.store.model import db_time


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: its version, what it does, and its statements."""

    version: int
    description: str
    # Separate statements rather than one script: sqlite3's executescript()
    # commits any open transaction first, which would break the
    # one-transaction-per-migration guarantee.
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "journal, runs, validator results, key-value state, seen keys",
        (
            """
            CREATE TABLE journal (
                id           INTEGER PRIMARY KEY,
                key          TEXT NOT NULL,     -- the event's idempotency key
                checkpoint   TEXT NOT NULL,
                trigger_type TEXT NOT NULL,
                params       TEXT NOT NULL,     -- JSON object of {trigger.*} values
                records      TEXT,              -- JSON array of a Kafka batch; cleared when done
                fired_at     TEXT NOT NULL,
                state        TEXT NOT NULL CHECK (
                    state IN ('accepted', 'running', 'done', 'failed', 'interrupted')),
                accepted_at  TEXT NOT NULL,
                updated_at   TEXT NOT NULL,
                attempts     INTEGER NOT NULL DEFAULT 0,
                run_id       TEXT,
                UNIQUE (key, checkpoint)
            )
            """,
            "CREATE INDEX journal_state_updated ON journal (state, updated_at)",
            """
            CREATE TABLE runs (
                seq              INTEGER PRIMARY KEY,
                run_id           TEXT NOT NULL UNIQUE,
                checkpoint       TEXT NOT NULL,
                status           TEXT NOT NULL,
                started_at       TEXT NOT NULL,
                finished_at      TEXT NOT NULL,
                duration_seconds REAL NOT NULL,
                attempt          INTEGER NOT NULL,
                trigger_type     TEXT,
                journal_key      TEXT,
                result           TEXT NOT NULL  -- CheckpointResult.to_dict() as JSON
            )
            """,
            "CREATE INDEX runs_started ON runs (started_at)",
            "CREATE INDEX runs_checkpoint_started ON runs (checkpoint, started_at)",
            "CREATE INDEX runs_status_started ON runs (status, started_at)",
            """
            CREATE TABLE validator_results (
                run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                position      INTEGER NOT NULL,
                type          TEXT NOT NULL,
                name          TEXT,
                column_name   TEXT,
                columns       TEXT,             -- JSON array, when the validator has several
                status        TEXT NOT NULL,
                severity      TEXT NOT NULL,
                checked_count INTEGER NOT NULL,
                failed_count  INTEGER NOT NULL,
                failed_ratio  REAL NOT NULL,
                message       TEXT NOT NULL,
                PRIMARY KEY (run_id, position)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE kv_state (
                namespace  TEXT NOT NULL,
                key        TEXT NOT NULL,
                value      TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (namespace, key)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE seen_keys (
                namespace TEXT NOT NULL,
                key       TEXT NOT NULL,
                seen_at   TEXT NOT NULL,
                PRIMARY KEY (namespace, key)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        2,
        "action outbox: one row per notification to deliver",
        (
            """
            CREATE TABLE action_outbox (
                seq              INTEGER PRIMARY KEY,
                id               TEXT NOT NULL UNIQUE,  -- also the Idempotency-Key
                run_id           TEXT NOT NULL,
                checkpoint       TEXT NOT NULL,
                action           TEXT NOT NULL,         -- the action's name
                action_type      TEXT NOT NULL,
                position         INTEGER NOT NULL,      -- index in the checkpoint's actions
                stage            INTEGER NOT NULL,      -- order within the run (strategy)
                kind             TEXT NOT NULL CHECK (kind IN ('notify', 'recovered')),
                previous_status  TEXT,
                destination      TEXT NOT NULL,         -- redacted: never a secret
                status           TEXT NOT NULL CHECK (
                    status IN ('pending', 'delivered', 'dead')),
                attempts         INTEGER NOT NULL DEFAULT 0,
                next_attempt_at  TEXT NOT NULL,
                created_at       TEXT NOT NULL,
                updated_at       TEXT NOT NULL,
                delivered_at     TEXT,
                last_error       TEXT,                  -- redacted
                last_status_code INTEGER,
                result           TEXT NOT NULL,         -- CheckpointResult.to_dict() as JSON
                UNIQUE (run_id, action)
            )
            """,
            "CREATE INDEX action_outbox_status_next ON action_outbox (status, next_attempt_at)",
            "CREATE INDEX action_outbox_run_stage ON action_outbox (run_id, stage)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)
"""


async def current_version(conn: aiosqlite.Connection) -> int:
    """The highest applied migration, 0 for a new database."""
    async with conn.execute("SELECT max(version) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(
    conn: aiosqlite.Connection,
    now: datetime,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    *,
    where: str = "database",
) -> int:
    """Bring the database at ``conn`` up to the last of ``migrations``; return its version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): this
    function opens and commits its own transactions. ``where`` names the file
    in error messages.
    """
    _check_sequence(migrations)
    known = migrations[-1].version if migrations else 0
    await conn.execute(_CREATE_VERSION_TABLE)
    version = await current_version(conn)
    if version > known:
        raise StoreError(
            f"{where} has schema version {version}, newer than this checkpointd knows "
            f"({known}); upgrade checkpointd or point daemon.state_dir elsewhere"
        )
    stamp = db_time(now)
    for migration in migrations:
        if migration.version <= version:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: the version may have moved since.
            if await current_version(conn) >= migration.version:
                await conn.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, stamp),
            )
            await conn.execute("COMMIT")
        except BaseException as exc:
            await _rollback_quietly(conn)
            if isinstance(exc, Exception):
                raise StoreError(
                    f"{where}: migration {migration.version} ({migration.description}) "
                    f"failed: {exc}"
                ) from exc
            raise
        version = migration.version
    return version


def _check_sequence(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"migrations must be numbered 1, 2, 3, ... in order, found {versions}")


async def _rollback_quietly(conn: aiosqlite.Connection) -> None:
    # "no transaction is active" is expected when the failure was BEGIN itself.
    with contextlib.suppress(Exception):
        await conn.execute("ROLLBACK")
