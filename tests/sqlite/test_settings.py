"""SQLite only: the settings open() promises are the ones the connections really run with."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from forkpoint import CheckpointerClosed, NotAForkpointDatabase, SqliteCheckpointer, StorageError
from forkpoint.sqlite import Durability
from tests.conftest import Counter, make_cp


def _pragma(name: str) -> Any:
    def read(conn: sqlite3.Connection) -> Any:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]  # name: a constant of this module

    return read


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
async def test_durability_is_the_writers_synchronous_level(
    tmp_path: Path, durability: Durability, synchronous: int
) -> None:
    async with SqliteCheckpointer.open(tmp_path / "d.db", Counter, durability=durability) as cp:
        assert await cp.engine.on_writer(_pragma("synchronous")) == synchronous
        assert await cp.engine.on_writer(_pragma("journal_mode")) == "wal"


async def test_defaults_full_durability_and_a_five_second_busy_timeout(tmp_path: Path) -> None:
    async with SqliteCheckpointer.open(tmp_path / "d.db", Counter) as cp:
        assert await cp.engine.on_writer(_pragma("synchronous")) == 2
        assert await cp.engine.on_writer(_pragma("busy_timeout")) == 5000
        assert await cp.engine.read(_pragma("busy_timeout")) == 5000


async def test_new_databases_reclaim_space_incrementally(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        await cp.save(make_cp("t", 0))
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    finally:
        conn.close()


async def test_a_directory_is_refused_as_one(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="directory") as info:
        await SqliteCheckpointer.open(tmp_path, Counter)
    assert not isinstance(info.value, NotAForkpointDatabase)


async def test_a_checkpointer_never_opened_says_how_to_open_one() -> None:
    cp = SqliteCheckpointer(Counter)
    with pytest.raises(CheckpointerClosed, match=r"SqliteCheckpointer\.open"):
        await cp.load("t")
    with pytest.raises(CheckpointerClosed, match=r"SqliteCheckpointer\.open"):
        await cp.save(make_cp("t", 0))
    await cp.close()  # nothing to release; returns
