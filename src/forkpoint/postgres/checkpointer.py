"""PostgresCheckpointer: the same checkpoints on a PostgreSQL server every worker can reach.

How it works, and why:

* **A save is one statement** when the previous step stays stored in full (every
  state under 2 KiB): a CTE checks the step, upserts the thread row and inserts
  the checkpoint — one round trip, one commit. A larger state first reads the
  previous latest row, computes its reverse delta (``forkpoint._delta``), and
  then runs one statement that rewrites that row as the delta only if it is
  still the thread's latest and unchanged (``xmin``); if another writer got
  there first, the save starts over and meets the step rule.
* **The step rule holds across machines.** The thread row is the lock: of two
  writers racing for one step, PostgreSQL serialises their upserts on it, the
  second finds ``latest_step`` already there and takes the checked path
  (identical retry → no-op, else ``StepConflict``). No explicit locks, so no
  deadlocks between savers.
* **Reads are one statement**: the latest row for ``load``; for ``get`` of a
  delta-stored step, the row and the newer ones up to the next full row.
* Errors, retries, cancellation and the pool live in ``_connect``; the schema and
  its migrations in ``_schema``; every statement in ``_sql``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Literal

import asyncpg

from .._delta import DELTA_MIN_CHARS, MAX_RUN, apply_deltas, make_delta
from ..base import (
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
from ..codec import EncodedCheckpoint, StateCodec, checkpoint_metadata, format_time, thread_info
from ..errors import (
    CheckpointerClosed,
    CheckpointError,
    CheckpointNotFound,
    ForkedProcess,
    InvalidInput,
    ReadOnlyDatabase,
    SerializationError,
    StepConflict,
    ThreadExists,
)
from ..models import Checkpoint, CheckpointMetadata, S, ThreadInfo, check_step, check_thread_id
from ._connect import Database, Settings, check_schema, check_url
from ._schema import ensure_schema
from ._sql import SQL, page

__all__ = ["DEFAULT_SCHEMA", "PostgresCheckpointer"]

DEFAULT_SCHEMA = "forkpoint"
_SAVE_ATTEMPTS = 16  # a large-state save that keeps losing its race to other writers
_PRUNE_CHUNK = 64  # threads per prune transaction, so other writers interleave

_Full = tuple[str, str, str, str, str]  # node, created_at, queue, metadata, full state


class _Opening(Generic[S]):
    """What :meth:`PostgresCheckpointer.open` returns: await it, or use ``async with``."""

    def __init__(self, opener: Callable[[], Awaitable[PostgresCheckpointer[S]]]) -> None:
        self._opener = opener
        self._opened: PostgresCheckpointer[S] | None = None

    def __await__(self) -> Generator[Any, None, PostgresCheckpointer[S]]:
        return self._opener().__await__()

    async def __aenter__(self) -> PostgresCheckpointer[S]:
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


def _check_node(row: EncodedCheckpoint) -> EncodedCheckpoint:
    """PostgreSQL text cannot hold U+0000; a node name with one is refused before any SQL.

    (States, queues and metadata are JSON text, where U+0000 is the escape
    ``\\u0000`` and round-trips; metadata refuses it everywhere for filters.)
    """
    if "\x00" in row.node:
        raise SerializationError(
            "node name holds U+0000 (NUL), which PostgreSQL cannot store",
            thread_id=row.thread_id,
            step=row.step,
        )
    return row


async def _chain(conn: asyncpg.Connection, thread_id: str, step: int) -> _Full | None:
    """The checkpoint at ``step`` with its full state, rebuilding a delta row (one statement)."""
    rows = await conn.fetch(SQL.CHAIN, thread_id, step, MAX_RUN + 2)
    if not rows or rows[0][0] != step:
        return None
    _, encoding, state, node, created_at, queue, metadata = rows[0]
    if encoding == 0:
        return node, created_at, queue, metadata, state
    try:
        if encoding != 1:
            raise ValueError(f"unknown storage encoding {encoding!r}")
        deltas = [r[2] for r in rows]
        if rows[-1][1] != 0:
            raise ValueError("the delta chain has no full state to start from")
        if any(r[1] != 1 for r in rows[1:-1]):
            raise ValueError("the delta chain holds an unknown encoding")
        full = deltas.pop()
        deltas.reverse()
        return node, created_at, queue, metadata, apply_deltas(full, deltas)
    except ValueError as exc:
        raise SerializationError(
            f"stored state cannot be rebuilt: {exc}", thread_id=thread_id, step=step
        ) from exc


class PostgresCheckpointer(HistoryCheckpointer[S]):
    """Checkpoints in PostgreSQL, shared by any number of processes on any number of machines.

    Open with ``await PostgresCheckpointer.open("postgresql://…", State)`` or
    ``async with PostgresCheckpointer.open(url, State) as cp``.
    """

    def __init__(
        self, settings: Settings, codec: StateCodec[S], db: Database, keep_last: int | None
    ) -> None:
        """Internal: use :meth:`open`."""
        self._settings = settings
        self._codec = codec
        self._db = db
        self._keep_last = keep_last
        self._pid = os.getpid()
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        state_type: type[S],
        *,
        schema: str = DEFAULT_SCHEMA,
        durability: Literal["full", "normal"] = "full",
        migrate: bool = True,
        read_only: bool = False,
        max_state_bytes: int | None = None,
        keep_last: int | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = None,
    ) -> _Opening[S]:
        """Connect to the server at ``url``, creating or upgrading forkpoint's tables if needed.

        ``schema``: where forkpoint's tables live (created if missing; other
        schemas are never touched). ``durability="full"`` (default) commits with
        ``synchronous_commit=on``: a returned save survives a crash of the
        server or its machine. ``"normal"`` uses ``synchronous_commit=off``: a
        server crash may lose the last fraction of a second of saves, never
        corrupt anything. ``migrate``, ``read_only``, ``max_state_bytes`` and
        ``keep_last`` as for :class:`~forkpoint.SqliteCheckpointer`.
        ``pool_size``: at most this many connections (1 to 1000).
        ``statement_timeout``: seconds after which the server cancels a statement
        (``DatabaseLocked``; nothing is written). Errors: ``InvalidInput`` for a
        malformed URL, ``DatabaseUnavailable`` when the server cannot be reached
        or refuses the login or the database, ``SchemaVersionError`` for a
        newer schema.
        """

        async def opener() -> PostgresCheckpointer[S]:
            return await cls._open(
                url,
                state_type,
                schema=schema,
                durability=durability,
                migrate=migrate,
                read_only=read_only,
                max_state_bytes=max_state_bytes,
                keep_last=keep_last,
                pool_size=pool_size,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
            )

        return _Opening(opener)

    @classmethod
    async def _open(
        cls,
        url: str,
        state_type: type[S],
        *,
        schema: str,
        durability: Literal["full", "normal"],
        migrate: bool,
        read_only: bool,
        max_state_bytes: int | None,
        keep_last: int | None,
        pool_size: int,
        connect_timeout: float,
        statement_timeout: float | None,
    ) -> PostgresCheckpointer[S]:
        codec = StateCodec(state_type, max_state_bytes=max_state_bytes)
        if durability not in ("full", "normal"):
            raise InvalidInput(f"durability must be 'full' or 'normal', not {durability!r}")
        for name, flag in (("migrate", migrate), ("read_only", read_only)):
            if not isinstance(flag, bool):
                raise InvalidInput(f"{name} must be a bool")
        if type(pool_size) is not int or not 1 <= pool_size <= 1000:
            raise InvalidInput(f"pool_size must be an int in [1, 1000], not {pool_size!r}")
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("statement_timeout", statement_timeout),
        ):
            if seconds is None and name == "statement_timeout":
                continue
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 < seconds <= 86400
            ):
                raise InvalidInput(f"{name} must be seconds in (0, 86400], not {seconds!r}")
        settings = Settings(
            url=check_url(url),
            schema=check_schema(schema),
            durability=durability,
            read_only=read_only,
            pool_size=pool_size,
            connect_timeout=float(connect_timeout),
            statement_timeout=None if statement_timeout is None else float(statement_timeout),
        )
        keep = check_keep_last(keep_last)
        db = await Database.connect(settings)
        try:

            async def prepare(conn: asyncpg.Connection) -> None:
                await ensure_schema(conn, settings.schema, migrate=migrate, read_only=read_only)

            await db.run(prepare)
        except CheckpointError as exc:
            await db.close()
            if exc.path is None:
                exc.path = settings.shown
                exc.args = (exc._render(),)
            raise
        except BaseException:
            await db.close()
            raise
        return cls(settings, codec, db, keep)

    async def close(self) -> None:
        """Wait for work already started, then close the pool; later calls raise."""
        if self._closed:
            return
        self._closed = True
        if self._pid != os.getpid():
            return  # the pool's sockets belong to the parent process; leave them be
        await self._db.close()

    @property
    def url(self) -> str:
        """The server's URL, without its password."""
        return self._settings.shown

    @property
    def schema(self) -> str:
        """The schema holding forkpoint's tables."""
        return self._settings.schema

    @property
    def state_type(self) -> type[S]:
        """The state model this checkpointer stores."""
        return self._codec.state_type

    def _usable(self) -> None:
        """ForkedProcess or CheckpointerClosed, before any argument is looked at."""
        if self._pid != os.getpid():
            raise ForkedProcess(
                "this checkpointer was opened in another process (before os.fork()); "
                "open a new one in this process",
                path=self._settings.shown,
            )
        if self._closed:
            raise CheckpointerClosed("the checkpointer is closed", path=self._settings.shown)

    def _writable(self, thread_id: str | None = None, step: int | None = None) -> None:
        self._usable()
        if self._settings.read_only:
            raise ReadOnlyDatabase(
                "the checkpointer was opened read-only",
                path=self._settings.shown,
                thread_id=thread_id,
                step=step,
            )

    async def _run(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[Any]],
        *,
        thread_id: str | None = None,
        step: int | None = None,
        unique: type[CheckpointError] = StepConflict,
    ) -> Any:
        try:
            return await self._db.run(work, thread_id=thread_id, step=step, unique=unique)
        except CheckpointError as exc:
            if exc.path is None:
                exc.path = self._settings.shown
                exc.args = (exc._render(),)
            raise

    # --- writes -----------------------------------------------------------------------------

    async def save(
        self, checkpoint: Checkpoint[S], *, thread_metadata: Mapping[str, Any] | None = None
    ) -> None:
        self._usable()
        row, meta, now = self._codec.encode_save(checkpoint, thread_metadata)
        self._writable(row.thread_id, row.step)
        _check_node(row)
        params = (*row, now, meta)
        keep = self._keep_last
        small = len(row.state) < DELTA_MIN_CHARS

        async def store(conn: asyncpg.Connection) -> bool:
            """One attempt: True stored, False an identical retry; StepConflict otherwise."""
            for _ in range(_SAVE_ATTEMPTS):
                previous = None if small else await conn.fetchrow(SQL.PREVIOUS, row.thread_id)
                delta = None
                if previous is not None:
                    latest, run, encoding, state, xmin = previous
                    if row.step <= latest:
                        return await self._refuse_or_retry(conn, row, latest)
                    if run < MAX_RUN and encoding == 0 and isinstance(state, str):
                        delta = make_delta(state, row.state)
                if delta is None:
                    if await conn.fetchval(SQL.SAVE, *params) is not None:
                        return True
                    if small or previous is None:
                        return await self._refuse_or_retry(conn, row, None)
                elif await conn.fetchval(SQL.SAVE_DELTA, *params, latest, delta, xmin) is not None:
                    return True
                # Another writer moved the thread between the read and the write: read again.
            return await self._refuse_or_retry(conn, row, None)

        async def work(conn: asyncpg.Connection) -> None:
            if keep is None:
                await store(conn)
                return
            async with conn.transaction():
                if await store(conn):
                    await conn.execute(SQL.KEEP_LAST, row.thread_id, keep)

        await self._run(work, thread_id=row.thread_id, step=row.step)

    async def _refuse_or_retry(
        self, conn: asyncpg.Connection, row: EncodedCheckpoint, latest: int | None
    ) -> bool:
        """The step is not after the latest: False for an identical retry, else StepConflict."""
        stored = await _chain(conn, row.thread_id, row.step)
        if stored is not None and EncodedCheckpoint(row.thread_id, row.step, *stored) == row:
            return False
        if latest is None:
            latest = await conn.fetchval(
                "SELECT latest_step FROM threads WHERE thread_id = $1", row.thread_id
            )
        raise StepConflict(
            f"step {row.step} is not after the thread's latest step {latest}",
            thread_id=row.thread_id,
            step=row.step,
        )

    async def fork(self, thread_id: str, at_seq: int, *, new_thread_id: str | None = None) -> str:
        self._usable()
        check_thread_id(thread_id)
        check_step(at_seq, "at_seq")
        target = str(uuid.uuid4()) if new_thread_id is None else check_thread_id(new_thread_id)
        self._writable(thread_id, at_seq)
        now = format_time(datetime.now(UTC))

        async def work(conn: asyncpg.Connection) -> str:
            async with conn.transaction():
                lineage = await conn.fetchrow(SQL.LINEAGE, target)
                if lineage is not None:
                    if tuple(lineage) == (thread_id, at_seq):
                        return target  # the same fork, asked again: idempotent
                    raise ThreadExists(
                        f"cannot fork into {target!r}: the thread exists", thread_id=target
                    )
                top = await _chain(conn, thread_id, at_seq)
                if top is None:
                    raise CheckpointNotFound(
                        f"cannot fork: no checkpoint at step {at_seq} in thread {thread_id!r}",
                        thread_id=thread_id,
                        step=at_seq,
                    )
                status = await conn.execute(SQL.FORK_ROWS, target, thread_id, at_seq)
                copied = int(status.rsplit(" ", 1)[1])
                await conn.execute(SQL.INSERT, *EncodedCheckpoint(target, at_seq, *top))
                run = 0
                for (encoding,) in await conn.fetch(SQL.RUN_BELOW, thread_id, at_seq, MAX_RUN + 1):
                    if encoding != 1:
                        break
                    run += 1
                await conn.execute(SQL.FORK_THREAD, target, now, at_seq, copied + 1, thread_id, run)
                return target

        result: str = await self._run(work, thread_id=thread_id, step=at_seq, unique=ThreadExists)
        return result

    async def delete_thread(self, thread_id: str) -> bool:
        self._usable()
        check_thread_id(thread_id)
        self._writable(thread_id)

        async def work(conn: asyncpg.Connection) -> bool:
            return await conn.fetchval(SQL.DELETE_THREAD, thread_id) is not None

        return bool(await self._run(work, thread_id=thread_id))

    async def set_thread_metadata(self, thread_id: str, metadata: Mapping[str, Any]) -> None:
        self._usable()
        check_thread_id(thread_id)
        text = self._codec.encode_metadata(metadata, thread_id=thread_id)
        self._writable(thread_id)

        async def work(conn: asyncpg.Connection) -> None:
            if await conn.fetchval(SQL.SET_THREAD_METADATA, thread_id, text) is None:
                raise CheckpointNotFound("no such thread", thread_id=thread_id)

        await self._run(work, thread_id=thread_id)

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
        if not dry_run:
            self._writable(tid)
        cutoff = None if age is None else format_time(datetime.now(UTC) - age)
        keep_n = keep if keep is not None else 1
        ids = [tid] if tid is not None else await self._thread_ids()
        touched = removed = freed = 0
        for start in range(0, len(ids), _PRUNE_CHUNK):
            chunk = ids[start : start + _PRUNE_CHUNK]

            async def work(
                conn: asyncpg.Connection, chunk: list[str] = chunk
            ) -> list[tuple[int, int]]:
                out = []
                async with conn.transaction():
                    for one, latest in await conn.fetch(SQL.THREAD_LATEST, chunk):
                        args = (one, latest, keep_n - 1, cutoff)
                        count, size = await conn.fetchrow(SQL.PRUNE_SIZE, *args)
                        if count and not dry_run:
                            await conn.execute(SQL.PRUNE_DELETE, *args)
                            await conn.execute(SQL.PRUNE_COUNT, one, count)
                        out.append((int(count), int(size)))
                return out

            for count, size in await self._run(work, thread_id=tid):
                if count:
                    touched += 1
                    removed += count
                    freed += size
        return PruneReport(
            dry_run=dry_run, threads_touched=touched, checkpoints_removed=removed, bytes_freed=freed
        )

    async def delete_threads(self, *, inactive_for: timedelta) -> list[str]:
        self._usable()
        cutoff = format_time(datetime.now(UTC) - check_inactive_for(inactive_for))
        self._writable()

        async def work(conn: asyncpg.Connection) -> list[str]:
            return [r[0] for r in await conn.fetch(SQL.DELETE_INACTIVE, cutoff)]

        result: list[str] = await self._run(work)
        return result

    async def restore_thread(self, info: ThreadInfo, checkpoints: Sequence[Checkpoint[S]]) -> None:
        self._usable()
        thread_id = check_restore(info, checkpoints)
        rows = [_check_node(self._codec.encode(cp)) for cp in checkpoints]
        meta = self._codec.encode_metadata(info.metadata, thread_id=thread_id)
        self._writable(thread_id)
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

        async def work(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                if await conn.fetchval(SQL.THREAD_EXISTS, thread_id) is not None:
                    raise ThreadExists("cannot restore: the thread exists", thread_id=thread_id)
                await conn.execute(SQL.RESTORE_THREAD, *record)
                await conn.executemany(SQL.INSERT, rows)

        await self._run(work, thread_id=thread_id, unique=ThreadExists)

    # --- reads ------------------------------------------------------------------------------

    async def _thread_ids(self) -> list[str]:
        async def work(conn: asyncpg.Connection) -> list[str]:
            return [r[0] for r in await conn.fetch(SQL.ALL_THREAD_IDS)]

        result: list[str] = await self._run(work)
        return result

    async def load(self, thread_id: str) -> Checkpoint[S] | None:
        self._usable()
        check_thread_id(thread_id)

        async def work(conn: asyncpg.Connection) -> tuple[int, *_Full] | None:
            found = await conn.fetchrow(SQL.LATEST, thread_id)
            if found is None:
                return None
            step, encoding, state, node, created_at, queue, metadata = found
            if encoding == 0:
                return step, node, created_at, queue, metadata, state
            full = await _chain(conn, thread_id, step)  # not written by forkpoint: rebuild
            return None if full is None else (step, *full)

        row = await self._run(work, thread_id=thread_id)
        if row is None:
            return None
        return self._codec.decode(EncodedCheckpoint(thread_id, *row), path=self._settings.shown)

    async def get(self, thread_id: str, step: int) -> Checkpoint[S] | None:
        self._usable()
        check_thread_id(thread_id)
        check_step(step)

        async def work(conn: asyncpg.Connection) -> _Full | None:
            return await _chain(conn, thread_id, step)

        row = await self._run(work, thread_id=thread_id, step=step)
        if row is None:
            return None
        return self._codec.decode(
            EncodedCheckpoint(thread_id, step, *row), path=self._settings.shown
        )

    async def get_raw(self, thread_id: str, step: int) -> str | None:
        """The stored state exactly as the table holds it, undecoded (for forensics)."""
        self._usable()
        check_thread_id(thread_id)
        check_step(step)

        async def work(conn: asyncpg.Connection) -> str | None:
            value = await conn.fetchval(SQL.RAW_STATE, thread_id, step)
            return None if value is None else str(value)

        result: str | None = await self._run(work, thread_id=thread_id, step=step)
        return result

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
        sql, params = page(
            SQL.HISTORY,
            [thread_id],
            [("c.step > {}", lo), ("c.step < {}", hi)],
            None if filter is None else check_filter(filter),
            "c.metadata",
            "c.step DESC" if newest_first else "c.step",
            n,
        )

        async def work(conn: asyncpg.Connection) -> list[CheckpointMetadata]:
            out = []
            for row in await conn.fetch(sql, *params):
                try:
                    out.append(checkpoint_metadata(*row))
                except (ValueError, TypeError) as exc:
                    raise SerializationError(
                        f"stored checkpoint metadata does not decode: {exc}",
                        thread_id=thread_id,
                        step=row[0],
                    ) from exc
            return out

        result: list[CheckpointMetadata] = await self._run(work, thread_id=thread_id)
        return result

    async def _threads(
        self, sql: str, params: Sequence[Any], thread_id: str | None = None
    ) -> list[ThreadInfo]:
        async def work(conn: asyncpg.Connection) -> list[ThreadInfo]:
            out = []
            for row in await conn.fetch(sql, *params):
                try:
                    out.append(thread_info(*row))
                except (ValueError, TypeError) as exc:
                    raise SerializationError(
                        f"stored thread record does not decode: {exc}", thread_id=row[0]
                    ) from exc
            return out

        result: list[ThreadInfo] = await self._run(work, thread_id=thread_id)
        return result

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
        sql, params = page(
            SQL.THREADS,
            [],
            [("t.thread_id > {}", cursor)],
            None if filter is None else check_filter(filter),
            "t.metadata",
            "t.thread_id",
            n,
        )
        return await self._threads(sql, params)

    async def thread_info(self, thread_id: str) -> ThreadInfo | None:
        self._usable()
        check_thread_id(thread_id)
        found = await self._threads(SQL.THREAD, (thread_id,), thread_id)
        return found[0] if found else None

    async def list_forks(self, thread_id: str) -> list[ThreadInfo]:
        self._usable()
        check_thread_id(thread_id)
        return await self._threads(SQL.FORKS, (thread_id,), thread_id)
