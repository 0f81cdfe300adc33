"""SQLite only: a stored row that no longer validates is a SerializationError for that step alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forkpoint import SerializationError, SqliteCheckpointer, StateSchema
from tests.conftest import Counter, make_cp


class Renamed(StateSchema):
    """The state type after an incompatible change: a required field that old rows lack."""

    total: int


def _edit(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert conn.execute(sql, params).rowcount == 1
    finally:
        conn.close()


async def test_row_that_no_longer_validates_names_thread_and_step(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        for step in range(3):
            await cp.save(make_cp("t", step))
        await cp.save(make_cp("other", 0))
    _edit(db, "UPDATE checkpoints SET state = ? WHERE thread_id = 't' AND step = 2", '{"n": "x"}')
    async with SqliteCheckpointer.open(db, Counter) as cp:
        with pytest.raises(SerializationError) as info:
            await cp.load("t")
        assert (info.value.thread_id, info.value.step) == ("t", 2)
        assert "'t'" in str(info.value)
        assert "step 2" in str(info.value)
        with pytest.raises(SerializationError):
            await cp.get("t", 2)
        # Listing never decodes a state; other threads load.
        assert [m.step for m in await cp.list_checkpoints("t")] == [0, 1, 2]
        other = await cp.load("other")
        assert other is not None
        assert other.state.data.n == 0
        info_t = await cp.thread_info("t")
        assert info_t is not None
        assert info_t.latest_step == 2


async def test_opening_with_an_incompatible_state_type(tmp_path: Path) -> None:
    db = tmp_path / "typed.db"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        await cp.save(make_cp("t", 0))
    async with SqliteCheckpointer.open(db, Renamed) as cp2:
        with pytest.raises(SerializationError) as info:
            await cp2.load("t")
        assert (info.value.thread_id, info.value.step) == ("t", 0)
        assert [m.step for m in await cp2.list_checkpoints("t")] == [0]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("state", "{not json"),
        ("state", '{"n": NaN}'),
        ("queue", '[["a"]]'),
        ("queue", "{}"),
        ("metadata", "[]"),
        ("created_at", "yesterday"),
    ],
)
async def test_damaged_columns_are_serialization_errors(
    tmp_path: Path, column: str, value: str
) -> None:
    db = tmp_path / "cols.db"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        await cp.save(make_cp("t", 0))
        await cp.save(make_cp("t", 1))
    _edit(
        db,
        f"UPDATE checkpoints SET {column} = ? WHERE thread_id = 't' AND step = 1",  # noqa: S608 - test constant
        value,
    )
    async with SqliteCheckpointer.open(db, Counter) as cp:
        with pytest.raises(SerializationError) as info:
            await cp.get("t", 1)
        assert (info.value.thread_id, info.value.step) == ("t", 1)
        zero = await cp.get("t", 0)
        assert zero is not None


async def test_damaged_listing_rows_name_where_they_are(tmp_path: Path) -> None:
    db = tmp_path / "listing.db"
    await _history_damaged_at(db, 517)
    async with SqliteCheckpointer.open(db, Counter) as cp:
        await cp.save(make_cp("u", 0))
    _edit(db, "UPDATE threads SET created_at = 'yesterday' WHERE thread_id = 'u'")
    async with SqliteCheckpointer.open(db, Counter) as cp:
        with pytest.raises(SerializationError) as listing:
            await cp.list_checkpoints("t")
        assert (listing.value.thread_id, listing.value.step) == ("t", 517)
        assert [m.step for m in await cp.list_checkpoints("t", after=517)][:1] == [518]
        with pytest.raises(SerializationError) as threads:
            await cp.list_threads()
        assert (threads.value.thread_id, threads.value.step) == ("u", None)
        assert "thread record" in str(threads.value)


async def test_a_failed_listing_holds_no_read_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "snapshot.db"
    await _history_damaged_at(db, 3)
    async with SqliteCheckpointer.open(db, Counter) as cp:
        with pytest.raises(SerializationError) as kept:
            await cp.list_checkpoints("t")
        await cp.save(make_cp("t", 600))
        # The error (and its traceback) is still alive; the WAL must still fold back whole.
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        assert kept.value.step == 3
        assert busy == 0


async def test_a_page_decodes_only_its_own_rows(tmp_path: Path) -> None:
    """Listing cost follows the page: a damaged row outside the page is never decoded."""
    db = tmp_path / "page.db"
    await _history_damaged_at(db, 517)
    async with SqliteCheckpointer.open(db, Counter) as cp:
        with pytest.raises(SerializationError):
            await cp.list_checkpoints("t")
        assert [m.step for m in await cp.list_checkpoints("t", limit=5)] == [0, 1, 2, 3, 4]
        newest = await cp.list_checkpoints("t", newest_first=True, before=517, limit=3)
        assert [m.step for m in newest] == [516, 515, 514]


async def _history_damaged_at(db: Path, step: int) -> None:
    """A 600-step thread "t" (more rows than one fetched chunk) whose row ``step`` has bad metadata."""
    async with SqliteCheckpointer.open(db, Counter) as cp:
        for n in range(600):
            await cp.save(make_cp("t", n))
    _edit(db, "UPDATE checkpoints SET metadata = '[1]' WHERE thread_id = 't' AND step = ?", step)
