"""PostgresCheckpointer: the same checkpoints on a PostgreSQL server every worker can reach.

The contract (argument checks, encoding, decoding, the closed state) is the
base class's; this class implements its storage hooks. How, and why:

* **A save is one statement** when the state is stored in full (every state
  under 2 KiB): a CTE checks the step, upserts the thread row and inserts the
  checkpoint — one round trip, one commit. A larger state first reads the
  thread's latest state (its full row and the forward deltas above it), then
  inserts the new step as a forward delta against it (``_rows`` says why and
  when a full row starts instead) only if the thread row is still the version
  read (``xmin``); if another writer got there first, the save starts over and
  meets the step rule. A save never rewrites a stored row.
* **The step rule holds across machines.** The thread row is the lock: of two
  writers racing for one step, PostgreSQL serialises their upserts on it, the
  second finds ``latest_step`` already there and takes the checked path
  (identical retry → no-op, else ``StepConflict``). No explicit locks, so no
  deadlocks between savers.
* **Reads are one statement** per row: the latest row for ``load``; for a
  delta-stored step (``get``, or ``load`` when the latest is a delta), the row
  and the ones it is rebuilt from, up or down to the nearest full row.
* **Fork** is one transaction whose copy is one ``INSERT … SELECT``.
* Errors, retries, cancellation and the pool live in ``_connect``; group commit in
  ``_group``; the row jobs (save, rebuild) in ``_rows``; the schema and its
  migrations in ``_schema``; every statement in ``_sql``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

import asyncpg

from .._delta import DELTA_MIN_CHARS
from ..base import CheckpointRow, HistoryCheckpointer, R, ThreadRecord, ThreadRow
from ..codec import EncodedCheckpoint
from ..errors import (
    CheckpointError,
    CheckpointNotFound,
    ForkedProcess,
    InvalidInput,
    ReadOnlyDatabase,
    StepConflict,
    ThreadExists,
)
from ..models import MAX_STEP, S
from ..opening import Opening
from . import _rows as jobs
from ._connect import Database, Settings, check_schema, check_url
from ._group import GroupCommit
from ._schema import ensure_schema
from ._sql import SQL, page

__all__ = ["DEFAULT_SCHEMA", "PostgresCheckpointer"]

DEFAULT_SCHEMA = "forkpoint"
_PRUNE_CHUNK = 64  # threads per prune transaction, so other writers interleave
_STATES_PAGE = 64  # rows per read of iter_states


class PostgresCheckpointer(HistoryCheckpointer[S]):
    """Checkpoints in PostgreSQL, shared by any number of processes on any number of machines.

    Open with ``await PostgresCheckpointer.open("postgresql://…", State)`` or
    ``async with PostgresCheckpointer.open(url, State) as cp``.
    """

    _settings: Settings
    _db: Database
    _group: GroupCommit

    # --- lifecycle ----------------------------------------------------------------------------

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
    ) -> Opening[PostgresCheckpointer[S]]:
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
        newer schema, ``NotAForkpointDatabase`` for a schema holding other tables.
        """

        async def opener() -> PostgresCheckpointer[S]:
            self = cls(state_type, max_state_bytes=max_state_bytes, keep_last=keep_last)
            await self._connect(
                url,
                schema=schema,
                durability=durability,
                migrate=migrate,
                read_only=read_only,
                pool_size=pool_size,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
            )
            return self

        return Opening(opener)

    async def _connect(
        self,
        url: str,
        *,
        schema: str,
        durability: Literal["full", "normal"],
        migrate: bool,
        read_only: bool,
        pool_size: int,
        connect_timeout: float,
        statement_timeout: float | None,
    ) -> None:
        if durability not in ("full", "normal"):
            raise InvalidInput(f"durability must be 'full' or 'normal', not {durability!r}")
        for name, flag in (("migrate", migrate), ("read_only", read_only)):
            if not isinstance(flag, bool):
                raise InvalidInput(f"{name} must be a bool")
        if type(pool_size) is not int or not 1 <= pool_size <= 1000:
            raise InvalidInput(f"pool_size must be an int in [1, 1000], not {pool_size!r}")
        timeouts = [("connect_timeout", connect_timeout)]
        if statement_timeout is not None:
            timeouts.append(("statement_timeout", statement_timeout))
        for name, seconds in timeouts:
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 < seconds <= 86400
            ):
                raise InvalidInput(f"{name} must be seconds in (0, 86400], not {seconds!r}")
        self._settings = Settings(
            url=check_url(url),
            schema=check_schema(schema),
            durability=durability,
            read_only=read_only,
            pool_size=pool_size,
            connect_timeout=float(connect_timeout),
            statement_timeout=None if statement_timeout is None else float(statement_timeout),
        )
        self._pid = os.getpid()
        self._db = await Database.connect(self._settings)
        self._group = GroupCommit(self._db, jobs.store)

        async def prepare(conn: asyncpg.Connection) -> None:
            await ensure_schema(conn, schema, migrate=migrate, read_only=read_only)

        try:
            await self._run(prepare)
        except BaseException:
            await self._db.close()
            raise

    @property
    def url(self) -> str:
        """The server's URL, without its password."""
        return self._settings.shown

    @property
    def schema(self) -> str:
        """The schema holding forkpoint's tables."""
        return self._settings.schema

    @property
    def _error_path(self) -> str | None:
        return self._settings.shown

    def _check_backend(self) -> None:
        if self._pid != os.getpid():
            raise ForkedProcess(
                "this checkpointer was opened in another process (before os.fork()); "
                "open a new one in this process",
                path=self._settings.shown,
            )

    async def _close(self) -> None:
        if self._pid == os.getpid():  # else the pool's sockets are the parent's: leave them be
            await self._db.close()

    # --- running work -------------------------------------------------------------------------

    def _writable(self, thread_id: str | None = None, step: int | None = None) -> None:
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
        read: bool = False,
    ) -> Any:
        """``work`` through the pool's retries and typed errors, naming this database.

        ``read``: ``work`` writes nothing, so it runs unshielded (``Database.direct``).
        """
        try:
            if read:
                return await self._db.direct(work, thread_id=thread_id, step=step)
            return await self._db.run(work, thread_id=thread_id, step=step, unique=unique)
        except CheckpointError as exc:
            raise self._located(exc) from exc.__cause__

    def _located(self, exc: CheckpointError) -> CheckpointError:
        """``exc`` naming this database (errors raised inside the work do not know it)."""
        if exc.path is None:
            exc.path = self._settings.shown
            exc.args = (exc._render(),)
        return exc

    async def _fetch(
        self, sql: str, *args: Any, thread_id: str | None = None, read: bool = True
    ) -> list[Any]:
        """The rows of one statement (a read unless ``read=False``), as asyncpg Records.

        Records unpack like the tuples the hooks return.
        """

        async def work(conn: asyncpg.Connection) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

        rows: list[Any] = await self._run(work, thread_id=thread_id, read=read)
        return rows

    # --- storage hooks: writes -----------------------------------------------------------------

    async def _store(
        self, row: EncodedCheckpoint, thread_metadata: str | None, now: str, keep_last: int | None
    ) -> None:
        self._writable(row.thread_id, row.step)
        if keep_last is None or len(row.state) < DELTA_MIN_CHARS:
            try:
                await self._group.save(row, thread_metadata, now, keep_last)
            except CheckpointError as exc:
                raise self._located(exc) from exc.__cause__
            return

        async def work(conn: asyncpg.Connection) -> None:
            await jobs.store(conn, row, thread_metadata, now, keep_last)

        await self._run(work, thread_id=row.thread_id, step=row.step)

    async def _copy_prefix(self, thread_id: str, at_step: int, target: str, now: str) -> str:
        self._writable(thread_id, at_step)

        async def work(conn: asyncpg.Connection) -> str:
            async with conn.transaction():
                lineage = await conn.fetchrow(SQL.LINEAGE, target)
                if lineage is not None:
                    if tuple(lineage) == (thread_id, at_step):
                        return target  # the same fork, asked again: idempotent
                    raise ThreadExists(
                        f"cannot fork into {target!r}: the thread exists", thread_id=target
                    )
                top = await jobs.full_row(conn, thread_id, at_step)
                if top is None:
                    raise CheckpointNotFound(
                        f"cannot fork: no checkpoint at step {at_step} in thread {thread_id!r}",
                        thread_id=thread_id,
                        step=at_step,
                    )
                status = await conn.execute(SQL.FORK_ROWS, target, thread_id, at_step)
                copied = int(status.rsplit(" ", 1)[1])
                await conn.execute(SQL.INSERT, *top._replace(thread_id=target))
                await conn.execute(SQL.FORK_THREAD, target, now, at_step, copied + 1, thread_id)
                return target

        result: str = await self._run(work, thread_id=thread_id, step=at_step, unique=ThreadExists)
        return result

    async def _delete_thread(self, thread_id: str) -> bool:
        self._writable(thread_id)

        async def work(conn: asyncpg.Connection) -> bool:
            return await conn.fetchval(SQL.DELETE_THREAD, thread_id) is not None

        return bool(await self._run(work, thread_id=thread_id))

    async def _set_thread_metadata(self, thread_id: str, metadata: str) -> bool:
        self._writable(thread_id)

        async def work(conn: asyncpg.Connection) -> bool:
            return await conn.fetchval(SQL.SET_THREAD_METADATA, thread_id, metadata) is not None

        return bool(await self._run(work, thread_id=thread_id))

    async def _prune(
        self, thread_id: str | None, keep_last: int, cutoff: str, dry_run: bool
    ) -> list[tuple[int, int]]:
        if not dry_run:
            self._writable(thread_id)
        ids = [thread_id] if thread_id is not None else await self._thread_ids()
        out: list[tuple[int, int]] = []
        for start in range(0, len(ids), _PRUNE_CHUNK):
            chunk = ids[start : start + _PRUNE_CHUNK]

            async def work(
                conn: asyncpg.Connection, chunk: list[str] = chunk
            ) -> list[tuple[int, int]]:
                done = []
                async with conn.transaction():
                    for one, latest in await conn.fetch(SQL.THREAD_LATEST, chunk):
                        args = (one, latest, keep_last - 1, cutoff)
                        count, size, cut, encoding = await conn.fetchrow(SQL.PRUNE_SIZE, *args)
                        if count and not dry_run:
                            await jobs.drop_below(conn, one, cut, encoding)
                        done.append((int(count), int(size)))
                return done

            out += await self._run(work, thread_id=thread_id)
        return out

    async def _thread_ids(self) -> list[str]:
        return [r[0] for r in await self._fetch(SQL.ALL_THREAD_IDS)]

    async def _delete_inactive(self, cutoff: str) -> list[str]:
        self._writable()
        return [r[0] for r in await self._fetch(SQL.DELETE_INACTIVE, cutoff, read=False)]

    async def _restore(self, record: ThreadRecord, rows: Sequence[EncodedCheckpoint]) -> bool:
        self._writable(record[0])

        async def work(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                if await conn.fetchval(SQL.THREAD_EXISTS, record[0]) is not None:
                    return False
                await conn.execute(SQL.RESTORE_THREAD, *record)
                stored = jobs.encoded_run(list(rows))
                await conn.executemany(SQL.INSERT_STORED, [(*r, e) for r, e in stored])
                return True

        return bool(await self._run(work, thread_id=record[0], unique=ThreadExists))

    async def _replace_states(
        self, thread_id: str, latest_step: int, count: int, rows: Sequence[EncodedCheckpoint]
    ) -> bool:
        self._writable(thread_id)

        async def work(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                return await jobs.replace_states(conn, thread_id, latest_step, count, list(rows))

        return bool(await self._run(work, thread_id=thread_id))

    # --- storage hooks: reads ------------------------------------------------------------------

    async def _read_row(
        self, thread_id: str, step: int | None, decode: Callable[[EncodedCheckpoint], R]
    ) -> R | None:
        async def work(conn: asyncpg.Connection) -> EncodedCheckpoint | None:
            if step is not None:
                return await jobs.full_row(conn, thread_id, step)
            found = await conn.fetchrow(SQL.LATEST, thread_id)
            if found is None:
                return None
            row, encoding = jobs.stored(found)
            if encoding != 0:  # not written by forkpoint: rebuild rather than misread
                return await jobs.full_row(conn, thread_id, row.step)
            return row

        row: EncodedCheckpoint | None = await self._run(
            work, thread_id=thread_id, step=step, read=True
        )
        return None if row is None else decode(row)

    async def _stream_rows(
        self, thread_id: str, top: int | None
    ) -> AsyncIterator[EncodedCheckpoint]:
        newer: str | None = None  # the full state of the row just above the page
        bound = MAX_STEP if top is None else top
        while bound >= 0:

            async def page(
                conn: asyncpg.Connection, bound: int = bound, newer: str | None = newer
            ) -> tuple[list[EncodedCheckpoint], list[EncodedCheckpoint] | None, bool]:
                """Full rows at steps <= bound, newest first, until a row needing its chain.

                Returns those rows, that chain if one was met (``chain_rows``: for
                a forward delta its whole run, still as stored) and whether
                older rows may remain after the page.
                """
                out: list[EncodedCheckpoint] = []
                rows = await conn.fetch(SQL.STATES_DOWN, thread_id, bound, _STATES_PAGE)
                for row, encoding in map(jobs.stored, rows):
                    if encoding == 0:
                        full = row
                    elif encoding == 1 and newer is not None:
                        full = row._replace(state=jobs.apply_one(newer, row, encoding))
                    else:  # a forward delta, or a reverse one with no row read above it
                        return out, await jobs.chain_rows(conn, thread_id, row.step), True
                    out.append(full)
                    newer = full.state
                return out, None, len(rows) == _STATES_PAGE

            rows, chain, more = await self._run(page, thread_id=thread_id, read=True)
            for row in rows:
                yield row
            if chain is not None:
                if not chain:
                    return  # removed meanwhile by a prune, and with it everything older
                for row in jobs.newest_first(chain, thread_id):
                    yield row
                rows = [row]  # the run's oldest: the next page starts below it
            if not (more and rows):
                return
            newer, bound = rows[-1].state, rows[-1].step - 1

    async def _read_raw(self, thread_id: str, step: int) -> str | None:
        async def work(conn: asyncpg.Connection) -> str | None:
            value = await conn.fetchval(SQL.RAW_STATE, thread_id, step)
            return None if value is None else str(value)

        raw: str | None = await self._run(work, thread_id=thread_id, step=step, read=True)
        return raw

    async def _page_checkpoints(
        self,
        decode: Callable[[Sequence[CheckpointRow]], list[R]],
        thread_id: str,
        after: int | None,
        before: int | None,
        limit: int | None,
        newest_first: bool,
        filter: dict[str, Any] | None,
    ) -> list[R]:
        sql, params = page(
            SQL.HISTORY,
            [thread_id],
            [("c.step > {}", after), ("c.step < {}", before)],
            filter,
            "c.metadata",
            "c.step DESC" if newest_first else "c.step",
            limit,
        )
        return decode(await self._fetch(sql, *params, thread_id=thread_id))

    async def _page_threads(
        self,
        decode: Callable[[Sequence[ThreadRow]], list[R]],
        after: str | None,
        limit: int | None,
        filter: dict[str, Any] | None,
    ) -> list[R]:
        sql, params = page(
            SQL.THREADS,
            [],
            [("t.thread_id > {}", after)],
            filter,
            "t.metadata",
            "t.thread_id",
            limit,
        )
        return decode(await self._fetch(sql, *params))

    async def _thread_record(self, thread_id: str) -> ThreadRow | None:
        found = await self._fetch(SQL.THREAD, thread_id, thread_id=thread_id)
        return found[0] if found else None

    async def _forks_of(self, thread_id: str) -> list[ThreadRow]:
        return await self._fetch(SQL.FORKS, thread_id, thread_id=thread_id)

    # --- maintenance --------------------------------------------------------------------------

    async def vacuum(self, *, full: bool = False) -> int:
        """Vacuum forkpoint's tables; returns the bytes they shrank by.

        Plain (default): ``VACUUM (ANALYZE)``, what autovacuum does on its own —
        the space of removed and rewritten rows becomes reusable, but is seldom
        given back. ``full=True``: ``VACUUM (FULL, ANALYZE)`` rewrites the tables
        and gives the space back to the file system; it locks them while it
        runs, so saves wait meanwhile.
        """
        self._usable()
        if not isinstance(full, bool):
            raise InvalidInput("full must be a bool")
        self._writable()
        statement = SQL.VACUUM_FULL if full else SQL.VACUUM

        async def work(conn: asyncpg.Connection) -> int:
            before = int(await conn.fetchval(SQL.TABLE_BYTES))
            await conn.execute(statement)
            return max(0, before - int(await conn.fetchval(SQL.TABLE_BYTES)))

        freed: int = await self._run(work)
        return freed

    async def backup(self, dest: str | os.PathLike[str]) -> None:
        """Copy every thread into a new forkpoint SQLite file at ``dest`` (``copy_threads``).

        Each thread is copied whole, as of the moment it is read; saves made
        meanwhile to other threads may or may not be included (for a snapshot
        of the whole server, use ``pg_dump``). ``InvalidInput`` if ``dest``
        exists and is not empty.
        """
        self._usable()
        from ..copying import copy_threads
        from ..sqlite import SqliteCheckpointer

        target = os.path.abspath(os.fspath(dest))  # noqa: ASYNC240 - string work, no I/O wait
        if os.path.exists(target) and os.path.getsize(target) > 0:  # noqa: ASYNC240 - one stat
            raise InvalidInput("backup destination exists and is not empty", path=target)
        async with SqliteCheckpointer.open(target, self.state_type) as copy:
            await copy_threads(self, copy)
