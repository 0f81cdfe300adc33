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
* It belongs to no event loop: :meth:`call` answers on the loop of whoever
  awaits it, :meth:`call_blocking` blocks a thread that has no loop running,
  :meth:`post` answers nobody, and all may be used from any thread.
  Queueing and :meth:`stop` share a lock, so nothing is queued behind the
  end of the thread, where it would wait forever.
* Whether the thread still takes work is this object's own state
  (:attr:`stopped`), never read from an error message.
* Functions run in submission order; :meth:`stop` runs after everything
  submitted before it, closes the connection on the thread and ends it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ConnectionThread", "ThreadStopped", "answer"]

T = TypeVar("T")

Settle = Callable[[bool, Any], None]
"""Called on the connection's thread with ``(ok, result-or-exception)`` once a function ran."""

_Item = tuple[Callable[..., Any], tuple[Any, ...], Settle | None]


class ThreadStopped(Exception):
    """Work was submitted after :meth:`ConnectionThread.stop` began."""


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # the caller was cancelled; the function ran (or not) whole regardless
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _answer_on_loop(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """From any thread: give ``future`` its outcome on its own loop (dropped if that loop ended)."""
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
        future.get_loop().call_soon_threadsafe(_settle, future, ok, value)


def answer(
    future: asyncio.Future[Any] | concurrent.futures.Future[Any], ok: bool, value: Any
) -> None:
    """From any thread: give either kind of future its outcome (a blocked thread's at once)."""
    if isinstance(future, asyncio.Future):
        _answer_on_loop(future, ok, value)
    elif future.done():
        return  # answered already (a close failed it first)
    elif ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class ConnectionThread:
    """Runs ``fn(connection, *args)`` calls on one thread that alone uses ``connection``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        """Open the connection on a new daemon thread (``connect`` runs there, first)."""
        self._connect = connect
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
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

    def post(self, fn: Callable[..., Any], *args: Any, settle: Settle | None = None) -> None:
        """Queue ``fn(connection, *args)``; ``settle`` (if any) gets its outcome on the thread.

        Without ``settle`` the outcome is dropped: ``fn`` answers its own callers.
        ``ThreadStopped`` once :meth:`stop` has begun.
        """
        with self._lock:
            if self.stopped:
                raise ThreadStopped("the connection's thread was stopped")
            self._queue.put((fn, args, settle))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on the thread: one hop; its result or its exception."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.post(fn, *args, settle=functools.partial(_answer_on_loop, future))
        return await future

    def call_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`call` for a thread without a running loop: blocks it until ``fn`` has run."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.post(fn, *args, settle=functools.partial(answer, future))
        return future.result()

    async def stop(self) -> None:
        """Run what was queued, close the connection on the thread, end the thread.

        Safe to call more than once and concurrently; later calls return at once.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            if not self._thread.is_alive():
                return
            self._queue.put((self._close, (), functools.partial(_answer_on_loop, done)))
            self._queue.put(None)
        await asyncio.shield(done)

    def _close(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            conn.close()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, settle = item
            try:
                value, ok = fn(self.connection, *args), True
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to its caller
                value, ok = exc, False
            if settle is not None:
                settle(ok, value)
