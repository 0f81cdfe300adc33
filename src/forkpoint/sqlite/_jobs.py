"""The row jobs: named functions ``job(conn, *args)`` that run whole on a connection thread.

Each write job runs inside the group-commit transaction the engine gives it
(``SqliteEngine.write``) and keeps its rule: it raises a ``CheckpointError``
only *before* it writes anything. Read jobs run on the reader connection
(``SqliteEngine.read``). No job checks arguments or encodes values: the base
class did both; jobs only move encoded rows.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .._delta import DELTA_MIN_CHARS, MAX_RUN, apply_deltas, make_delta
from ..codec import EncodedCheckpoint, NotUtf8
from ..errors import (
    CheckpointNotFound,
    InvalidInput,
    NotAForkpointDatabase,
    SerializationError,
    StepConflict,
    ThreadExists,
)
from ._files import check_path, file_size
from ._sql import SQL

__all__ = [
    "StorageStats",
    "backup",
    "delete_inactive",
    "delete_thread",
    "fetch_decoded",
    "fetch_rows",
    "fork",
    "integrity_check",
    "prune_chunk",
    "read_decoded",
    "read_raw",
    "read_row",
    "replace_states",
    "restore",
    "save",
    "set_thread_metadata",
    "states_down",
    "storage_stats",
    "thread_ids",
    "vacuum",
]

_CHUNK = 256  # listing rows fetched per C call

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class StorageStats:
    """What :meth:`SqliteCheckpointer.storage_stats` reports.

    ``stored_bytes`` and ``latest_bytes`` count the state column as stored
    (full states or deltas) per thread, total and for the latest step;
    ``freelist_count`` pages are what ``vacuum()`` would give back.
    """

    page_size: int
    page_count: int
    freelist_count: int
    stored_bytes: dict[str, int]
    latest_bytes: dict[str, int]


# --- reading rows -----------------------------------------------------------------------------


def in_one_snapshot(conn: sqlite3.Connection, job: Callable[..., T], args: tuple[Any, ...]) -> T:
    """``job(conn, *args)`` in one read transaction: all its statements see one snapshot.

    In autocommit mode each statement would take its own snapshot, and a
    commit landing between two of them (a prune, a save) would be half seen.
    ``BEGIN`` is deferred: the snapshot starts at the job's first read.
    Costs two statements per read: about 2 µs (timeit, best of 7: 7.1 µs for a bare
    one-row SELECT, 9.2 µs framed), against ~30 µs for the thread hop alone.
    """
    conn.execute("BEGIN")
    try:
        return job(conn, *args)
    finally:
        if conn.in_transaction:
            # Ending a read transaction cannot lose anything; a failure here is the job's error's.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")


def _text_or_bytes(data: bytes) -> str:
    """The driver's text factory when a read met text that is not UTF-8 (see :func:`_any_text`)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return NotUtf8(data)  # type: ignore[return-value]  # the value a crafted row stores


def _any_text(job: Callable[..., T]) -> Callable[..., T]:
    """``job`` that reads a crafted file's non-UTF-8 text as :class:`NotUtf8` instead of failing.

    The driver refuses to read such text with an ``OperationalError`` that
    carries no SQLite error code (SQLite itself read the row; Python could not
    make a ``str`` of it). Only then is the job run again (inside the same read
    transaction, when it runs in one), with every text read through
    :func:`_text_or_bytes`; the fast path never pays for it.
    """

    @functools.wraps(job)
    def run(conn: sqlite3.Connection, *args: Any) -> T:
        try:
            return job(conn, *args)
        except sqlite3.OperationalError as exc:
            if hasattr(exc, "sqlite_errorcode"):
                raise
        conn.text_factory = _text_or_bytes
        try:
            return job(conn, *args)
        finally:
            conn.text_factory = str

    return run


_Row = tuple[str, str, str, str, str, int]  # node, created_at, queue, metadata, full state, version


