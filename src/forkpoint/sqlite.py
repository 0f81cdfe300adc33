"""SqliteCheckpointer: durable checkpoints in one SQLite file, shared safely by processes.

How it works, and why:

* **One worker-thread hop per operation.** aiosqlite runs each connection on
  its own thread; every operation here is one function queued on that thread,
  never a statement per hop (a hop costs ~90 µs, more than the SQL).
* **Group commit.** Writes are queued; a single writer task takes everything
  pending and runs it as one ``BEGIN IMMEDIATE … COMMIT`` on the writer's
  thread, so concurrent saves share one fsync while every caller still gets
  its own result or error: a job refuses (StepConflict, a missing thread)
  before it writes anything, so a refusal needs no savepoint. A job that
  fails after writing, or SQL that fails, rolls the batch back, and the batch
  is re-run one job per transaction, so no caller pays for another's failure.
* **Cancellation-safe.** A transaction is one function on the worker thread:
  cancelling the awaiting task cannot leave it open. A cancelled save is
  committed whole or not at all, and re-issuing it is an identical retry.
* **Reads on their own connection**, so WAL readers never queue behind the
  writer, and listings read metadata columns only.
* All SQL is in :class:`_SQL`, every value bound as a parameter; a metadata
  filter's keys are bound too (``json_each`` rows, not JSON paths in SQL text).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import aiosqlite

from ._delta import DELTA_MIN_CHARS, MAX_RUN, apply_deltas, make_delta
from .base import (
    HistoryCheckpointer,
    MetadataFilter,
    PruneReport,
    check_bounds,
    check_filter,
    check_inactive_for,
    check_keep_last,
    check_limit,
    check_prune,
    check_restore,
)
from .codec import (
    EncodedCheckpoint,
    StateCodec,
    checkpoint_metadata,
    format_time,
    thread_info,
)
from .errors import (
    CheckpointerClosed,
    CheckpointError,
    CheckpointNotFound,
    DatabaseCorrupt,
    DatabaseLocked,
    DiskIOError,
    ForkedProcess,
    InvalidInput,
    NotAForkpointDatabase,
    ReadOnlyDatabase,
    SchemaVersionError,
    SerializationError,
    StateTooLarge,
    StepConflict,
    StorageError,
    StorageFull,
    ThreadExists,
)
from .migrate import APPLICATION_ID, HEAD_REVISION, KNOWN_REVISIONS, database_revision
from .models import (
    Checkpoint,
    CheckpointMetadata,
    S,
    ThreadInfo,
    check_step,
    check_thread_id,
)

__all__ = ["Durability", "SqliteCheckpointer", "StorageStats"]

Durability = Literal["full", "normal"]
T = TypeVar("T")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_BATCH = 256
_CHUNK = 256  # listing rows fetched per C call
_PRUNE_CHUNK = 64  # threads per prune transaction, so other writers interleave


class _SQL:
    """Every statement the checkpointer runs. Values are always bound parameters."""

    STORED_BYTES = (
        "SELECT thread_id, sum(length(CAST(state AS BLOB))) FROM checkpoints GROUP BY thread_id"
    )
    LATEST_BYTES = (
        "SELECT t.thread_id, length(CAST(c.state AS BLOB)) FROM threads AS t "
        "JOIN checkpoints AS c ON c.thread_id = t.thread_id AND c.step = t.latest_step"
    )

    THREAD_LATEST = "SELECT latest_step, delta_run FROM threads WHERE thread_id = ?"
    ROW = (
        "SELECT node, created_at, queue, metadata, state, state_version, encoding FROM checkpoints "
        "WHERE thread_id = ? AND step = ?"
    )
    LATEST_ROW = (
        "SELECT step, node, created_at, queue, metadata, state, state_version, encoding "
        "FROM checkpoints WHERE thread_id = ? ORDER BY step DESC LIMIT 1"
    )
    NEWER_STATES = "SELECT encoding, state FROM checkpoints WHERE thread_id = ? AND step > ? ORDER BY step LIMIT ?"
    STORED_STATE = "SELECT state, encoding FROM checkpoints WHERE thread_id = ? AND step = ?"
    # Re-insert rather than UPDATE: SQLite rebalances b-tree pages after a delete
    # but not after a cell shrinks in place, so an UPDATE from a large state to a
    # small delta would leave one nearly empty leaf page behind per checkpoint.
    TO_DELTA = (
        "INSERT OR REPLACE INTO checkpoints "
        "(thread_id, step, created_at, node, metadata, queue, state, encoding, state_version) "
        "SELECT thread_id, step, created_at, node, metadata, queue, ?, 1, state_version "
        "FROM checkpoints WHERE thread_id = ? AND step = ?"
    )
    RUN_BELOW = "SELECT encoding FROM checkpoints WHERE thread_id = ? AND step < ? ORDER BY step DESC LIMIT ?"
    RAW_STATE = "SELECT state FROM checkpoints WHERE thread_id = ? AND step = ?"
    # Columns in EncodedCheckpoint's field order: a row is bound as it is.
    INSERT = (
        "INSERT INTO checkpoints "
        "(thread_id, step, node, created_at, queue, metadata, state, state_version) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    INSERT_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count, "
        "metadata) VALUES (?, ?, ?, ?, 1, ?)"
    )
    # Changes nothing (rowcount 0) when the thread is missing or the step is not after
    # its latest, so a small-state save can try it first and skip reading the thread row.
    UPDATE_THREAD = (
        "UPDATE threads SET latest_step = ?, updated_at = ?, checkpoint_count = checkpoint_count + 1, "
        "delta_run = ?, metadata = coalesce(?, metadata) WHERE thread_id = ? AND latest_step < ?"
    )
    RESTORE_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count, "
        "parent_thread_id, parent_step, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    LINEAGE = "SELECT parent_thread_id, parent_step FROM threads WHERE thread_id = ?"
    # Rows below the fork point are copied verbatim (deltas included); the fork
    # point itself is inserted in full, since it becomes the new thread's latest.
    FORK_ROWS = (
        "INSERT INTO checkpoints "
        "(thread_id, step, created_at, node, metadata, queue, state, encoding, state_version) "
        "SELECT ?, step, created_at, node, metadata, queue, state, encoding, state_version "
        "FROM checkpoints WHERE thread_id = ? AND step < ?"
    )
    FORK_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count, "
        "parent_thread_id, parent_step, delta_run, metadata) "
        "SELECT ?, ?, ?, ?, ?, ?, ?, ?, metadata FROM threads WHERE thread_id = ?"
    )
    DELETE_ROWS = "DELETE FROM checkpoints WHERE thread_id = ?"
    DELETE_THREAD = "DELETE FROM threads WHERE thread_id = ?"
    SET_THREAD_METADATA = "UPDATE threads SET metadata = ? WHERE thread_id = ?"
    THREAD_COLUMNS = (
        "thread_id, created_at, updated_at, latest_step, checkpoint_count, "
        "parent_thread_id, parent_step, metadata"
    )
    THREAD = f"SELECT {THREAD_COLUMNS} FROM threads WHERE thread_id = ?"  # noqa: S608 - constant
    FORKS = (
        f"SELECT {THREAD_COLUMNS} FROM threads WHERE parent_thread_id = ? "  # noqa: S608 - constant
        "ORDER BY thread_id"
    )
    THREADS = f"SELECT {THREAD_COLUMNS} FROM threads"  # noqa: S608 - constant
    HISTORY = "SELECT step, created_at, node, metadata FROM checkpoints AS c WHERE c.thread_id = ?"
    ALL_THREAD_IDS = "SELECT thread_id FROM threads ORDER BY thread_id"
    INACTIVE = "SELECT thread_id FROM threads WHERE updated_at < ? ORDER BY thread_id"
    # Rows a prune removes: the oldest steps, below the latest, below the newest
    # `keep`, and below the first step created at or after the cutoff ('~' sorts
    # after every time). Always a prefix of the history: delta rows depend only
    # on newer rows, so what remains stays readable.
    PRUNE_WHERE = (
        "FROM checkpoints WHERE thread_id = ? AND step < min(?, coalesce("
        "(SELECT step FROM checkpoints WHERE thread_id = ? ORDER BY step DESC LIMIT 1 OFFSET ?), -1), "
        "coalesce((SELECT min(step) FROM checkpoints WHERE thread_id = ? AND created_at >= ?), ?))"
    )
    PRUNE_SIZE = (
        "SELECT count(*), coalesce(sum(length(CAST(thread_id AS BLOB)) + length(CAST(node AS BLOB)) "
        "+ length(CAST(created_at AS BLOB)) + length(CAST(queue AS BLOB)) "
        "+ length(CAST(metadata AS BLOB)) + length(CAST(state AS BLOB)) + 16), 0) " + PRUNE_WHERE
    )
    PRUNE_DELETE = "DELETE " + PRUNE_WHERE
    # The retention policy inside save: everything older than the newest `keep`.
    KEEP_LAST = (
        "DELETE FROM checkpoints WHERE thread_id = ? AND step <= coalesce("
        "(SELECT step FROM checkpoints WHERE thread_id = ? ORDER BY step DESC LIMIT 1 OFFSET ?), -1)"
    )
    PRUNE_COUNT = (
        "UPDATE threads SET checkpoint_count = checkpoint_count - ?, "
        "delta_run = min(delta_run, checkpoint_count - ? - 1) WHERE thread_id = ?"
    )
    TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


def _filter_sql(flt: Mapping[str, Any], source: str, depth: int = 0) -> tuple[str, list[Any]]:
    """SQL condition (fixed text) and its parameters for a checked metadata filter.

    Each key is matched by a bound parameter against ``json_each`` rows, so no
    user string, not even a JSON path, ever becomes SQL text. The aliases are
    generated from the nesting depth alone.
    """
    alias = f"j{depth}"
    parts: list[str] = []
    params: list[Any] = []
    for key, expected in flt.items():
        if isinstance(expected, Mapping):
            inner, inner_params = _filter_sql(expected, f"{alias}.value", depth + 1)
            cond = f"{alias}.type = 'object'" + (f" AND {inner}" if inner else "")
            leaf: list[Any] = inner_params
        elif expected is None:
            cond, leaf = f"{alias}.type = 'null'", []
        elif isinstance(expected, bool):
            cond, leaf = f"{alias}.type = ?", ["true" if expected else "false"]
        elif isinstance(expected, int | float):
            cond, leaf = f"{alias}.type IN ('integer', 'real') AND {alias}.value = ?", [expected]
        else:
            cond, leaf = f"{alias}.type = 'text' AND {alias}.value = ?", [expected]
        json_source = f"CASE WHEN json_valid({source}) THEN {source} END" if depth == 0 else source
        parts.append(
            # S608: only fixed fragments and depth-numbered aliases reach the text; keys
            # and values are the bound parameters collected alongside.
            f"EXISTS (SELECT 1 FROM json_each({json_source}) AS {alias} "  # noqa: S608
            f"WHERE {alias}.key = ? AND {cond})"
        )
        params += [key, *leaf]
    return " AND ".join(parts), params


def _page(
    sql: str,
    params: list[Any],
    bounds: list[tuple[str, object]],
    flt: MetadataFilter | None,
    metadata_column: str,
    order: str,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """A listing query: fixed SQL fragments for the bounds given, a filter, order and limit.

    Only the constant fragments passed in here become SQL text; every value is
    a bound parameter.
    """
    for fragment, value in bounds:
        if value is not None:
            sql += " AND " + fragment
            params.append(value)
    if flt is not None:
        cond, fparams = _filter_sql(check_filter(flt), metadata_column)
        if cond:
            sql += " AND " + cond
            params += fparams
    sql += " ORDER BY " + order
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


# --- errors at the boundary ---------------------------------------------------------------


def _translate(
    exc: BaseException, *, path: str, thread_id: str | None = None, step: int | None = None
) -> CheckpointError:
    """A typed CheckpointError for a driver error (chain it as the cause)."""
    if isinstance(exc, CheckpointError):
        return exc
    kind: type[CheckpointError] = StorageError
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        kind, message = _SQLITE_ERRORS.get(code, (StorageError, "SQLite failed"))
        message = f"{message}: {exc} ({name})"
    elif isinstance(exc, OSError):
        kind = _OS_ERRORS.get(exc.errno or 0, StorageError)
        message = f"file system error: {exc}"
    elif isinstance(exc, ValueError) and "closed" in str(exc).lower():
        kind, message = CheckpointerClosed, "the checkpointer is closed"
    else:
        message = f"unexpected failure: {exc!r}"
    return kind(message, path=path, thread_id=thread_id, step=step)


_OS_ERRORS: dict[int, type[CheckpointError]] = {
    errno.ENOSPC: StorageFull,
    errno.EDQUOT: StorageFull,
    errno.EFBIG: StorageFull,
    errno.EROFS: ReadOnlyDatabase,
    errno.EIO: DiskIOError,
}

_SQLITE_ERRORS: dict[int, tuple[type[CheckpointError], str]] = {
    sqlite3.SQLITE_BUSY: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_LOCKED: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_FULL: (StorageFull, "storage is full"),
    sqlite3.SQLITE_READONLY: (ReadOnlyDatabase, "database is read-only"),
    sqlite3.SQLITE_TOOBIG: (StateTooLarge, "checkpoint is too large for SQLite"),
    sqlite3.SQLITE_NOTADB: (NotAForkpointDatabase, "not a usable SQLite database"),
    sqlite3.SQLITE_CORRUPT: (DatabaseCorrupt, "the database file is damaged"),
    sqlite3.SQLITE_IOERR: (DiskIOError, "disk I/O error"),
}


# --- opening a file -------------------------------------------------------------------------


def _ro_uri(path: str, *, immutable: bool = False) -> str:
    return f"file:{quote(path)}?mode=ro" + ("&immutable=1" if immutable else "")


def _prepare(path: str, *, read_only: bool, migrate: bool, busy_timeout: float) -> None:
    """Check (and create or migrate) the file at ``path``; never modifies a foreign file.

    Runs in a worker thread: it may take the write lock to migrate.
    """
    target = Path(path)
    if not target.exists():
        if read_only:
            raise StorageError("no database file", path=path)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass  # another opener made it a moment ago; go on with theirs
        except OSError as exc:
            raise _translate(exc, path=path) from exc
    try:  # a directory fails here: IsADirectoryError, a StorageError naming it
        with target.open("rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise _translate(exc, path=path) from exc
    if header and not header.startswith(_SQLITE_MAGIC):
        raise NotAForkpointDatabase("the file is not an SQLite database", path=path)
    if header and len(header) < 100:
        raise DatabaseCorrupt(
            "the file is a truncated SQLite database (its header is cut short)", path=path
        )
    revision: str | None = None
    if header:
        revision = _inspect(path, header)
    if revision == HEAD_REVISION:
        return
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise SchemaVersionError(
            f"database schema revision {revision!r} is newer than this forkpoint knows "
            f"(head {HEAD_REVISION!r}); upgrade forkpoint",
            path=path,
        )
    if read_only or not migrate:
        raise SchemaVersionError(
            f"database is at schema revision {revision!r}, not {HEAD_REVISION!r}; "
            "open it with migrate=True (or run `forkpoint migrate`)",
            path=path,
        )
    from . import migrate as migrations

    try:
        migrations.upgrade(path, busy_timeout=busy_timeout)
    except CheckpointError:
        raise
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
        orig = getattr(exc, "orig", None)
        raise _translate(orig if isinstance(orig, sqlite3.Error) else cause, path=path) from exc


def _inspect(path: str, header: bytes) -> str | None:
    """The file's forkpoint revision (None: empty, to be created); refuses foreign files.

    Reads through a read-only connection so a foreign file is never written.
    """
    header_app_id = int.from_bytes(header[68:72], "big")
    if header_app_id not in (0, APPLICATION_ID):
        raise NotAForkpointDatabase(
            f"the file is another application's SQLite database (application_id {header_app_id:#x})",
            path=path,
        )
    # Without a -wal file every committed page is in the main file: read it as immutable, so
    # inspecting a foreign or broken file creates no -wal/-shm next to it. (The migration
    # re-checks the revision under the write lock, so a file growing meanwhile is harmless.)
    no_wal = not os.path.exists(path + "-wal")
    if no_wal and _truncated(path, header):
        raise DatabaseCorrupt(
            "the file is a truncated SQLite database (shorter than its header says)", path=path
        )
    try:
        conn = sqlite3.connect(_ro_uri(path, immutable=no_wal), uri=True)
    except sqlite3.Error as exc:
        raise _translate(exc, path=path) from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in conn.execute(_SQL.TABLES)}
        revision = database_revision(conn)
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            kind = DatabaseCorrupt if code == sqlite3.SQLITE_CORRUPT else NotAForkpointDatabase
            raise kind(f"the file is not a usable SQLite database: {exc}", path=path) from exc
        raise _translate(exc, path=path) from exc
    finally:
        conn.close()
    if app_id == APPLICATION_ID:
        return revision
    if app_id == 0 and not tables:
        return None
    raise NotAForkpointDatabase(
        "the file is an SQLite database of another application (no forkpoint application_id)",
        path=path,
    )


def _truncated(path: str, header: bytes) -> bool:
    """Whether the file is shorter than the page count its (valid) header records."""
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = pages > 0 and header[24:28] == header[92:96]  # SQLite's own validity rule
    try:
        return valid and os.path.getsize(path) < pages * page_size
    except OSError:
        return False


def _reader_uri(options: _Options) -> str:
    """The reader's URI: read-only, and immutable where SQLite could not open it otherwise.

    On a read-only file system SQLite cannot create the -shm it needs for a WAL
    database; nothing can change the file there, so it is read as immutable.
    """
    immutable = options.read_only_fs and not os.path.exists(options.path + "-shm")
    if immutable and _file_size(options.path + "-wal") > 0:
        raise ReadOnlyDatabase(
            "the database has a pending write-ahead log but no -shm file and sits on a "
            "read-only file system; open it once where it is writable",
            path=options.path,
        )
    if immutable:
        return _ro_uri(options.path, immutable=True)
    # Elsewhere a read-write connection held to `query_only`: unlike a `mode=ro` one, the
    # last connection to close can remove the -wal/-shm files it needed, so reading a
    # database (`forkpoint threads`, read_only=True) leaves nothing behind.
    return f"file:{quote(options.path)}"


def _on_read_only_fs(path: str) -> bool:
    """Whether the directory holding ``path`` is on a read-only file system."""
    try:
        return bool(os.statvfs(os.path.dirname(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# --- the writer ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _answer(jobs: list[_Job], results: list[tuple[bool, Any]]) -> None:
    """Resolve each job's future (on the event loop); cancelled callers are skipped."""
    for job, (ok, value) in zip(jobs, results, strict=True):
        if job.future.done():
            continue  # the caller was cancelled; its work is committed (or not) whole
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _run_and_answer(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
    """Run a batch on the writer thread and answer its callers from here.

    Answering from the worker thread, not from whoever awaited the batch, means
    a cancelled awaiter cannot strand the other jobs of its batch.
    """
    results = _run_batch(conn, jobs)
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
        jobs[0].loop.call_soon_threadsafe(_answer, jobs, results)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # A failed rollback leaves SQLite to roll back on its own; the error is already reported.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _run_batch(conn: sqlite3.Connection, jobs: list[_Job]) -> list[tuple[bool, Any]]:
    """Run jobs in one transaction on the writer thread; (ok, result-or-exception) each.

    Jobs raise CheckpointError (a conflict, a missing thread) only before they
    write, so a refused job leaves nothing in the transaction and needs no
    savepoint. Should one ever raise after writing, or should SQLite fail, the
    batch is rolled back and re-run one job per transaction, so each caller
    gets its own outcome.
    """
    results: list[tuple[bool, Any]] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for job in jobs:
            before = conn.total_changes
            try:
                results.append((True, job.fn(conn)))
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


class _Opening(Generic[S]):
    """What :meth:`SqliteCheckpointer.open` returns: await it, or use ``async with``."""

    def __init__(self, opener: Callable[[], Awaitable[SqliteCheckpointer[S]]]) -> None:
        self._opener = opener
        self._opened: SqliteCheckpointer[S] | None = None

    def __await__(self) -> Generator[Any, None, SqliteCheckpointer[S]]:
        return self._opener().__await__()

    async def __aenter__(self) -> SqliteCheckpointer[S]:
        self._opened = await self._opener()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opened is not None:
            await self._opened.close()


@dataclass
class _Options:
    path: str
    durability: Durability
    busy_timeout: float
    read_only: bool
    keep_last: int | None
    pid: int = field(default_factory=os.getpid)
    read_only_fs: bool = False  # on a read-only file system: no writer, reads only


class SqliteCheckpointer(HistoryCheckpointer[S]):
    """Checkpoints in an SQLite file: WAL, ``BEGIN IMMEDIATE`` writes, group commit.

    Open with ``await SqliteCheckpointer.open(path, State)`` or
    ``async with SqliteCheckpointer.open(path, State) as cp``. Several
    instances, in one process or many, can share a file.
    """

    def __init__(
        self,
        options: _Options,
        codec: StateCodec[S],
        reader: aiosqlite.Connection,
        writer: aiosqlite.Connection | None,
    ) -> None:
        """Internal: use :meth:`open`."""
        self._opt = options
        self._codec = codec
        self._reader = reader
        self._writer = writer
        self._pending: list[_Job] = []
        self._flushing = False  # a leader or the drain task is running batches
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        self._released = False  # both connections closed (close() ran to its end)

    # --- lifecycle --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        state_type: type[S],
        *,
        durability: Durability = "full",
        busy_timeout: float = 5.0,
        migrate: bool = True,
        read_only: bool = False,
        max_state_bytes: int | None = None,
        keep_last: int | None = None,
    ) -> _Opening[S]:
        """Open (creating and migrating if needed) the forkpoint database at ``path``.

        ``durability="full"`` (default): WAL with ``synchronous=FULL``, a save
        that returned survives power loss. ``"normal"``: survives a process
        crash, not an OS crash or power cut; faster. ``busy_timeout``: seconds
        a write waits for another process's lock before ``DatabaseLocked``.
        ``migrate``: upgrade an older schema on open (else
        ``SchemaVersionError``). ``read_only``: loads and listings only.
        ``max_state_bytes``: refuse larger encoded states. ``keep_last``: a
        retention policy, enforced by each save, keeping the newest N
        checkpoints of the saved thread.

        A file that is not a forkpoint database raises ``NotAForkpointDatabase``
        and a newer schema ``SchemaVersionError``; neither modifies the file.
        """

        async def opener() -> SqliteCheckpointer[S]:
            return await cls._open(
                path,
                state_type,
                durability,
                busy_timeout,
                migrate,
                read_only,
                max_state_bytes,
                keep_last,
            )

        return _Opening(opener)

    @classmethod
    async def _open(
        cls,
        path: str | os.PathLike[str],
        state_type: type[S],
        durability: Durability,
        busy_timeout: float,
        migrate: bool,
        read_only: bool,
        max_state_bytes: int | None,
        keep_last: int | None,
    ) -> SqliteCheckpointer[S]:
        codec = StateCodec(state_type, max_state_bytes=max_state_bytes)
        if not isinstance(path, str | os.PathLike):
            raise InvalidInput(f"path must be a str or os.PathLike, not {type(path).__name__}")
        raw = os.fspath(path)
        if raw in ("", ":memory:") or raw.startswith("file:"):
            raise InvalidInput("path must name a file (for memory, use InMemoryCheckpointer)")
        if durability not in ("full", "normal"):
            raise InvalidInput(f"durability must be 'full' or 'normal', not {durability!r}")
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not (0 <= busy_timeout <= 3600)
        ):
            raise InvalidInput(f"busy_timeout must be seconds in [0, 3600], not {busy_timeout!r}")
        keep_last = check_keep_last(keep_last)
        for name, flag in (("migrate", migrate), ("read_only", read_only)):
            if not isinstance(flag, bool):
                raise InvalidInput(f"{name} must be a bool")
        full = os.path.abspath(raw)  # noqa: ASYNC240 - string work, no I/O wait
        await asyncio.to_thread(
            _prepare, full, read_only=read_only, migrate=migrate, busy_timeout=busy_timeout
        )
        read_only_fs = _on_read_only_fs(full)
        options = _Options(
            full,
            durability,
            float(busy_timeout),
            read_only or read_only_fs,
            keep_last,
            read_only_fs=read_only_fs,
        )
        reader = writer = None
        try:
            reader = await cls._connect(options, writer=False)
            if not options.read_only:
                writer = await cls._connect(options, writer=True)
        except BaseException as exc:
            for conn in (reader, writer):
                if conn is not None:
                    await conn.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise _translate(exc, path=full) from exc
            raise
        return cls(options, codec, reader, writer)

    @staticmethod
    async def _connect(options: _Options, *, writer: bool) -> aiosqlite.Connection:
        ms = int(options.busy_timeout * 1000)
        if writer:
            target, uri = options.path, False
            sync = "FULL" if options.durability == "full" else "NORMAL"
            # The WAL is cut back to 16 MiB whenever it restarts (after a long reader, a big state).
            script = (
                f"PRAGMA busy_timeout = {ms}; PRAGMA synchronous = {sync}; "
                "PRAGMA journal_size_limit = 16777216; PRAGMA temp_store = MEMORY;"
            )
        else:
            target, uri = _reader_uri(options), True
            script = f"PRAGMA busy_timeout = {ms}; PRAGMA query_only = 1;"
        conn = aiosqlite.connect(
            target, uri=uri, isolation_level=None, timeout=options.busy_timeout
        )
        # aiosqlite's worker thread is not a daemon: a checkpointer never closed would make the
        # interpreter wait for it forever at exit. Every write is one whole transaction on that
        # thread, so ending it at exit can only drop a save that was never acknowledged.
        conn._thread.daemon = True
        await conn
        try:
            await conn.executescript(script)
        except BaseException:
            await conn.close()  # never leak the connection's thread
            raise
        return conn

    async def close(self) -> None:
        """Finish the writes already queued, then close both connections.

        Writes submitted after ``close()`` began raise ``CheckpointerClosed``.
        """
        if self._released:
            return
        # A close() that was itself cancelled left the connections open; this one goes on.
        self._closed = True
        if self._opt.pid != os.getpid():
            return  # the connections belong to the parent process; leave them be
        await self._idle.wait()  # every write queued before close() is answered first
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(
                    CheckpointerClosed("the checkpointer was closed", path=self._opt.path)
                )
        self._pending.clear()
        # The reader (read-only) closes first, so the writer, closing last, can fold the WAL
        # back into the file and remove the -wal and -shm files.
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._released = True

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self._opt.path

    @property
    def state_type(self) -> type[S]:
        """The state model this checkpointer stores."""
        return self._codec.state_type

    def _usable(self) -> None:
        """Raise ForkedProcess or CheckpointerClosed if this checkpointer cannot be used.

        Every public method calls it first, before it looks at its arguments:
        the in-memory reference reports a closed checkpointer first, too.
        """
        if self._opt.pid != os.getpid():
            raise ForkedProcess(
                "this checkpointer was opened in another process (before os.fork()); "
                "open a new one in this process",
                path=self._opt.path,
            )
        if self._closed:
            raise CheckpointerClosed("the checkpointer is closed", path=self._opt.path)

    # --- running work -----------------------------------------------------------------------

    def _writable(
        self, *, thread_id: str | None = None, step: int | None = None
    ) -> aiosqlite.Connection:
        """The writer connection; CheckpointerClosed, ForkedProcess or ReadOnlyDatabase if none."""
        self._usable()
        if self._writer is None:
            raise ReadOnlyDatabase(
                "the database is on a read-only file system"
                if self._opt.read_only_fs
                else "the checkpointer was opened read-only",
                path=self._opt.path,
                thread_id=thread_id,
                step=step,
            )
        return self._writer

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        thread_id: str | None = None,
        step: int | None = None,
    ) -> T:
        """Queue ``fn`` for the next group-commit transaction and wait for its own result."""
        self._writable(thread_id=thread_id, step=step)
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop.create_future(), loop)
        self._pending.append(job)
        if not self._flushing:
            await self._lead(job)
        try:
            return await job.future  # type: ignore[no-any-return]
        except CheckpointError as exc:
            raise self._located(exc) from exc.__cause__
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise _translate(exc, path=self._opt.path, thread_id=thread_id, step=step) from exc

    async def _lead(self, own: _Job) -> None:
        """Group commit, led by the caller: run batches until ``own`` is answered.

        With no contention the caller's own job goes straight to the writer
        thread (one hop, no task switch). Jobs that queue up meanwhile form the
        next batch, which a background task runs once the leader has its answer.
        """
        self._flushing = True
        self._idle.clear()
        try:
            while not own.future.done() and self._pending:
                await self._flush_batch()
        finally:
            if self._pending:
                self._writer_task = asyncio.get_running_loop().create_task(self._drain())
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
        """Run the next batch of pending jobs as one transaction; the batch answers its jobs."""
        assert self._writer is not None
        batch = [job for job in self._pending[:_MAX_BATCH] if not job.future.done()]
        del self._pending[:_MAX_BATCH]
        if not batch:
            return
        try:
            await _on_worker(self._writer, _run_and_answer, batch)
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise  # the batch still runs on the worker thread and answers its jobs
            for job in batch:  # the worker never ran it (e.g. the connection is closed)
                if not job.future.done():
                    job.future.set_exception(exc)

    async def _read(
        self,
        fn: Callable[..., T],
        *args: Any,
        thread_id: str | None = None,
        step: int | None = None,
    ) -> T:
        """Run ``fn(conn, *args)`` on the reader's thread: one hop."""
        self._usable()
        try:
            return await _on_worker(self._reader, fn, *args)
        except CheckpointError as exc:
            raise self._located(exc) from exc.__cause__
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise _translate(exc, path=self._opt.path, thread_id=thread_id, step=step) from exc

    def _located(self, exc: CheckpointError) -> CheckpointError:
        """``exc`` naming this database (errors raised on a worker thread do not know it)."""
        if exc.path is None:
            exc.path = self._opt.path
            exc.args = (exc._render(),)
        return exc

    # --- writes -----------------------------------------------------------------------------

    async def save(
        self, checkpoint: Checkpoint[S], *, thread_metadata: Mapping[str, Any] | None = None
    ) -> None:
        self._usable()
        row, meta, now = self._codec.encode_save(checkpoint, thread_metadata)
        keep_last = self._opt.keep_last

        small = not _may_delta(row.state)
        advance = (row.step, now, 0, meta, row.thread_id, row.step)  # 0: no delta run below

        def job(conn: sqlite3.Connection) -> None:
            if small and conn.execute(_SQL.UPDATE_THREAD, advance).rowcount:
                # The common case in two statements: the thread exists and the step is new.
                conn.execute(_SQL.INSERT, row)
            elif not _insert_checked(conn, row, meta, now):
                return  # an identical retry
            if keep_last is not None:
                removed = conn.execute(
                    _SQL.KEEP_LAST, (row.thread_id, row.thread_id, keep_last)
                ).rowcount
                if removed:
                    conn.execute(_SQL.PRUNE_COUNT, (removed, removed, row.thread_id))

        await self._write(job, thread_id=row.thread_id, step=row.step)

    async def fork(self, thread_id: str, at_seq: int, *, new_thread_id: str | None = None) -> str:
        self._usable()
        check_thread_id(thread_id)
        check_step(at_seq, "at_seq")
        target = str(uuid.uuid4()) if new_thread_id is None else check_thread_id(new_thread_id)
        now = format_time(datetime.now(UTC))

        def job(conn: sqlite3.Connection) -> str:
            lineage = conn.execute(_SQL.LINEAGE, (target,)).fetchone()
            if lineage is not None:
                if tuple(lineage) == (thread_id, at_seq):
                    return target  # the same fork, asked again: idempotent
                raise ThreadExists(
                    f"cannot fork into {target!r}: the thread exists", thread_id=target
                )
            top = _full_row(conn, thread_id, at_seq)
            if top is None:
                raise CheckpointNotFound(
                    f"cannot fork: no checkpoint at step {at_seq} in thread {thread_id!r}",
                    thread_id=thread_id,
                    step=at_seq,
                )
            copied = conn.execute(_SQL.FORK_ROWS, (target, thread_id, at_seq)).rowcount
            conn.execute(_SQL.INSERT, EncodedCheckpoint(target, at_seq, *top))
            run = 0
            for (encoding,) in conn.execute(_SQL.RUN_BELOW, (thread_id, at_seq, MAX_RUN + 1)):
                if encoding != 1:
                    break
                run += 1
            conn.execute(
                _SQL.FORK_THREAD,
                (target, now, now, at_seq, copied + 1, thread_id, at_seq, run, thread_id),
            )
            return target

        return await self._write(job, thread_id=thread_id, step=at_seq)

    async def delete_thread(self, thread_id: str) -> bool:
        self._usable()
        check_thread_id(thread_id)

        def job(conn: sqlite3.Connection) -> bool:
            conn.execute(_SQL.DELETE_ROWS, (thread_id,))
            return bool(conn.execute(_SQL.DELETE_THREAD, (thread_id,)).rowcount)

        return await self._write(job, thread_id=thread_id)

    async def set_thread_metadata(self, thread_id: str, metadata: Mapping[str, Any]) -> None:
        self._usable()
        check_thread_id(thread_id)
        text = self._codec.encode_metadata(metadata, thread_id=thread_id)

        def job(conn: sqlite3.Connection) -> None:
            if not conn.execute(_SQL.SET_THREAD_METADATA, (text, thread_id)).rowcount:
                raise CheckpointNotFound("no such thread", thread_id=thread_id)

        await self._write(job, thread_id=thread_id)

    async def prune(
        self,
        thread_id: str | None = None,
        *,
        keep_last: int | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        self._usable()
        tid, keep, age = check_prune(thread_id, keep_last, older_than, dry_run)
        cutoff = "~" if age is None else format_time(datetime.now(UTC) - age)
        keep_n = keep if keep is not None else 1
        ids = [tid] if tid is not None else await self._thread_ids()
        touched = removed = freed = 0
        for start in range(0, len(ids), _PRUNE_CHUNK):
            chunk = ids[start : start + _PRUNE_CHUNK]

            def job(conn: sqlite3.Connection, chunk: list[str] = chunk) -> list[tuple[int, int]]:
                out = []
                for one in chunk:
                    latest = conn.execute(_SQL.THREAD_LATEST, (one,)).fetchone()
                    if latest is None:
                        continue
                    out.append(_prune_thread(conn, one, latest[0], keep_n, cutoff, dry_run=dry_run))
                return out

            for count, size in await self._write(job, thread_id=tid):
                if count:
                    touched += 1
                    removed += count
                    freed += size
        return PruneReport(
            dry_run=dry_run, threads_touched=touched, checkpoints_removed=removed, bytes_freed=freed
        )

    async def restore_thread(self, info: ThreadInfo, checkpoints: Sequence[Checkpoint[S]]) -> None:
        self._usable()
        thread_id = check_restore(info, checkpoints)
        rows = [self._codec.encode(cp) for cp in checkpoints]
        meta = self._codec.encode_metadata(info.metadata, thread_id=thread_id)
        record = (
            thread_id,
            format_time(info.created_at),
            format_time(info.updated_at),
            info.latest_step,
            len(rows),
            info.parent_thread_id,
            info.parent_step,
            meta,
        )

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(_SQL.THREAD_LATEST, (thread_id,)).fetchone() is not None:
                raise ThreadExists("cannot restore: the thread exists", thread_id=thread_id)
            conn.execute(_SQL.RESTORE_THREAD, record)
            conn.executemany(_SQL.INSERT, rows)

        await self._write(job, thread_id=thread_id)

    async def _thread_ids(self) -> list[str]:
        return [r[0] for r in await self._read(_fetchall, _SQL.ALL_THREAD_IDS, ())]

    async def delete_threads(self, *, inactive_for: timedelta) -> list[str]:
        self._usable()
        cutoff = format_time(datetime.now(UTC) - check_inactive_for(inactive_for))

        def job(conn: sqlite3.Connection) -> list[str]:
            gone = [r[0] for r in conn.execute(_SQL.INACTIVE, (cutoff,))]
            for thread_id in gone:
                conn.execute(_SQL.DELETE_ROWS, (thread_id,))
                conn.execute(_SQL.DELETE_THREAD, (thread_id,))
            return gone

        return await self._write(job)

    # --- reads ------------------------------------------------------------------------------

    async def load(self, thread_id: str) -> Checkpoint[S] | None:
        self._usable()
        check_thread_id(thread_id)
        row = await self._read(_latest_row, thread_id, thread_id=thread_id)
        if row is None:
            return None
        return self._codec.decode(EncodedCheckpoint(thread_id, *row), path=self._opt.path)

    async def get(self, thread_id: str, step: int) -> Checkpoint[S] | None:
        self._usable()
        check_thread_id(thread_id)
        check_step(step)
        row = await self._read(_full_row, thread_id, step, thread_id=thread_id, step=step)
        if row is None:
            return None
        return self._codec.decode(EncodedCheckpoint(thread_id, step, *row), path=self._opt.path)

    async def get_raw(self, thread_id: str, step: int) -> str | bytes | None:
        """The stored state exactly as the file holds it, undecoded (for forensics)."""
        self._usable()
        check_thread_id(thread_id)
        check_step(step)
        row = await self._read(
            _fetchone, _SQL.RAW_STATE, (thread_id, step), thread_id=thread_id, step=step
        )
        if row is None:
            return None
        value = row[0]
        return value if isinstance(value, str | bytes) else repr(value)

    async def list_checkpoints(
        self,
        thread_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        filter: MetadataFilter | None = None,
    ) -> list[CheckpointMetadata]:
        self._usable()
        check_thread_id(thread_id)
        lo, hi, n = check_bounds(after, before, limit)
        sql, params = _page(
            _SQL.HISTORY,
            [thread_id],
            [("c.step > ?", lo), ("c.step < ?", hi)],
            filter,
            "c.metadata",
            "c.step DESC" if newest_first else "c.step",
            n,
        )
        return await self._read(_history, sql, params, thread_id=thread_id)

    async def list_threads(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        filter: MetadataFilter | None = None,
    ) -> list[ThreadInfo]:
        self._usable()
        n = None if limit is None else check_limit(limit)
        cursor = None if after is None else check_thread_id(after)
        sql, params = _page(
            _SQL.THREADS + " AS t WHERE 1",
            [],
            [("t.thread_id > ?", cursor)],
            filter,
            "t.metadata",
            "t.thread_id",
            n,
        )
        return await self._read(_threads, sql, params)

    async def thread_info(self, thread_id: str) -> ThreadInfo | None:
        self._usable()
        check_thread_id(thread_id)
        found = await self._read(_threads, _SQL.THREAD, (thread_id,), thread_id=thread_id)
        return found[0] if found else None

    async def list_forks(self, thread_id: str) -> list[ThreadInfo]:
        self._usable()
        check_thread_id(thread_id)
        return await self._read(_threads, _SQL.FORKS, (thread_id,), thread_id=thread_id)

    # --- maintenance ------------------------------------------------------------------------

    async def vacuum(self) -> int:
        """Give free pages back to the file system; returns the bytes the file shrank by.

        Checkpoints and truncates the WAL, then vacuums: incrementally on
        databases created with ``auto_vacuum=INCREMENTAL`` (every database
        forkpoint creates), else a full ``VACUUM``.
        """
        writer = self._writable()
        path = self._opt.path

        def work(conn: sqlite3.Connection) -> int:
            before = _file_size(path)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
            if mode == 2:
                # executescript steps the pragma to completion; execute() would step it
                # once, and each step frees a single page.
                conn.executescript("PRAGMA incremental_vacuum")
            else:
                conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return max(0, before - _file_size(path))

        # Queued behind the group-commit writer on the same thread, so no batch is split.
        try:
            return await _on_worker(writer, work)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise _translate(exc, path=path) from exc

    async def backup(self, dest: str | os.PathLike[str]) -> None:
        """Copy the live database to ``dest`` with SQLite's online backup API.

        Writers keep going meanwhile; the copy is a consistent snapshot and
        opens as a forkpoint database. Never copy a live file with ``cp``.
        """
        self._usable()
        target = os.path.abspath(os.fspath(dest))  # noqa: ASYNC240 - string work, no I/O wait

        def work(conn: sqlite3.Connection) -> None:
            if os.path.exists(target) and os.path.getsize(target) > 0:
                raise InvalidInput("backup destination exists and is not empty", path=target)
            if not os.path.exists(target):
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            out = sqlite3.connect(target)
            try:
                conn.backup(out)
            finally:
                out.close()

        await self._read(work)

    async def storage_stats(self) -> StorageStats:
        """What the file holds, per thread, from one read: no state is decoded or copied out."""

        def work(conn: sqlite3.Connection) -> StorageStats:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            return StorageStats(
                page_size=page_size,
                page_count=conn.execute("PRAGMA page_count").fetchone()[0],
                freelist_count=conn.execute("PRAGMA freelist_count").fetchone()[0],
                stored_bytes={t: int(n) for t, n in conn.execute(_SQL.STORED_BYTES)},
                latest_bytes={t: int(n) for t, n in conn.execute(_SQL.LATEST_BYTES)},
            )

        return await self._read(work)

    async def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check``: ``["ok"]`` for a healthy file."""
        rows = await self._read(_fetchall, "PRAGMA integrity_check", ())
        return [str(r[0]) for r in rows]


def _prune_thread(
    conn: sqlite3.Connection,
    thread_id: str,
    latest: int,
    keep: int,
    cutoff: str,
    *,
    dry_run: bool = False,
) -> tuple[int, int]:
    """Remove (or count) one thread's prunable rows; (rows, bytes)."""
    params = (thread_id, latest, thread_id, keep - 1, thread_id, cutoff, latest)
    count, size = conn.execute(_SQL.PRUNE_SIZE, params).fetchone()
    if count and not dry_run:
        conn.execute(_SQL.PRUNE_DELETE, params)
        conn.execute(_SQL.PRUNE_COUNT, (count, count, thread_id))
    return int(count), int(size)


async def _on_worker(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` as one call on aiosqlite's worker thread.

    aiosqlite has no public API for this; ``_execute`` has been stable from
    0.17 to 0.22 (pinned in pyproject) and ``tests/sqlite/test_worker.py``
    guards it. One queued call is one thread hop, however many statements.
    """
    return await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call,no-any-return]


_Row = tuple[str, str, str, str, str, int]  # node, created_at, queue, metadata, full state, version


def _full_row(conn: sqlite3.Connection, thread_id: str, step: int) -> _Row | None:
    """The stored checkpoint at ``step`` with its full state text, rebuilding a delta row.

    Reads the row and, for a delta, the newer rows up to the next full one
    (at most ``MAX_RUN``); raises SerializationError if that chain is damaged.
    """
    row = conn.execute(_SQL.ROW, (thread_id, step)).fetchone()
    if row is None:
        return None
    node, created_at, queue, metadata, state, version, encoding = row
    if encoding == 0:
        return node, created_at, queue, metadata, state, version
    try:
        if encoding != 1 or not isinstance(state, str):
            raise ValueError(f"unknown storage encoding {encoding!r}")
        deltas = [state]
        for newer_encoding, text in conn.execute(_SQL.NEWER_STATES, (thread_id, step, MAX_RUN + 1)):
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


def _latest_row(conn: sqlite3.Connection, thread_id: str) -> tuple[int, *_Row] | None:
    """(step, *row) of the thread's latest checkpoint: always a full row, one read."""
    row = conn.execute(_SQL.LATEST_ROW, (thread_id,)).fetchone()
    if row is None:
        return None
    step, node, created_at, queue, metadata, state, version, encoding = row
    if encoding != 0:  # not written by forkpoint; rebuild rather than misread
        full = _full_row(conn, thread_id, step)
        return None if full is None else (step, *full)
    return step, node, created_at, queue, metadata, state, version


def _insert_checked(
    conn: sqlite3.Connection, row: EncodedCheckpoint, meta: str | None, now: str
) -> bool:
    """Store a checkpoint after reading its thread's latest step; False for an identical retry.

    Raises StepConflict, before writing anything, when the step is not after
    the latest and the stored checkpoint at that step differs.
    """
    latest = conn.execute(_SQL.THREAD_LATEST, (row.thread_id,)).fetchone()
    if latest is not None and row.step <= latest[0]:
        stored = _full_row(conn, row.thread_id, row.step)
        if stored is not None and EncodedCheckpoint(row.thread_id, row.step, *stored) == row:
            return False
        raise StepConflict(
            f"step {row.step} is not after the thread's latest step {latest[0]}",
            thread_id=row.thread_id,
            step=row.step,
        )
    conn.execute(_SQL.INSERT, row)
    if latest is None:
        conn.execute(_SQL.INSERT_THREAD, (row.thread_id, now, now, row.step, meta or "{}"))
    else:
        run = _previous_to_delta(conn, row.thread_id, latest[0], latest[1], row.state)
        conn.execute(_SQL.UPDATE_THREAD, (row.step, now, run, meta, row.thread_id, row.step))
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
    stored = conn.execute(_SQL.STORED_STATE, (thread_id, previous)).fetchone()
    if stored is None or stored[1] != 0 or not isinstance(stored[0], str):
        return 0
    delta = make_delta(stored[0], newest_state)
    if delta is None:
        return 0
    conn.execute(_SQL.TO_DELTA, (delta, thread_id, previous))
    return run + 1


R = TypeVar("R")


def _decoded(
    conn: sqlite3.Connection,
    sql: str,
    params: Any,
    decode: Callable[..., R],
    what: str,
    locate: Callable[[Any], tuple[str, int | None]],
) -> list[R]:
    """``decode(*row)`` for each row, run on the reader's thread while the cursor runs.

    Rows are fetched a chunk at a time (one C call per chunk, not one Python
    call per row) and each chunk's strings go as soon as its objects exist, so
    a long listing never holds every raw row and every object at once.
    """
    out = []
    cursor = conn.execute(sql, params)
    try:
        while rows := cursor.fetchmany(_CHUNK):
            for row in rows:
                try:
                    out.append(decode(*row))
                except (ValueError, TypeError) as exc:
                    thread_id, step = locate(row)
                    raise SerializationError(
                        f"stored {what} does not decode: {exc}", thread_id=thread_id, step=step
                    ) from exc
    finally:
        # An unfinished statement would keep its read snapshot, and so the WAL, for as long as
        # the error's traceback lives.
        cursor.close()
    return out


def _history(conn: sqlite3.Connection, sql: str, params: Any) -> list[CheckpointMetadata]:
    """A thread's listing rows (``params[0]`` is the thread id)."""
    return _decoded(
        conn,
        sql,
        params,
        checkpoint_metadata,
        "checkpoint metadata",
        lambda row: (params[0], row[0]),
    )


def _threads(conn: sqlite3.Connection, sql: str, params: Any) -> list[ThreadInfo]:
    """Thread records."""
    return _decoded(conn, sql, params, thread_info, "thread record", lambda row: (row[0], None))


def _fetchone(conn: sqlite3.Connection, sql: str, params: Any) -> Any:
    return conn.execute(sql, params).fetchone()


def _fetchall(conn: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
