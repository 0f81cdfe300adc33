"""GroupCommitWriter: the write queue, and the batches it runs as single transactions.

Writes are queued; one batch at a time takes everything pending (up to
``MAX_BATCH`` jobs) and runs it as one ``BEGIN IMMEDIATE … COMMIT`` on the
writer's connection thread, so concurrent saves share one fsync while every
caller still gets its own result or error.

* A job refuses (a ``CheckpointError``) before it writes anything, so a
  refusal needs no savepoint. A job that fails after writing, or SQL that
  fails, rolls the batch back, and the batch is re-run one job per
  transaction, so no caller pays for another's failure.
* The first caller leads: with no contention its own job goes straight to the
  thread (one hop, no task switch). Jobs that queue up meanwhile form the next
  batch, which a background task runs once the leader has its answer.
* Cancellation-safe: a transaction is one function on the thread, which
  answers every job of its batch itself; cancelling an awaiting task cannot
  leave a transaction open or strand the other callers. A cancelled save is
  committed whole or not at all, and re-issuing it is an identical retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import CheckpointError
from ._thread import ConnectionThread

__all__ = ["MAX_BATCH", "GroupCommitWriter"]

MAX_BATCH = 256
T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    queued: float  # loop.time() when submitted


def _answer(jobs: list[_Job], results: list[tuple[bool, Any]]) -> None:
    """Resolve each job's future (on the event loop); cancelled callers are skipped."""
    for job, (ok, value) in zip(jobs, results, strict=True):
        if job.future.done():
            continue  # the caller was cancelled; its work is committed (or not) whole
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _run_and_answer(conn: sqlite3.Connection, jobs: list[_Job]) -> BaseException | None:
    """Run a batch on the writer thread and answer its callers from here.

    Answering from the worker thread, not from whoever awaited the batch, means
    a cancelled awaiter cannot strand the other jobs of its batch. Returns the
    lock error when the batch could not get the write lock within busy_timeout.
    """
    results = _run_batch(conn, jobs)
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
        jobs[0].loop.call_soon_threadsafe(_answer, jobs, results)
    first = results[0][1] if results and not results[0][0] else None
    locked = isinstance(first, sqlite3.Error) and (
        getattr(first, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    )
    return first if locked and not conn.in_transaction else None


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # A failed rollback leaves SQLite to roll back on its own; the error is already reported.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _run_batch(conn: sqlite3.Connection, jobs: list[_Job]) -> list[tuple[bool, Any]]:
    """Run jobs in one transaction on the writer thread; (ok, result-or-exception) each.

    Jobs raise CheckpointError (a conflict, a missing thread) only before they
    write, so a refused job leaves nothing in the transaction and needs no
    savepoint. Should one ever raise after writing, or should a statement
    fail, the batch is rolled back and re-run one job per transaction, so each
    caller gets its own outcome. A ``BEGIN IMMEDIATE`` that fails (the lock
    is held past ``busy_timeout``) fails the whole batch at once: no re-run
    waits for the lock again.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except Exception as exc:  # noqa: BLE001 - answered to every job below
        # The lock was not ours within busy_timeout (or the file failed us): every job of the
        # batch has waited that long already, so each gets the error now; re-running them one
        # by one would make the last caller wait busy_timeout once per job before it.
        return [(False, exc)] * len(jobs)
    results: list[tuple[bool, Any]] = []
    try:
        for job in jobs:
            before = conn.total_changes
            try:
                results.append((True, job.fn(conn, *job.args)))
            except CheckpointError as exc:
                if conn.total_changes != before and len(jobs) > 1:
                    raise _Rerun from exc
                results.append((False, exc))
        if any(ok for ok, _ in results):
            conn.execute("COMMIT")
        else:
            conn.execute("ROLLBACK")
    except Exception as exc:  # noqa: BLE001 - whatever failed, never leave the lock held
        _rollback(conn)
        if len(jobs) > 1:
            return [_run_batch(conn, [job])[0] for job in jobs]
        return [(False, exc)]
    except BaseException:
        _rollback(conn)
        raise
    return results


class _Rerun(Exception):
    """A job wrote and then failed: the batch must be re-run one job at a time."""


class GroupCommitWriter:
    """Owns the write queue of one connection thread; :meth:`submit` is one job's round trip."""

    def __init__(self, thread: ConnectionThread) -> None:
        self.thread = thread
        self._pending: list[_Job] = []
        self._flushing = False  # a leader or the drain task is running batches
        self._idle = asyncio.Event()
        self._idle.set()
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, fn: Callable[..., T], *args: Any) -> T:
        """Queue ``fn(conn, *args)`` for the next transaction; its own result or exception."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, loop.create_future(), loop, loop.time())
        self._pending.append(job)
        if not self._flushing:
            try:
                await self._lead(job)
            except asyncio.CancelledError:
                # The caller is gone but its batch still runs on the thread and will answer this
                # future: cancelled now, it is skipped then, so no exception is left unobserved.
                job.future.cancel()
                raise
        return await job.future  # type: ignore[no-any-return]

    async def idle(self) -> None:
        """Wait until every job queued so far is answered."""
        await self._idle.wait()

    def fail_pending(self, exc: BaseException) -> None:
        """Answer every job still queued with ``exc`` (used when closing)."""
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(exc)
        self._pending.clear()

    async def _lead(self, own: _Job) -> None:
        """Group commit, led by the caller: run batches until ``own`` is answered."""
        self._flushing = True
        self._idle.clear()
        try:
            while not own.future.done() and self._pending:
                await self._flush_batch()
        finally:
            if self._pending:
                self._drain_task = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._flushing = False
                self._idle.set()

    async def _drain(self) -> None:
        """Run batches while jobs keep arriving; ends when none are left."""
        try:
            while self._pending:
                await self._flush_batch()
        finally:
            self._flushing = False
            self._idle.set()

    async def _flush_batch(self) -> None:
        """Run the next batch of pending jobs as one transaction; the batch answers its jobs.

        When the batch cannot get the write lock within busy_timeout, the jobs
        still queued that were submitted before it began waiting (more than
        ``MAX_BATCH`` were pending) have waited as long: they fail with it,
        rather than wait for the lock once more.
        """
        batch = [job for job in self._pending[:MAX_BATCH] if not job.future.done()]
        del self._pending[:MAX_BATCH]
        if not batch:
            return
        began = batch[0].loop.time()
        try:
            locked = await self.thread.call(_run_and_answer, batch)
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise  # the batch still runs on the thread and answers its jobs
            for job in batch:  # the thread never ran it (it was stopped)
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if locked is not None:
            waited = [job for job in self._pending if job.queued <= began]
            self._pending = [job for job in self._pending if job.queued > began]
            for job in waited:
                if not job.future.done():
                    job.future.set_exception(locked)