def _full_row(conn: sqlite3.Connection, thread_id: str, step: int) -> _Row | None:
    """The stored checkpoint at ``step`` with its full state text, rebuilding a delta row.

    Reads the row and, for a delta, the newer rows up to the next full one
    (at most ``MAX_RUN``); raises SerializationError if that chain is damaged.
    """
    row = conn.execute(SQL.ROW, (thread_id, step)).fetchone()
    if row is None:
        return None
    node, created_at, queue, metadata, state, version, encoding = row
    if encoding == 0:
        return node, created_at, queue, metadata, state, version
    try:
        if encoding != 1 or not isinstance(state, str):
            raise ValueError(f"unknown storage encoding {encoding!r}")
        deltas = [state]
        for newer_encoding, text in conn.execute(SQL.NEWER_STATES, (thread_id, step, MAX_RUN + 1)):
            if newer_encoding == 0:
                if not isinstance(text, str):
                    raise ValueError("the full state this delta refers to is not text")
                deltas.reverse()
                # Deltas are textual: a row keeps its own version whatever its newer rows hold.
                return node, created_at, queue, metadata, apply_deltas(text, deltas), version
            deltas.append(text)
        raise ValueError("the delta chain has no full state to start from")
    except ValueError as exc:
        raise SerializationError(
            f"stored state cannot be rebuilt: {exc}", thread_id=thread_id, step=step
        ) from exc


def _read_row(
    conn: sqlite3.Connection, thread_id: str, step: int | None
) -> EncodedCheckpoint | None:
    """The row at ``step`` (None: the latest, always a full row, one read), state rebuilt."""
    if step is not None:
        found = _full_row(conn, thread_id, step)
        return None if found is None else EncodedCheckpoint(thread_id, step, *found)
    row = conn.execute(SQL.LATEST_ROW, (thread_id,)).fetchone()
    if row is None:
        return None
    step, node, created_at, queue, metadata, state, version, encoding = row
    if encoding != 0:  # not written by forkpoint; rebuild rather than misread
        return _read_row(conn, thread_id, step)
    return EncodedCheckpoint(thread_id, step, node, created_at, queue, metadata, state, version)


read_row = _any_text(_read_row)


@_any_text
def read_decoded(
    conn: sqlite3.Connection,
    thread_id: str,
    step: int | None,
    decode: Callable[[EncodedCheckpoint], R],
) -> R | None:
    """``decode`` of :func:`read_row`'s row, in the same hop (the base's ``_read_row`` hook).

    Run unframed (``SqliteEngine.read(..., framed=False)``): a row stored whole
    (every latest row forkpoint writes, and most others) is one statement,
    which reads one snapshot by itself, so it goes without ``BEGIN``/``COMMIT``
    (2 µs, timeit). A delta row is read again, with the newer rows it is
    rebuilt from, in one read transaction; if a prune removed it in between,
    there is no such row.
    """
    if step is None:
        latest = conn.execute(SQL.LATEST_ROW, (thread_id,)).fetchone()
        if latest is None:
            return None
        step, *stored = latest
    else:
        stored = conn.execute(SQL.ROW, (thread_id, step)).fetchone()
        if stored is None:
            return None
    node, created_at, queue, metadata, state, version, encoding = stored
    if encoding == 0:
        row = EncodedCheckpoint(thread_id, step, node, created_at, queue, metadata, state, version)
    else:
        found = in_one_snapshot(conn, _read_row, (thread_id, step))
        if found is None:
            return None
        row = found
    return decode(row)


@_any_text
def states_down(
    conn: sqlite3.Connection, thread_id: str, top: int, newer: str | None, max_chars: int
) -> list[EncodedCheckpoint]:
    """Rows at steps ≤ ``top``, newest first, each with its full state; about ``max_chars`` of them.

    ``newer`` is the full state of the row just above ``top`` (the previous
    page's last), so each delta is applied exactly once, against it; without
    it (the first page) a delta row is rebuilt from the rows above. One
    statement: the rows of a page come from one snapshot. Returns at least one
    row unless there are none.
    """
    out: list[EncodedCheckpoint] = []
    size = 0
    cursor = conn.execute(SQL.STATES_DOWN, (thread_id, top))
    try:
        for step, node, created_at, queue, metadata, state, version, encoding in cursor:
            if encoding == 0 and isinstance(state, str):
                full = state
            elif newer is None:
                found = _full_row(conn, thread_id, step)
                if found is None:
                    break  # removed meanwhile (a prune): nothing older remains either
                full = found[4]
            else:
                try:
                    if encoding != 1 or not isinstance(state, str):
                        raise ValueError(f"unknown storage encoding {encoding!r}")
                    full = apply_deltas(newer, [state])
                except ValueError as exc:
                    raise SerializationError(
                        f"stored state cannot be rebuilt: {exc}", thread_id=thread_id, step=step
                    ) from exc
            # A delta is text against the newer row; the row keeps its own version.
            out.append(
                EncodedCheckpoint(thread_id, step, node, created_at, queue, metadata, full, version)
            )
            newer = full
            size += len(full)
            if size >= max_chars:
                break
    finally:
        cursor.close()
    return out


