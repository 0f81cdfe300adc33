"""SqliteEngine: the documented internal engine every forkpoint layer on SQLite runs on.

One engine is one open database file: a **reader** connection and, unless
read-only, a **writer** connection with its group-commit queue, each on its
own :class:`~forkpoint.sqlite._thread.ConnectionThread`. The checkpointer's
storage hooks are row jobs run here; other layers of forkpoint (the LangGraph
saver) run their own named row jobs on the same engine, reached through
``SqliteCheckpointer.engine``, and so share its group commit, its locking and
its typed errors. It is internal (not in ``forkpoint.__all__``), but this
contract is kept:

``await engine.write(job, *args, thread_id=None, step=None, linger=0.0)``
    Runs ``job(conn, *args)`` on the writer thread inside a ``BEGIN IMMEDIATE
    … COMMIT`` shared with the other jobs queued meanwhile (group commit), and
    returns its result. The job must raise a ``CheckpointError`` only *before*
    it writes (a refusal needs no savepoint); anything raised after writing,
    or a failing statement, rolls the batch back and re-runs it one job per
    transaction, so each caller gets its own outcome. A ``BEGIN IMMEDIATE``
    that cannot get the lock within ``busy_timeout`` fails every job of its
    batch with ``DatabaseLocked`` at once (no job waits for the lock twice).
    ``linger``: seconds the job may wait for another to share its commit
    (``_writer.py``). Never run ``BEGIN``, ``COMMIT`` or ``SAVEPOINT`` in a
    job. ``ReadOnlyDatabase`` without a writer.
``await engine.read(job, *args, thread_id=None, step=None, framed=True)``
    Runs ``job(conn, *args)`` on the reader thread (``query_only``): one hop,
    inside one read transaction, so every statement of the job sees the same
    snapshot whatever other writers commit meanwhile (a delta and the newer
    rows it is rebuilt from, the several totals of ``storage_stats``). WAL
    readers never queue behind the writer. ``framed=False`` leaves out the
    read transaction, for a job whose first statement usually answers it
    alone (one statement reads one snapshot): such a job reads anything more
    through ``_jobs.in_one_snapshot``, starting again from its first statement.
``engine.write_blocking(job, *args)``, ``engine.read_blocking(job, *args)``
    The same, for a thread with no running event loop (a worker thread of a
    sync caller): it blocks until the job has run. The engine belongs to no
    event loop: every call is answered on the loop that awaits it, or to the
    thread that blocks on it, so one engine serves callers on any loop or thread.
``await engine.on_writer(job, *args)``
    Runs ``job(conn, *args)`` on the writer thread *outside* any transaction,
    after every batch queued before it (maintenance: VACUUM, pragmas).
``Decoder(decode)``
    An argument that runs the caller's ``decode`` inside a job (decoding rows
    on the reader thread as they are read): in a copy of the caller's
    context (``contextvars``), and whatever ``decode`` raises reaches the
    caller of ``read``/``write`` unchanged, never typed as a driver error.
``engine.check_usable()``
    ``ForkedProcess`` in a child after ``os.fork()``, ``CheckpointerClosed``
    after :meth:`close`. ``write``/``read`` call it first.

Every failure reaches the caller as a ``CheckpointError`` naming the file
(and ``thread_id``/``step`` when given): ``sqlite3``/``OSError`` through
``_errors.translate``, a stopped thread as ``CheckpointerClosed`` — decided
from the engine's own state, never from an error message.

**Why forkpoint owns its threads.** aiosqlite has no public way to run one
function on its connection thread; using ``Connection._execute``/``_conn``
(and ``_thread`` to make it a daemon) tied forkpoint to private names that
0.20/0.21 did not have. Measured on this machine (timeit, 20,000 hops of a
function doing nothing, median of 5 runs): aiosqlite ``_execute`` 27.7 to 30.0
µs per hop, ``ConnectionThread.call`` 29.5 µs (best 27.8 vs 27.6 µs) — the
same cost, one hop per operation either way. So forkpoint runs its own daemon
threads with the standard library only, and no longer depends on aiosqlite.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from ..errors import CheckpointerClosed, CheckpointError, ForkedProcess, ReadOnlyDatabase
from ._errors import DRIVER_ERRORS, located, translate
from ._files import close_reader, on_read_only_fs, prepare, reader_uri
from ._jobs import in_one_snapshot
from ._thread import ConnectionThread, ThreadStopped
from ._writer import GroupCommitWriter

__all__ = ["Decoder", "Durability", "SqliteEngine"]

Durability = Literal["full", "normal"]
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Options:
    path: str
    durability: Durability
    busy_timeout: float
    read_only: bool
    pid: int = field(default_factory=os.getpid)
    read_only_fs: bool = False  # on a read-only file system: no writer, reads only


def _connect(options: _Options, writer: bool) -> sqlite3.Connection:
    """Open one connection with its pragmas (runs on the connection's own thread)."""
    ms = int(options.busy_timeout * 1000)
    if writer:
        conn = sqlite3.connect(options.path, isolation_level=None, timeout=options.busy_timeout)
        sync = "FULL" if options.durability == "full" else "NORMAL"
        # The WAL is cut back to 16 MiB whenever it restarts (after a long reader, a big state).
        script = (
            f"PRAGMA busy_timeout = {ms}; PRAGMA synchronous = {sync}; "
            "PRAGMA journal_size_limit = 16777216; PRAGMA temp_store = MEMORY;"
        )
    else:
        uri = reader_uri(
            options.path, read_only_fs=options.read_only_fs, read_only=options.read_only
        )
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=options.busy_timeout)
        script = f"PRAGMA busy_timeout = {ms}; PRAGMA query_only = 1;"
    try:
        conn.executescript(script)
    except BaseException:
        conn.close()
        raise
    return conn


