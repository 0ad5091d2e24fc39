"""The SQLite store refuses, at open, an aiosqlite without the private members its writer uses."""

from __future__ import annotations

import sqlite3

import aiosqlite
import pytest

from checkpointd.errors import StoreError
from checkpointd.store.sqlite.store import SqliteStore
from checkpointd.store.sqlite.writer import check_aiosqlite_internals


async def test_the_installed_aiosqlite_has_what_the_writer_needs(tmp_path):
    async with aiosqlite.connect(tmp_path / "db") as conn:
        check_aiosqlite_internals(conn)  # raises StoreError if not


class RenamedInternals:
    """An aiosqlite connection as a release that renamed its private members would have it."""

    def __init__(self, missing: str) -> None:
        if missing != "_execute":
            self._execute = lambda fn: fn()
        if missing != "_conn":
            self._conn = sqlite3.connect(":memory:")


@pytest.mark.parametrize("member", ["_execute", "_conn"])
def test_a_missing_member_is_named_with_the_fix(member):
    with pytest.raises(StoreError, match=rf"Connection\.{member}.*pip install 'aiosqlite"):
        check_aiosqlite_internals(RenamedInternals(missing=member))


async def test_store_open_fails_clearly_and_leaves_the_state_dir_free(tmp_path, monkeypatch):
    monkeypatch.setattr(aiosqlite.Connection, "_execute", None)
    with pytest.raises(StoreError, match=r"Connection\._execute"):
        await SqliteStore.open(tmp_path / "state")
    monkeypatch.undo()
    store = await SqliteStore.open(tmp_path / "state")  # the lock and connections were released
    await store.close()