@_any_text
def read_raw(conn: sqlite3.Connection, thread_id: str, step: int) -> str | bytes | None:
    """The state column exactly as stored (a delta stays a delta); None if there is no row.

    Text that is not UTF-8 comes back as its bytes.
    """
    row = conn.execute(SQL.RAW_STATE, (thread_id, step)).fetchone()
    if row is None:
        return None
    value = row[0]
    if isinstance(value, NotUtf8):
        return bytes(value)
    return value if isinstance(value, str | bytes) else repr(value)


def _fetch(
    conn: sqlite3.Connection, sql: str, params: Any, decode: Callable[[list[Any]], list[R]]
) -> list[R]:
    """A listing's entries: ``decode`` of each chunk of rows as the cursor runs.

    One C call fetches a chunk; its raw rows are dropped once decoded, so a
    long listing holds its entries and one chunk, never every raw row too.
    The cursor is closed even on error: an unfinished statement would keep its
    read snapshot, and so the WAL, for as long as the error's traceback lives.
    """
    out: list[R] = []
    cursor = conn.execute(sql, params)
    try:
        while rows := cursor.fetchmany(_CHUNK):
            out += decode(rows)
    finally:
        cursor.close()
    return out


fetch_decoded = _any_text(_fetch)


def _as_fetched(rows: list[Any]) -> list[Any]:
    return rows


@_any_text
def fetch_rows(conn: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    """A listing's rows as stored, fetched a chunk at a time (see :func:`_fetch`)."""
    return _fetch(conn, sql, params, _as_fetched)


def thread_ids(conn: sqlite3.Connection) -> list[str]:
    """Every thread id, sorted; ids a crafted file stores as invalid UTF-8 are left out.

    Such an id cannot be bound as a parameter, so no statement could address
    its thread: an all-threads prune works on every other thread and leaves
    that one as it is (listing the threads reports the damage as an error).
    """
    out = []
    for (raw,) in conn.execute(SQL.ALL_THREAD_IDS):
        with contextlib.suppress(UnicodeDecodeError):
            out.append(raw.decode("utf-8"))
    return out


def storage_stats(conn: sqlite3.Connection) -> StorageStats:
    """Page counts and per-thread stored bytes, from the reader's one snapshot."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return StorageStats(
        page_size=page_size,
        page_count=conn.execute("PRAGMA page_count").fetchone()[0],
        freelist_count=conn.execute("PRAGMA freelist_count").fetchone()[0],
        stored_bytes={t: int(n) for t, n in conn.execute(SQL.STORED_BYTES)},
        latest_bytes={t: int(n) for t, n in conn.execute(SQL.LATEST_BYTES)},
    )


def integrity_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's ``PRAGMA integrity_check`` lines."""
    return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]


def backup(conn: sqlite3.Connection, target: str) -> None:
    """Copy the database into ``target`` (new or empty, created 0600) with the backup API.

    The destination passes the same door as a database path: a FIFO there would
    block the reader's thread forever, a bad path is InvalidInput.
    """
    try:
        found = check_path(target)
    except NotAForkpointDatabase as exc:
        raise InvalidInput(f"backup destination: {exc.message}", path=target) from None
    if found is not None and found.st_size > 0:
        raise InvalidInput("backup destination exists and is not empty", path=target)
    if found is None:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    out = sqlite3.connect(target)
    try:
        conn.backup(out)
    finally:
        out.close()


# --- writing rows (inside the group-commit transaction) ----------------------------------------


