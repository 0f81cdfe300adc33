"""Every checkpointer method as a plain call, for code that has no event loop.

Plain scripts, Flask or Django views, worker threads and thread pools use
forkpoint through this module::

    import forkpoint.sync

    with forkpoint.sync.open_sqlite("chat.db", Chat) as cp:
        cp.save(checkpoint)
        latest = cp.load("chat-1")

How it works, and why:

* **One private event loop per checkpointer**, running in a daemon thread. The
  async checkpointer is opened on that loop and only ever used there; each call
  is submitted to it (``asyncio.run_coroutine_threadsafe``) and the calling
  thread waits for the answer. Any number of threads may share one
  :class:`SyncCheckpointer`: their calls run concurrently on the loop, so saves
  from a thread pool share SQLite's group commit.
* **Never a deadlock.** A call from a thread that is running an event loop
  (an ``async def``, a notebook cell, the private loop's own thread) raises
  :class:`~forkpoint.errors.CalledFromEventLoop` at once: waiting there would
  block that loop, or deadlock on its own. Use the async checkpointer there.
  A call in a child after ``os.fork()`` raises ``ForkedProcess`` (the loop's
  thread does not exist in the child).
* **A clean close.** ``close()`` (or leaving the ``with`` block) waits for the
  calls already made, closes the checkpointer, stops the loop and joins its
  thread; calls after it raise ``CheckpointerClosed``. A checkpointer never
  closed does not keep the interpreter from exiting (the thread is a daemon;
  every write is one transaction, so exiting can only drop a save that was
  never acknowledged), and one that is garbage collected closes itself.

The streaming methods (``iter_threads``, ``iter_checkpoints``,
``iter_states``) are plain iterators here, each item fetched from the loop as
it is needed. A method of a backend this class does not spell out is still
forwarded at run time (an async iterator becoming a plain one), untyped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar

from .base import PAGE_SIZE, HistoryCheckpointer, MetadataFilter, PruneReport
from .errors import CalledFromEventLoop, CheckpointerClosed, ForkedProcess
from .memory import InMemoryCheckpointer
from .models import Checkpoint, CheckpointMetadata, S, ThreadInfo
from .sqlite import SqliteCheckpointer, StorageStats

__all__ = [
    "SyncCheckpointer",
    "SyncSqliteCheckpointer",
    "open_memory",
    "open_sqlite",
]

T = TypeVar("T")
P = ParamSpec("P")
C = TypeVar("C", bound=HistoryCheckpointer[Any])

Opener = Callable[[], Awaitable[C] | C]
"""Opens the async checkpointer; called on the private loop (so it may await)."""


def _refuse_event_loop(path: str | None = None) -> None:
    """Raise ``CalledFromEventLoop`` if this thread is running an event loop.

    Waiting for the private loop there would block that loop for the whole
    call, and on the private loop's own thread it would never end.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop runs in this thread: waiting is safe
    raise CalledFromEventLoop(
        "a forkpoint.sync call was made in a thread that is running an event loop, "
        "where waiting would block it; await the async checkpointer there, or call "
        "from a thread without one",
        path=path,
    )


class _Loop:
    """An event loop running forever in a daemon thread, and the calls submitted to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.lock = threading.Lock()  # orders submissions against shutdown
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, name="forkpoint-sync", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def check_caller(self, path: str | None) -> None:
        """Refuse, at once, a caller that could only block or deadlock by waiting."""
        if self.pid != os.getpid():
            raise ForkedProcess(
                "this checkpointer was opened in another process (before os.fork()); "
                "open a new one in this process",
                path=path,
            )
        _refuse_event_loop(path)

    def call(self, make: Callable[[], Awaitable[T]], path: str | None) -> T:
        """Await ``make()`` on the loop; its result or error, in this thread."""
        self.check_caller(path)
        with self.lock:
            if self.stopping:
                raise CheckpointerClosed("the checkpointer was closed", path=path)
            future = asyncio.run_coroutine_threadsafe(_awaited(make), self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self.stopping:  # the loop shut down under this call
                raise CheckpointerClosed("the checkpointer was closed", path=path) from None
            raise
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the call too
            raise

    def shutdown(self, close: Callable[[], Awaitable[None]], path: str | None) -> None:
        """Close the checkpointer on the loop, end every call left, stop the loop, join it."""
        self.check_caller(path)
        with self.lock:
            first = not self.stopping
            self.stopping = True
        if not first:  # another close is under way: return when it is done, as it does
            self.thread.join()
            return
        future = asyncio.run_coroutine_threadsafe(_last(close), self.loop)
        try:
            future.result()
        finally:
            self.thread.join()

    def abandon(self, close: Callable[[], Awaitable[None]]) -> None:
        """Shut down without waiting (the owner was garbage collected, maybe on any thread)."""
        with self.lock:
            if self.stopping or self.pid != os.getpid():
                return
            self.stopping = True
        with contextlib.suppress(RuntimeError):  # the loop is closed already: nothing is left
            asyncio.run_coroutine_threadsafe(_last(close), self.loop)


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


async def _resolved(make: Callable[[], Any]) -> Any:
    """What ``make()`` returns, awaited if it is awaitable (an opener, a forwarded method)."""
    result = make()
    return await result if inspect.isawaitable(result) else result


async def _last(close: Callable[[], Awaitable[None]]) -> None:
    """The loop's last task: close, cancel whatever still runs, then stop the loop."""
    try:
        await close()
    finally:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        asyncio.get_running_loop().stop()