class _DecoderFailed(Exception):
    """What a caller's :class:`Decoder` raised on a connection thread, carried past the typing.

    The engine types driver errors; a decoder's own exception (a validator's,
    say) is the caller's, so the engine unwraps :attr:`error` and raises it
    unchanged.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class Decoder(Generic[T, R]):
    """The caller's ``decode``, to run inside a job: see the module docstring.

    Built on the caller's thread, so it copies the caller's context
    (``contextvars``); its exceptions leave the job as :class:`_DecoderFailed`.
    """

    __slots__ = ("_context", "_decode")

    def __init__(self, decode: Callable[[T], R]) -> None:
        self._decode = decode
        self._context = contextvars.copy_context()

    def __call__(self, value: T) -> R:
        try:
            return self._context.run(self._decode, value)
        except Exception as exc:  # noqa: BLE001 - every decoder error goes back to its caller
            raise _DecoderFailed(exc) from None


_ENGINE_ERRORS = (CheckpointError, ThreadStopped, _DecoderFailed, *DRIVER_ERRORS)
"""What a job, its thread or a decoder can raise that the engine types for its caller."""


class SqliteEngine:
    """One open database: reader and writer connection threads, group commit, typed errors."""

    def __init__(
        self, options: _Options, reader: ConnectionThread, writer: GroupCommitWriter | None
    ) -> None:
        """Internal: use :meth:`open`."""
        self._opt = options
        self.reader = reader
        """The reader's connection thread (tests may wrap its ``connection``)."""
        self.writer = writer
        """The group-commit writer (``writer.thread`` is its connection thread), or None."""
        self.closed = False

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        durability: Durability,
        busy_timeout: float,
        migrate: bool,
        read_only: bool,
    ) -> SqliteEngine:
        """Check (create, migrate) the file at the absolute ``path`` and connect to it.

        Arguments are already checked by ``SqliteCheckpointer.open``.
        """
        await asyncio.to_thread(
            prepare, path, read_only=read_only, migrate=migrate, busy_timeout=busy_timeout
        )
        read_only_fs = on_read_only_fs(path)
        options = _Options(
            path,
            durability,
            float(busy_timeout),
            read_only or read_only_fs,
            read_only_fs=read_only_fs,
        )
        started: list[ConnectionThread] = []
        try:
            for is_writer in (False, True) if not options.read_only else (False,):
                thread = ConnectionThread(
                    functools.partial(_connect, options, is_writer),
                    f"forkpoint-{'writer' if is_writer else 'reader'}",
                )
                await thread.start()
                started.append(thread)
        except BaseException as exc:
            for thread in started:
                await thread.stop()
            if isinstance(exc, DRIVER_ERRORS):
                raise translate(exc, path=path) from exc
            raise
        writer = GroupCommitWriter(started[1]) if len(started) > 1 else None
        return cls(options, started[0], writer)

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self._opt.path

    @property
    def read_only_fs(self) -> bool:
        """Whether the file sits on a read-only file system."""
        return self._opt.read_only_fs

    def check_usable(self) -> None:
        """Raise ForkedProcess or CheckpointerClosed if this engine cannot be used."""
        if self._opt.pid != os.getpid():
            raise ForkedProcess(
                "this checkpointer was opened in another process (before os.fork()); "
                "open a new one in this process",
                path=self._opt.path,
            )
        if self.closed:
            raise CheckpointerClosed("the checkpointer is closed", path=self._opt.path)

    def _writable(self, thread_id: str | None, step: int | None) -> GroupCommitWriter:
        self.check_usable()
        if self.writer is None:
            raise ReadOnlyDatabase(
                "the database is on a read-only file system"
                if self._opt.read_only_fs
                else "the checkpointer was opened read-only",
                path=self._opt.path,
                thread_id=thread_id,
                step=step,
            )
        return self.writer

    async def write(
        self,
        job: Callable[..., T],
        *args: Any,
        thread_id: str | None = None,
        step: int | None = None,
        linger: float = 0.0,
    ) -> T:
        """Run ``job(conn, *args)`` in the next group-commit transaction; its own result."""
        writer = self._writable(thread_id, step)
        try:
            return await writer.submit(job, *args, linger=linger)
        except _ENGINE_ERRORS as exc:
            error = self._typed(exc, thread_id, step)
        raise error  # outside the except block: see _typed

    def write_blocking(
        self,
        job: Callable[..., T],
        *args: Any,
        thread_id: str | None = None,
        step: int | None = None,
        linger: float = 0.0,
    ) -> T:
        """:meth:`write` for a thread with no running event loop: blocks it for the result."""
        writer = self._writable(thread_id, step)
        try:
            return writer.submit_blocking(job, *args, linger=linger)
        except _ENGINE_ERRORS as exc:
            error = self._typed(exc, thread_id, step)
        raise error

    async def read(
        self,
        job: Callable[..., T],
        *args: Any,
        thread_id: str | None = None,
        step: int | None = None,
        framed: bool = True,
    ) -> T:
        """Run ``job(conn, *args)`` on the reader's thread: one hop (see the module docstring)."""
        self.check_usable()
        try:
            if framed:
                return await self.reader.call(in_one_snapshot, job, args)
            return await self.reader.call(job, *args)
        except _ENGINE_ERRORS as exc:
            error = self._typed(exc, thread_id, step)
        raise error

    def read_blocking(self, job: Callable[..., T], *args: Any, thread_id: str | None = None) -> T:
        """:meth:`read` (framed) for a thread with no running event loop: blocks it."""
        self.check_usable()
        try:
            result: T = self.reader.call_blocking(in_one_snapshot, job, args)
            return result
        except _ENGINE_ERRORS as exc:
            error = self._typed(exc, thread_id, None)
        raise error

    async def on_writer(self, job: Callable[..., T], *args: Any) -> T:
        """Run ``job(conn, *args)`` on the writer's thread outside a transaction (maintenance)."""
        writer = self._writable(None, None)
        try:
            return await writer.thread.call(job, *args)
        except _ENGINE_ERRORS as exc:
            error = self._typed(exc, None, None)
        raise error

    def _typed(self, exc: BaseException, thread_id: str | None, step: int | None) -> BaseException:
        """The error a caller gets for what a job or its thread raised (see the module docstring).

        Raised by the caller outside its ``except`` block, so a decoder's own
        error reaches it exactly as it was raised, with no driver error chained.
        """
        if isinstance(exc, _DecoderFailed):
            return exc.error
        cause: BaseException | None = exc
        if isinstance(exc, CheckpointError):
            error, cause = located(exc, self._opt.path), exc.__cause__
        elif isinstance(exc, ThreadStopped):
            error = CheckpointerClosed("the checkpointer is closed", path=self._opt.path)
        else:
            error = translate(exc, path=self._opt.path, thread_id=thread_id, step=step)
        error.__cause__ = cause  # as ``raise error from cause`` would
        return error

    async def close(self) -> None:
        """Answer the writes already queued, then close the reader and then the writer.

        Later calls raise ``CheckpointerClosed``. In a forked child nothing is
        touched: the connections belong to the parent. Called once, by the owner.
        """
        self.closed = True
        if self._opt.pid != os.getpid():
            return
        if self.writer is not None:
            await self.writer.idle()  # every write queued before close() is answered first
            self.writer.fail_pending(
                CheckpointerClosed("the checkpointer was closed", path=self._opt.path)
            )
        # The reader (read-only) closes first, so the writer, closing last, can fold the WAL
        # back into the file and remove the -wal and -shm files. Without a writer, the reader
        # never folds in a log another process wrote (close_reader).
        with contextlib.suppress(ThreadStopped, *DRIVER_ERRORS):  # stop() closes it regardless
            await self.reader.call(close_reader, self._opt.path, self.writer is None)
        await self.reader.stop()
        if self.writer is not None:
            await self.writer.thread.stop()
