"""Fixtures of the storage tests: a SQLite checkpointer whose every statement is recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from forkpoint import SqliteCheckpointer
from tests.conftest import Counter


class Recorder:
    """Stands in for the driver connection and records every statement text run on it."""

    def __init__(self, conn: sqlite3.Connection, seen: list[str]) -> None:
        self._conn = conn
        self._seen = seen

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._seen.append(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._seen.append(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
async def recorded(tmp_path: Path) -> Any:
    """(checkpointer, statement texts run, driver trace with bound values expanded)."""
    cp = await SqliteCheckpointer.open(tmp_path / "x.db", Counter)
    seen: list[str] = []
    traced: list[str] = []
    assert cp.engine.writer is not None
    threads = (cp.engine.reader, cp.engine.writer.thread)
    for thread in threads:
        raw = thread.connection
        assert raw is not None
        await thread.call(lambda conn: conn.set_trace_callback(traced.append))
        thread.connection = Recorder(raw, seen)  # type: ignore[assignment]
    yield cp, seen, traced
    for thread in threads:
        assert isinstance(thread.connection, Recorder)
        thread.connection = thread.connection._conn
    await cp.close()
