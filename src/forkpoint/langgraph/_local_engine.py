"""A small stand-in for forkpoint's internal SQLite engine: runs row jobs on one thread.

The saver's storage is written as named jobs ``fn(sqlite3.Connection, *args)``
(``store.py``). This runner owns one connection on one worker thread and runs
each job there, a write job inside ``BEGIN IMMEDIATE … COMMIT`` (rolled back if
it raises), a read job inside one read transaction (one consistent snapshot).
It offers the same two calls as the engine it stands in for, ``write(job,
*args)`` and ``read(job, *args)``, as coroutines, plus blocking twins for the
saver's sync methods. Because the worker is a plain thread, a sync call never
needs an event loop, so it cannot deadlock one.

Driver errors leave as forkpoint's typed errors (``DatabaseLocked`` for a busy
timeout, ``StorageFull``, ``ReadOnlyDatabase``, ``DatabaseCorrupt``, else
``StorageError``), chained to the original.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import (
    CheckpointerClosed,
    CheckpointError,
    DatabaseCorrupt,
    DatabaseLocked,
    ReadOnlyDatabase,
    StorageError,
    StorageFull,
)

T = TypeVar("T")

__all__ = ["LocalEngine"]

_KINDS: dict[int, type[StorageError]] = {
    sqlite3.SQLITE_BUSY: DatabaseLocked,
    sqlite3.SQLITE_LOCKED: DatabaseLocked,
    sqlite3.SQLITE_FULL: StorageFull,
    sqlite3.SQLITE_READONLY: ReadOnlyDatabase,
    sqlite3.SQLITE_CORRUPT: DatabaseCorrupt,
    sqlite3.SQLITE_NOTADB: DatabaseCorrupt,
}


class LocalEngine:
    """One connection, one worker thread; see the module docstring."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="forkpoint-langgraph")
        self._lock = threading.Lock()
        self._closed = False
        self._conn = self._executor.submit(connect).result()

    # --- running jobs ----------------------------------------------------------------------

    def write_sync(self, job: Callable[..., T], *args: Any) -> T:
        return self._submit(self._in_write, job, args).result()

    def read_sync(self, job: Callable[..., T], *args: Any) -> T:
        return self._submit(self._in_read, job, args).result()

    async def write(self, job: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._submit(self._in_write, job, args))

    async def read(self, job: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._submit(self._in_read, job, args))

    def _submit(
        self,
        runner: Callable[[Callable[..., T], tuple[Any, ...]], T],
        job: Callable[..., T],
        args: tuple[Any, ...],
    ) -> Future[T]:
        with self._lock:
            if self._closed:
                raise CheckpointerClosed("the saver is closed", path=self.path)
            return self._executor.submit(runner, job, args)

    def _in_write(self, job: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._typed(exc) from exc
        try:
            result = job(conn, *args)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._typed(exc) from exc
            raise
        return result

    def _in_read(self, job: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._conn
        try:
            conn.execute("BEGIN")
            try:
                return job(conn, *args)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._typed(exc) from exc

    def _typed(self, exc: sqlite3.Error) -> CheckpointError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        kind = _KINDS.get(code, StorageError)
        return kind(f"SQLite failed: {exc}", path=self.path)

    # --- closing ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Finish queued jobs, close the connection and stop the thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)