def save(
    conn: sqlite3.Connection,
    row: EncodedCheckpoint,
    meta: str | None,
    now: str,
    keep_last: int | None,
) -> None:
    """Store one checkpoint (and the thread's metadata), then apply ``keep_last``.

    A small state's save to an existing thread is two statements: the thread
    update, which also checks the step, and the INSERT. Otherwise the checked
    path reads the thread first (a new thread, a conflict, a retry, a delta).
    """
    if (
        not _may_delta(row.state)
        and conn.execute(
            SQL.UPDATE_THREAD, (row.step, now, 0, meta, row.thread_id, row.step)
        ).rowcount
    ):
        conn.execute(SQL.INSERT, row)
    elif not _insert_checked(conn, row, meta, now):
        return  # an identical retry
    if keep_last is not None:
        removed = conn.execute(SQL.KEEP_LAST, (row.thread_id, row.thread_id, keep_last)).rowcount
        if removed:
            conn.execute(SQL.PRUNE_COUNT, (removed, removed, row.thread_id))


def _insert_checked(
    conn: sqlite3.Connection, row: EncodedCheckpoint, meta: str | None, now: str
) -> bool:
    """Store a checkpoint after reading its thread's latest step; False for an identical retry.

    Raises StepConflict, before writing anything, when the step is not after
    the latest and the stored checkpoint at that step differs.
    """
    latest = conn.execute(SQL.THREAD_LATEST, (row.thread_id,)).fetchone()
    if latest is not None and row.step <= latest[0]:
        stored = _full_row(conn, row.thread_id, row.step)
        if stored is not None and EncodedCheckpoint(row.thread_id, row.step, *stored) == row:
            return False
        raise StepConflict(
            f"step {row.step} is not after the thread's latest step {latest[0]}",
            thread_id=row.thread_id,
            step=row.step,
        )
    conn.execute(SQL.INSERT, row)
    if latest is None:
        conn.execute(SQL.INSERT_THREAD, (row.thread_id, now, now, row.step, meta or "{}"))
    else:
        run = _previous_to_delta(conn, row.thread_id, latest[0], latest[1], row.state)
        conn.execute(SQL.UPDATE_THREAD, (row.step, now, run, meta, row.thread_id, row.step))
    return True


def _may_delta(state: str) -> bool:
    """Whether saving ``state`` may turn the previous row into a delta: small states never do."""
    return len(state) >= DELTA_MIN_CHARS


def _previous_to_delta(
    conn: sqlite3.Connection, thread_id: str, previous: int, run: int, newest_state: str
) -> int:
    """Rewrite the previous latest row as a reverse delta against the new one, if it pays.

    Returns the thread's new ``delta_run``: one more when the row became a
    delta, 0 when it stays full (small state, run at ``MAX_RUN``, or no gain).
    """
    if not _may_delta(newest_state) or run >= MAX_RUN:
        return 0
    stored = conn.execute(SQL.STORED_STATE, (thread_id, previous)).fetchone()
    if stored is None or stored[1] != 0 or not isinstance(stored[0], str):
        return 0
    delta = make_delta(stored[0], newest_state)
    if delta is None:
        return 0
    conn.execute(SQL.TO_DELTA, (delta, thread_id, previous))
    return run + 1


def fork(conn: sqlite3.Connection, thread_id: str, at_step: int, target: str, now: str) -> str:
    """Copy steps ≤ ``at_step`` into ``target``: one INSERT…SELECT whatever the length.

    Rows below the fork point are copied verbatim (deltas included); the fork
    point itself is inserted in full, since it becomes the new thread's latest.
    """
    lineage = conn.execute(SQL.LINEAGE, (target,)).fetchone()
    if lineage is not None:
        if tuple(lineage) == (thread_id, at_step):
            return target  # the same fork, asked again: idempotent
        raise ThreadExists(f"cannot fork into {target!r}: the thread exists", thread_id=target)
    top = _full_row(conn, thread_id, at_step)
    if top is None:
        raise CheckpointNotFound(
            f"cannot fork: no checkpoint at step {at_step} in thread {thread_id!r}",
            thread_id=thread_id,
            step=at_step,
        )
    copied = conn.execute(SQL.FORK_ROWS, (target, thread_id, at_step)).rowcount
    conn.execute(SQL.INSERT, EncodedCheckpoint(target, at_step, *top))
    run = 0
    for (encoding,) in conn.execute(SQL.RUN_BELOW, (thread_id, at_step, MAX_RUN + 1)):
        if encoding != 1:
            break
        run += 1
    conn.execute(
        SQL.FORK_THREAD,
        (target, now, now, at_step, copied + 1, thread_id, at_step, run, thread_id),
    )
    return target


