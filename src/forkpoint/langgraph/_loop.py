"""LoopThread: the saver's own event loop, on a daemon thread, for callers without one.

forkpoint's SQLite engine (``forkpoint.sqlite._engine``) belongs to no event
loop: the saver's async methods await it from the caller's own loop, its sync
methods block the caller's thread on it. What is left is the checkpointer the
saver opens, closes and vacuums, which is async code: those calls are sent to a
loop the saver keeps on a thread of its own, and the caller's thread blocks for
the answer.

Nothing here ever waits on the caller's loop, so no call can deadlock it; a
sync call *on* a running loop is refused before it gets here (``saver.py``),
because blocking that loop's thread would stall everything it runs. After
``os.fork()`` the thread does not exist in the child: calls there are
``ForkedProcess``, never a hang.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

from ..errors import CheckpointerClosed, ForkedProcess

T = TypeVar("T")

__all__ = ["LoopThread", "SharedLoop"]


class LoopThread:
    """An event loop running forever on a daemon thread until :meth:`stop`."""

    def __init__(self, name: str, *, path: str) -> None:
        self.path = path
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def check_open(self) -> None:
        """``ForkedProcess`` in a child after ``os.fork()``, ``CheckpointerClosed`` after stop."""
        if os.getpid() != self._pid:
            raise ForkedProcess(
                "this saver was opened in another process (before os.fork()); open a new one here",
                path=self.path,
            )
        if self._stopped:
            raise CheckpointerClosed("the saver is closed", path=self.path)

    def _submit(self, make: Callable[[], Awaitable[T]]) -> Future[T]:
        self.check_open()
        with self._lock:
            if self._stopped:
                raise CheckpointerClosed("the saver is closed", path=self.path)
            return asyncio.run_coroutine_threadsafe(_call(make), self._loop)

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run the awaitable ``make()`` builds on the loop; block this thread for its result."""
        return self._submit(make).result()

    async def arun(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run the awaitable ``make()`` builds on the loop; await it from another loop."""
        return await asyncio.wrap_future(self._submit(make))

    def stop(self) -> None:
        """Stop the loop and join its thread (idempotent; later calls are refused)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if os.getpid() != self._pid:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _call(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


class SharedLoop:
    """The event loop of a checkpointer the application opened: a saver borrows it, never stops it.

    Same face as :class:`LoopThread`. A checkpointer's own async methods are
    run on the loop that opened it: awaited directly from that loop, sent to
    it from any other thread or loop. ``stop`` only refuses later calls.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, path: str) -> None:
        self.path = path
        self._loop = loop
        self._stopped = False

    def check_open(self) -> None:
        """``CheckpointerClosed`` after :meth:`stop`."""
        if self._stopped:
            raise CheckpointerClosed("the saver is closed", path=self.path)

    def _check(self) -> None:
        self.check_open()
        if not self._loop.is_running():  # waiting for a loop that has ended would hang forever
            raise CheckpointerClosed(
                "the event loop this saver shares with its checkpointer is no longer running",
                path=self.path,
            )

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the shared loop from another thread; block this thread for it."""
        self._check()
        return asyncio.run_coroutine_threadsafe(_call(make), self._loop).result()

    async def arun(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` here if this is the shared loop, else on it."""
        self._check()
        if asyncio.get_running_loop() is self._loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(make), self._loop))

    def stop(self) -> None:
        """Refuse later calls; the loop and the checkpointer stay the application's."""
        self._stopped = True
