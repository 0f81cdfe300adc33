"""GroupCommitWriter: the write queue, and the batches it runs as single transactions.

Writes are queued; the writer's connection thread takes everything pending
(up to ``MAX_BATCH`` jobs) and runs it as one ``BEGIN IMMEDIATE … COMMIT``,
so concurrent saves share one fsync while every caller still gets its own
result or error.

* A job refuses (a ``CheckpointError``) before it writes anything, so a
  refusal needs no savepoint. A job that fails after writing, or SQL that
  fails, rolls the batch back, and the batch is re-run one job per
  transaction, so no caller pays for another's failure.
* The batching happens on the thread: the first job queued while the thread
  is idle posts one drain to it (one hop, as for a lone call), and the jobs
  queued while a batch runs form the next batch. After each batch the drain
  queues itself again behind whatever else was sent to the thread meanwhile
  (maintenance, ``stop``), so a steady stream of writes delays it by one
  batch at most.
* A job may *linger*: queued with ``linger=seconds``, a batch made only of
  lingering jobs waits up to that long for another job to share its commit,
  and starts at once when a job that does not linger arrives. The wait counts
  from when the writer turns to the batch (its thread was free, or the batch
  before it ended), not from when the jobs were queued: jobs that queued
  behind a running batch have had no chance of company yet. The LangGraph
  saver lets a task's pending writes linger, because the step's checkpoint
  follows them: one fsync for both, instead of a commit the checkpoint would
  queue behind. No lock is held while waiting.
* It belongs to no event loop: each job is answered on the loop that queued
  it, or to the thread blocked on it (:meth:`GroupCommitWriter.submit_blocking`),
  so one engine serves callers on any loop or thread (the LangGraph saver
  awaits it from the application's own loop, or blocks a worker thread on it).
* Cancellation-safe: a transaction is one function on the thread, which
  answers every job of its batch itself; cancelling an awaiting task cannot
  leave a transaction open or strand the other callers. A cancelled save is
  committed whole or not at all (skipped if its batch had not begun), and
  re-issuing it is an identical retry.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import CheckpointError
from ._thread import ConnectionThread, ThreadStopped, answer

__all__ = ["MAX_BATCH", "GroupCommitWriter"]

MAX_BATCH = 256
T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    queued: float  # time.monotonic() when submitted
    linger: float = 0.0  # seconds it may wait for company (see the module docstring)


def _marker(conn: sqlite3.Connection) -> None:
    """The job ``idle`` queues: never run, answered once every job queued before it is."""


def _is_lock_error(
    results: list[tuple[bool, Any]], conn: sqlite3.Connection
) -> BaseException | None:
    """The batch's error if it could not get the write lock within busy_timeout, else None."""
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
        self._lock = threading.Lock()  # guards _pending and _posted: callers are on any thread
        self._company = threading.Condition(self._lock)
        self._pending: collections.deque[_Job] = collections.deque()
        self._posted = False  # a drain is queued on the thread or running there

    async def submit(self, fn: Callable[..., T], *args: Any, linger: float = 0.0) -> T:
        """Queue ``fn(conn, *args)`` for the next transaction; its own result or exception."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue(_Job(fn, args, future, time.monotonic(), linger))
        # A cancelled caller cancels this future: its job is skipped if its batch has not begun.
        return await future

    def submit_blocking(self, fn: Callable[..., T], *args: Any, linger: float = 0.0) -> T:
        """:meth:`submit` for a thread without a running loop: blocks it until answered."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue(_Job(fn, args, future, time.monotonic(), linger))
        return future.result()

    def _queue(self, job: _Job) -> None:
        with self._lock:
            self._pending.append(job)
            post, self._posted = not self._posted, True
            if not job.linger:
                self._company.notify()  # a batch of lingering jobs waiting for one: it is here
        if post:
            self._post_drain()

    async def idle(self) -> None:
        """Wait until every job queued so far is answered."""
        with contextlib.suppress(ThreadStopped):
            await self.submit(_marker)

    def fail_pending(self, exc: BaseException) -> None:
        """Answer every job still queued with ``exc`` (used when closing); from any thread."""
        with self._lock:
            jobs, self._pending = list(self._pending), collections.deque()
        for job in jobs:
            answer(job.future, False, exc)

    def _post_drain(self) -> None:
        try:
            self.thread.post(self._drain)
        except ThreadStopped as exc:  # the writer was stopped: nothing queued will ever run
            with self._lock:
                self._posted = False
            self.fail_pending(exc)

    def _wait_for_company(self) -> None:
        """While every pending job lingers, wait (lock released) until one that does not is
        queued or the shortest linger, counted from now, is up."""
        deadline = None
        while self._pending and all(job.linger for job in self._pending):
            if deadline is None:
                deadline = time.monotonic() + min(job.linger for job in self._pending)
            left = deadline - time.monotonic()
            if left <= 0 or not self._company.wait(left):
                return

    def _drain(self, conn: sqlite3.Connection) -> None:
        """On the writer's thread: run the next batch as one transaction and answer its jobs.

        When the batch cannot get the write lock within busy_timeout, the jobs
        still queued that were submitted before it began waiting (more than
        ``MAX_BATCH`` were pending) have waited as long: they fail with it,
        rather than wait for the lock once more.
        """
        with self._lock:
            self._wait_for_company()
            batch: list[_Job] = []
            while self._pending and len(batch) < MAX_BATCH:
                job = self._pending.popleft()
                if not job.future.done():  # cancelled before its batch began: skipped
                    batch.append(job)
        began = time.monotonic()
        work = [job for job in batch if job.fn is not _marker]
        try:
            results = _run_batch(conn, work) if work else []
        except BaseException as exc:  # noqa: BLE001 - no caller may wait forever for its answer
            results = [(False, exc)] * len(work)
        for job, (ok, value) in zip(work, results, strict=True):
            answer(job.future, ok, value)
        for job in batch:
            if job.fn is _marker:
                answer(job.future, True, None)  # after every job queued before it
        locked = _is_lock_error(results, conn)
        with self._lock:
            if locked is not None:
                waited = [job for job in self._pending if job.queued <= began]
                self._pending = collections.deque(j for j in self._pending if j.queued > began)
            else:
                waited = []
            again = self._posted = bool(self._pending)
        for job in waited:
            answer(job.future, False, locked)
        if again:
            self._post_drain()
