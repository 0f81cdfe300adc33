"""Reading a database leaves no -wal/-shm files behind and does not change the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forkpoint import ReadOnlyDatabase, SqliteCheckpointer
from tests.conftest import Counter, make_cp


async def test_read_only_open_and_close_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    async with SqliteCheckpointer.open(path, Counter) as cp:
        await cp.save(make_cp("t", 0))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert before == ["x.db"]
    content = path.read_bytes()
    async with SqliteCheckpointer.open(path, Counter, read_only=True) as reader:
        assert (await reader.load("t")) is not None
        assert [t.thread_id for t in await reader.list_threads()] == ["t"]
        with pytest.raises(ReadOnlyDatabase):
            await reader.save(make_cp("t", 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert path.read_bytes() == content


async def test_reads_hold_no_snapshot_once_answered(tmp_path: Path) -> None:
    """A load is one unframed SELECT: once answered, nothing of it keeps the WAL from folding back."""
    path = tmp_path / "x.db"
    async with SqliteCheckpointer.open(path, Counter) as cp:
        for step in range(5):
            await cp.save(make_cp("t", step))
        assert await cp.load("t") is not None
        assert await cp.get("t", 2) is not None
        assert len(await cp.list_checkpoints("t")) == 5
        await cp.save(make_cp("t", 5))
        assert not await cp.engine.reader.call(lambda conn: conn.in_transaction)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            other.close()
        assert busy == 0
