"""LoopThread: the saver's own event loop, on a daemon thread, where its engine lives.

forkpoint's SQLite engine (``forkpoint.sqlite._engine``) is asyncio code bound
to one event loop: its group-commit queue answers a batch on the loop that
queued it. A LangGraph saver is called from anywhere — the user's event loop,
plain threads, thread pools, a sync ``graph.invoke`` with no loop at all — so
the saver opens its engine on a loop of its own and sends every call there:
async callers await the answer, sync callers block their own thread for it.

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

__all__ = ["LoopThread"]


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

    def _submit(self, make: Callable[[], Awaitable[T]]) -> Future[T]:
        if os.getpid() != self._pid:
            raise ForkedProcess(
                "this saver was opened in another process (before os.fork()); open a new one here",
                path=self.path,
            )
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
