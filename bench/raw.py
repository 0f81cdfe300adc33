"""The raw limit: stdlib ``sqlite3``, forkpoint's pragmas and table shape, no asyncio.

Every save serialises the pydantic state with ``model_dump_json`` and runs
one ``BEGIN IMMEDIATE … COMMIT`` (insert the checkpoint, upsert the thread
row). This is what SQLite and pydantic can do from Python with nothing in
between; forkpoint's column is compared against it at the same durability.
``save_group`` puts many saves in one transaction: the ceiling for W3, where
forkpoint's group commit coalesces concurrent saves.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any, Literal

from forkpoint.sqlite._thread import ConnectionThread

from .state import BenchState

__all__ = ["RawAioStore", "RawStore"]

_DDL = """
CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT NOT NULL PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    latest_step INTEGER NOT NULL,
    checkpoint_count INTEGER NOT NULL,
    parent_thread_id TEXT,
    parent_step INTEGER,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS ix_threads_parent ON threads (parent_thread_id);
CREATE INDEX IF NOT EXISTS ix_threads_updated_at ON threads (updated_at);
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    node TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (thread_id, step)
);
"""
_INSERT = (
    "INSERT INTO checkpoints (thread_id, step, created_at, node, metadata, queue, state) "
    "VALUES (?, ?, ?, 'node', '{}', '[]', ?)"
)
_UPSERT_THREAD = (
    "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count) "
    "VALUES (?, ?, ?, ?, 1) ON CONFLICT (thread_id) DO UPDATE SET latest_step = excluded.latest_step, "
    "updated_at = excluded.updated_at, checkpoint_count = checkpoint_count + 1"
)
_LATEST = (
    "SELECT step, node, created_at, queue, metadata, state FROM checkpoints "
    "WHERE thread_id = ? ORDER BY step DESC LIMIT 1"
)
_HISTORY = (
    "SELECT step, created_at, node, metadata FROM checkpoints WHERE thread_id = ? ORDER BY step"
)
_FORK_ROWS = (
    "INSERT INTO checkpoints (thread_id, step, created_at, node, metadata, queue, state) "
    "SELECT ?, step, created_at, node, metadata, queue, state FROM checkpoints "
    "WHERE thread_id = ? AND step <= ?"
)
_FORK_THREAD = (
    "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count, "
    "parent_thread_id, parent_step) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _pragmas(durability: Literal["full", "normal"]) -> str:
    """The per-connection pragmas forkpoint's writer sets."""
    sync = "FULL" if durability == "full" else "NORMAL"
    return (
        f"PRAGMA busy_timeout = 5000; PRAGMA synchronous = {sync}; "
        "PRAGMA journal_size_limit = 16777216; PRAGMA temp_store = MEMORY;"
    )


def _save_group(conn: sqlite3.Connection, items: list[tuple[str, int, BenchState]]) -> None:
    """Checkpoints in one transaction, each serialised with ``model_dump_json``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for thread_id, step, state in items:
            text = state.model_dump_json()
            now = _now()
            conn.execute(_INSERT, (thread_id, step, now, text))
            conn.execute(_UPSERT_THREAD, (thread_id, now, now, step))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _load(conn: sqlite3.Connection, thread_id: str) -> BenchState | None:
    row = conn.execute(_LATEST, (thread_id,)).fetchone()
    return None if row is None else BenchState.model_validate_json(row[5])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RawStore:
    """One stdlib connection with forkpoint's pragmas; synchronous."""

    def __init__(self, path: str, durability: Literal["full", "normal"]) -> None:
        self.path = path
        conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_pragmas(durability))
        conn.executescript(_DDL)
        self.conn = conn

    def save(self, thread_id: str, step: int, state: BenchState) -> None:
        """One checkpoint, one transaction."""
        _save_group(self.conn, [(thread_id, step, state)])

    def save_group(self, items: list[tuple[str, int, BenchState]]) -> None:
        """Several checkpoints in one transaction: the group-commit ceiling (W3)."""
        _save_group(self.conn, items)

    def load(self, thread_id: str) -> BenchState | None:
        """The latest row, its state validated by the pydantic model."""
        return _load(self.conn, thread_id)

    def list(self, thread_id: str) -> list[tuple[Any, ...]]:
        """The metadata columns, decoded (time parsed, metadata JSON loaded)."""
        rows = self.conn.execute(_HISTORY, (thread_id,)).fetchall()
        return [
            (step, datetime.fromisoformat(created), node, json.loads(meta))
            for step, created, node, meta in rows
        ]

    def fork(self, thread_id: str, at_step: int, new_thread_id: str) -> None:
        """One ``INSERT … SELECT`` transaction."""
        now = _now()
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(_FORK_ROWS, (new_thread_id, thread_id, at_step)).rowcount
            conn.execute(_FORK_THREAD, (new_thread_id, now, now, at_step, n, thread_id, at_step))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawAioStore:
    """The raw work, one worker-thread round trip per call: the ceiling for any threaded design.

    Each save (or load) is ``RawStore``'s function run whole on a
    ``ConnectionThread``, the way forkpoint runs its own, so the only cost added to
    raw is the hop itself.
    """

    def __init__(self, conn: ConnectionThread) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, path: str, durability: Literal["full", "normal"]) -> RawAioStore:
        RawStore(path, durability).close()  # the file, its tables and WAL mode

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.executescript(_pragmas(durability))
            return conn

        thread = ConnectionThread(connect, "bench-raw")
        await thread.start()
        return cls(thread)

    async def save(self, thread_id: str, step: int, state: BenchState) -> None:
        await self.conn.call(_save_group, [(thread_id, step, state)])

    async def load(self, thread_id: str) -> BenchState | None:
        return await self.conn.call(_load, thread_id)

    async def close(self) -> None:
        await self.conn.stop()
