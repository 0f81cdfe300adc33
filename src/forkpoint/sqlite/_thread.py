"""ConnectionThread: one ``sqlite3`` connection, used only from one daemon thread of its own.

forkpoint's SQLite backend owns its worker threads (standard library only)
instead of reaching into aiosqlite's private ``Connection._execute``: every
operation is one function queued here and run whole on the thread, so a
transaction of any number of statements costs one thread hop. The hop costs
what aiosqlite's does (measured in ``sqlite/_engine.py``'s docstring).

* The thread is a daemon: a checkpointer the program never closed cannot make
  the interpreter wait at exit. Every write is one whole transaction on the
  thread, so ending it at exit can only drop a save that was never
  acknowledged (``tests/sqlite/test_exit.py``).
* Whether the thread still takes work is this object's own state
  (:attr:`stopped`), never read from an error message.
* Functions run in submission order; :meth:`stop` runs after everything
  submitted before it, closes the connection on the thread and ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ConnectionThread", "ThreadStopped"]

T = TypeVar("T")

_Item = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class ThreadStopped(Exception):
    """Work was submitted after :meth:`ConnectionThread.stop` began."""


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # the caller was cancelled; the function ran (or not) whole regardless
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class ConnectionThread:
    """Runs ``fn(connection, *args)`` calls on one thread that alone uses ``connection``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        """Open the connection on a new daemon thread (``connect`` runs there, first)."""
        self._connect = connect
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.connection: sqlite3.Connection | None = None
        """The driver connection every queued function receives (tests may wrap it)."""
        self.stopped = False

    async def start(self) -> None:
        """Start the thread and open the connection on it; the connect error, if any."""
        self._thread.start()
        try:
            await self.call(self._open)
        except BaseException:
            await self.stop()
            raise

    def _open(self, _unused: None) -> None:
        self.connection = self._connect()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on the thread: one hop; its result or its exception."""
        if self.stopped:
            raise ThreadStopped("the connection's thread was stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, future, loop))
        return await future

    async def stop(self) -> None:
        """Run what was queued, close the connection on the thread, end the thread.

        Safe to call more than once and concurrently; later calls return at once.
        """
        if self.stopped:
            return
        self.stopped = True
        if not self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((self._close, (), done, loop))
        self._queue.put(None)
        await asyncio.shield(done)

    def _close(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            conn.close()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, future, loop = item
            try:
                value, ok = fn(self.connection, *args), True
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to its caller
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(_settle, future, ok, value)