class SyncCheckpointer(Generic[S]):
    """A :class:`~forkpoint.HistoryCheckpointer` with every method as a plain, blocking call.

    Open one with :func:`open_sqlite`, :func:`open_memory` or
    :meth:`SyncCheckpointer.open`; use it as a ``with`` block or call
    :meth:`close`. Each method takes the arguments, returns the values and
    raises the errors of the async method of the same name.
    """

    def __init__(self, loop: _Loop, checkpointer: HistoryCheckpointer[S]) -> None:
        """Internal: use :meth:`open`."""
        self._loop = loop
        self._cp = checkpointer
        self._path: str | None = getattr(checkpointer, "path", None)
        self._finalizer = weakref.finalize(self, loop.abandon, checkpointer.close)
        self._finalizer.atexit = False  # at exit the daemon thread simply ends with the process

    @classmethod
    def open(cls, opener: Opener[HistoryCheckpointer[S]]) -> Self:
        """Start a private loop and open a checkpointer on it with ``opener()``.

        ``opener`` is a function of no arguments returning the async
        checkpointer, or an awaitable of it, for example
        ``lambda: PostgresCheckpointer.open(dsn, State)``; it runs on the
        private loop, which the checkpointer is bound to from then on. Errors
        of opening are raised here, and leave no thread behind.
        """
        loop, checkpointer = _start(opener)
        return cls(loop, checkpointer)

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        return self._loop.call(make, self._path)

    def _iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """A plain iterator over ``make()``, made on the loop (so its checks raise here, now)."""

        async def made() -> AsyncIterator[T]:
            return make()

        return self._drain(self._call(made))

    def _drain(self, source: AsyncIterator[T]) -> Iterator[T]:
        """A plain iterator over an async iterator that lives on the loop, one item per call."""
        done = object()

        async def step() -> Any:
            try:
                return await anext(source)
            except StopAsyncIteration:
                return done

        try:
            while (item := self._call(step)) is not done:
                yield item
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None and not self._loop.stopping:
                # Left early (break, an error): finish the source on its loop, without waiting,
                # since this may run where waiting is not allowed (a garbage collection, say).
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    asyncio.run_coroutine_threadsafe(aclose(), self._loop.loop)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the checkpointer (after the calls already made), then stop its thread.

        Calls afterwards raise ``CheckpointerClosed``; closing twice is a no-op.
        """
        self._loop.check_caller(self._path)  # refused: still open, still closed when collected
        self._finalizer.detach()
        self._loop.shutdown(self._cp.close, self._path)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._loop.stopping

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        where = "" if self._path is None else f" {self._path!r}"
        return f"<{type(self).__name__} {type(self._cp).__name__}{where} ({state})>"

    if not TYPE_CHECKING:  # at run time only: type checkers see just the methods spelled out

        def __getattr__(self, name: str) -> Any:
            """Any other public method of the async checkpointer, as a plain call."""
            if name.startswith("_"):
                raise AttributeError(name)
            value = getattr(self._cp, name)
            if not inspect.ismethod(value):
                return value  # a property (state_type, path), a constant

            def call(*args: Any, **kwargs: Any) -> Any:
                result = self._call(lambda: _resolved(lambda: value(*args, **kwargs)))
                if isinstance(result, AsyncIterator):
                    return self._drain(result)
                return result

            call.__name__ = call.__qualname__ = name
            call.__doc__ = value.__doc__
            return call

    # --- Checkpointer ------------------------------------------------------------------------

    @property
    def state_type(self) -> type[S]:
        """The state model this checkpointer stores and returns."""
        return self._cp.state_type

    def save(
        self, checkpoint: Checkpoint[S], *, thread_metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Store ``checkpoint``; committed when this returns (see ``Checkpointer.save``)."""
        self._call(lambda: self._cp.save(checkpoint, thread_metadata=thread_metadata))

    def load(self, thread_id: str) -> Checkpoint[S] | None:
        """The thread's checkpoint with the highest step, or None."""
        return self._call(lambda: self._cp.load(thread_id))

    # --- HistoryCheckpointer -----------------------------------------------------------------

    def get(self, thread_id: str, step: int) -> Checkpoint[S] | None:
        """The checkpoint at exactly ``step`` (see ``HistoryCheckpointer.get``)."""
        return self._call(lambda: self._cp.get(thread_id, step))

    def get_raw(self, thread_id: str, step: int) -> str | bytes | None:
        """The stored state exactly as stored, undecoded (for forensics)."""
        return self._call(lambda: self._cp.get_raw(thread_id, step))

    def list_checkpoints(
        self,
        thread_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        filter: MetadataFilter | None = None,
    ) -> list[CheckpointMetadata]:
        """Metadata of the thread's checkpoints in step order, without reading states."""
        return self._call(
            lambda: self._cp.list_checkpoints(
                thread_id,
                after=after,
                before=before,
                limit=limit,
                newest_first=newest_first,
                filter=filter,
            )
        )

    def iter_checkpoints(
        self,
        thread_id: str,
        *,
        newest_first: bool = False,
        filter: MetadataFilter | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[CheckpointMetadata]:
        """Metadata of every checkpoint of the thread, read a page at a time."""
        return self._iterate(
            lambda: self._cp.iter_checkpoints(
                thread_id, newest_first=newest_first, filter=filter, page_size=page_size
            )
        )

    def iter_threads(
        self, *, filter: MetadataFilter | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[ThreadInfo]:
        """Every thread, ordered by id, read a page at a time."""
        return self._iterate(lambda: self._cp.iter_threads(filter=filter, page_size=page_size))

    def iter_states(self, thread_id: str, *, before: int | None = None) -> Iterator[Checkpoint[S]]:
        """Every checkpoint of the thread with its state, newest to oldest."""
        return self._iterate(lambda: self._cp.iter_states(thread_id, before=before))

    def fork(
        self,
        thread_id: str,
        at_step: int | None = None,
        *,
        new_thread_id: str | None = None,
        at_seq: int | None = None,
    ) -> str:
        """Copy steps ≤ ``at_step`` into a new thread; its id (``at_seq``: deprecated name)."""
        return self._call(
            lambda: self._cp.fork(thread_id, at_step, new_thread_id=new_thread_id, at_seq=at_seq)
        )

    def append(
        self,
        thread_id: str,
        state: S,
        *,
        node: str,
        queue: Sequence[tuple[str, int]] = (),
        metadata: Mapping[str, Any] | None = None,
        thread_metadata: Mapping[str, Any] | None = None,
    ) -> Checkpoint[S]:
        """Save ``state`` as the thread's next step; the checkpoint saved."""
        return self._call(
            lambda: self._cp.append(
                thread_id,
                state,
                node=node,
                queue=queue,
                metadata=metadata,
                thread_metadata=thread_metadata,
            )
        )

    def list_threads(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        filter: MetadataFilter | None = None,
    ) -> list[ThreadInfo]:
        """Threads ordered by id, starting after the id ``after``."""
        return self._call(lambda: self._cp.list_threads(limit=limit, after=after, filter=filter))

    def thread_info(self, thread_id: str) -> ThreadInfo | None:
        """Summary and lineage of one thread, or None."""
        return self._call(lambda: self._cp.thread_info(thread_id))

    def list_forks(self, thread_id: str) -> list[ThreadInfo]:
        """The threads forked directly from ``thread_id``."""
        return self._call(lambda: self._cp.list_forks(thread_id))

    def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread and its checkpoints; whether it existed."""
        return self._call(lambda: self._cp.delete_thread(thread_id))

    def set_thread_metadata(self, thread_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace a thread's metadata."""
        self._call(lambda: self._cp.set_thread_metadata(thread_id, metadata))

    def prune(
        self,
        thread_id: str | None = None,
        *,
        keep_last: int | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Remove old checkpoints of one thread or all (see ``HistoryCheckpointer.prune``)."""
        return self._call(
            lambda: self._cp.prune(
                thread_id, keep_last=keep_last, older_than=older_than, dry_run=dry_run
            )
        )

    def delete_threads(self, *, inactive_for: timedelta) -> list[str]:
        """Delete every thread not written for ``inactive_for``; the ids deleted."""
        return self._call(lambda: self._cp.delete_threads(inactive_for=inactive_for))

    def restore_thread(self, info: ThreadInfo, checkpoints: Sequence[Checkpoint[S]]) -> None:
        """Recreate an exported thread exactly, in one transaction."""
        self._call(lambda: self._cp.restore_thread(info, checkpoints))


class SyncSqliteCheckpointer(SyncCheckpointer[S]):
    """:class:`SyncCheckpointer` over a :class:`~forkpoint.SqliteCheckpointer`, with its extras."""

    _cp: SqliteCheckpointer[S]

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self._cp.path

    def vacuum(self) -> int:
        """Give free pages back to the file system; the bytes the file shrank by."""
        return self._call(self._cp.vacuum)

    def backup(self, dest: str | os.PathLike[str]) -> None:
        """A consistent copy of the live database at ``dest``."""
        self._call(lambda: self._cp.backup(dest))

    def storage_stats(self) -> StorageStats:
        """What the file holds, per thread."""
        return self._call(self._cp.storage_stats)

    def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check``: ``["ok"]`` for a healthy file."""
        return self._call(self._cp.integrity_check)


def _start(opener: Opener[C]) -> tuple[_Loop, C]:
    """A new private loop, and the checkpointer ``opener`` opened on it; no thread left on error."""
    _refuse_event_loop()
    loop = _Loop()
    try:
        checkpointer: C = loop.call(lambda: _resolved(opener), None)
        return loop, checkpointer
    except BaseException:
        loop.shutdown(_nothing, None)
        raise


async def _nothing() -> None:
    return None


def _sqlite_opener(
    async_open: Callable[P, Awaitable[SqliteCheckpointer[S]]],
) -> Callable[P, SyncSqliteCheckpointer[S]]:
    """``open_sqlite``: takes exactly :meth:`SqliteCheckpointer.open`'s arguments, always."""

    def open_sqlite(*args: P.args, **kwargs: P.kwargs) -> SyncSqliteCheckpointer[S]:
        """Open (creating and migrating if needed) an SQLite database for plain calls.

        Takes exactly the arguments of :meth:`forkpoint.SqliteCheckpointer.open`
        (``path, state_type, *, durability, busy_timeout, migrate, read_only,
        max_state_bytes, keep_last``) and raises its errors. Use it as
        ``with open_sqlite(path, State) as cp:``, or call ``cp.close()``.
        """
        return SyncSqliteCheckpointer(*_start(lambda: async_open(*args, **kwargs)))

    open_sqlite.__signature__ = inspect.signature(async_open).replace(  # type: ignore[attr-defined]
        return_annotation="SyncSqliteCheckpointer[S]"
    )
    return open_sqlite


def _memory_opener(
    make: Callable[P, InMemoryCheckpointer[S]],
) -> Callable[P, SyncCheckpointer[S]]:
    """``open_memory``: takes exactly :class:`InMemoryCheckpointer`'s arguments, always."""

    def open_memory(*args: P.args, **kwargs: P.kwargs) -> SyncCheckpointer[S]:
        """An in-memory checkpointer (the reference semantics) for plain calls.

        Takes exactly the arguments of :class:`forkpoint.InMemoryCheckpointer`
        (``state_type, *, max_state_bytes, keep_last``). Nothing outlives it.
        """
        return SyncCheckpointer(*_start(lambda: make(*args, **kwargs)))

    open_memory.__signature__ = inspect.signature(make).replace(  # type: ignore[attr-defined]
        return_annotation="SyncCheckpointer[S]"
    )
    return open_memory


open_sqlite = _sqlite_opener(SqliteCheckpointer.open)
open_memory = _memory_opener(InMemoryCheckpointer)
