"""Guard for the one aiosqlite private API forkpoint uses (``sqlite._on_worker``).

``Connection._execute`` is not public; if an aiosqlite release changes it,
these tests fail before any checkpoint is written the wrong way.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from forkpoint import sqlite as fp_sqlite


async def test_on_worker_runs_on_the_connections_thread(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(tmp_path / "w.db", isolation_level=None)
    try:
        seen: dict[str, Any] = {}

        def work(raw: sqlite3.Connection, a: int, b: int) -> int:
            seen["thread"] = threading.get_ident()
            seen["conn"] = raw
            raw.execute("CREATE TABLE t (x)")
            raw.execute("INSERT INTO t VALUES (?)", (a + b,))
            return int(raw.execute("SELECT x FROM t").fetchone()[0])

        assert await fp_sqlite._on_worker(conn, work, 2, 3) == 5
        assert seen["thread"] != threading.get_ident()  # not the event loop's thread
        assert isinstance(seen["conn"], sqlite3.Connection)
        # The worker is the thread aiosqlite runs the connection on.
        worker = getattr(conn, "_thread", None)
        assert isinstance(worker, threading.Thread)
        assert seen["thread"] == worker.ident
        # And it is the connection aiosqlite itself uses.
        async with conn.execute("SELECT x FROM t") as cursor:
            assert await cursor.fetchone() == (5,)
    finally:
        await conn.close()


async def test_on_worker_propagates_errors(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(tmp_path / "w.db", isolation_level=None)
    try:

        def boom(raw: sqlite3.Connection) -> None:
            raw.execute("SELECT * FROM no_such_table")

        with pytest.raises(sqlite3.OperationalError):
            await fp_sqlite._on_worker(conn, boom)
    finally:
        await conn.close()