def replace_states(
    conn: sqlite3.Connection,
    thread_id: str,
    latest_step: int,
    count: int,
    rows: list[EncodedCheckpoint],
) -> bool:
    """Replace a thread's rows with ``rows`` (its steps, rewritten states), stored as a save would.

    Nothing is written unless the thread still has ``latest_step`` and
    ``count`` rows. The rows go in oldest first, each earlier one turned into
    a reverse delta of the next where that pays, so the thread stays as small
    as if it had been saved this way; the thread record keeps its times.
    """
    shape = conn.execute(SQL.THREAD_SHAPE, (thread_id,)).fetchone()
    if shape is None or tuple(shape) != (latest_step, count):
        return False
    conn.execute(SQL.DELETE_ROWS, (thread_id,))
    run, previous = 0, None
    for row in rows:
        conn.execute(SQL.INSERT, row)
        if previous is not None:
            run = _previous_to_delta(conn, thread_id, previous, run, row.state)
        previous = row.step
    conn.execute(SQL.SET_DELTA_RUN, (run, thread_id))
    return True


def delete_thread(conn: sqlite3.Connection, thread_id: str) -> bool:
    """Delete a thread's rows and record; whether it existed."""
    conn.execute(SQL.DELETE_ROWS, (thread_id,))
    return bool(conn.execute(SQL.DELETE_THREAD, (thread_id,)).rowcount)


def set_thread_metadata(conn: sqlite3.Connection, thread_id: str, text: str) -> bool:
    """Replace a thread's metadata text; False if there is no such thread."""
    return bool(conn.execute(SQL.SET_THREAD_METADATA, (text, thread_id)).rowcount)


def prune_chunk(
    conn: sqlite3.Connection, ids: list[str], keep: int, cutoff: str, dry_run: bool
) -> list[tuple[int, int]]:
    """Remove (or count) the prunable rows of each existing thread of ``ids``; (rows, bytes) each."""
    out = []
    for thread_id in ids:
        latest = conn.execute(SQL.THREAD_LATEST, (thread_id,)).fetchone()
        if latest is None:
            continue
        params = (thread_id, latest[0], thread_id, keep - 1, thread_id, cutoff, latest[0])
        count, size = conn.execute(SQL.PRUNE_SIZE, params).fetchone()
        if count and not dry_run:
            conn.execute(SQL.PRUNE_DELETE, params)
            conn.execute(SQL.PRUNE_COUNT, (count, count, thread_id))
        out.append((int(count), int(size)))
    return out


def delete_inactive(conn: sqlite3.Connection, cutoff: str) -> list[str]:
    """Delete every thread last written before ``cutoff``; their ids, sorted."""
    gone = [r[0] for r in conn.execute(SQL.INACTIVE, (cutoff,))]
    for thread_id in gone:
        conn.execute(SQL.DELETE_ROWS, (thread_id,))
        conn.execute(SQL.DELETE_THREAD, (thread_id,))
    return gone


def restore(
    conn: sqlite3.Connection, record: tuple[Any, ...], rows: list[EncodedCheckpoint]
) -> bool:
    """Insert a thread record (``SQL.RESTORE_THREAD``'s columns) and its rows; False if it exists."""
    if conn.execute(SQL.THREAD_LATEST, (record[0],)).fetchone() is not None:
        return False
    conn.execute(SQL.RESTORE_THREAD, record)
    conn.executemany(SQL.INSERT, rows)
    return True


# --- maintenance (on the writer's thread, outside a transaction) --------------------------------


def vacuum(conn: sqlite3.Connection, path: str) -> int:
    """Fold the WAL in, vacuum, then truncate the WAL; the bytes the file shrank by.

    The first checkpoint is PASSIVE: it folds in what no reader still needs
    without waiting. Only the last one, TRUNCATE, waits (up to busy_timeout)
    for readers of other processes, so writes queued behind a vacuum wait for
    one busy_timeout at most, not two (measured: 2.0 s before, 1.0 s after,
    with busy_timeout=1 and a reader holding an old snapshot).
    """
    before = file_size(path)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    if mode == 2:
        # executescript steps the pragma to completion; execute() would step it
        # once, and each step frees a single page.
        conn.executescript("PRAGMA incremental_vacuum")
    else:
        conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return max(0, before - file_size(path))
