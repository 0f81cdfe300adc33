"""The boundary to asyncpg: URLs, the connection pool, retries, and typed errors.

Everything that can raise a driver exception runs through :meth:`Database.run`
(or :meth:`Database.direct`, for reads and for work already shielded), which

* retries serialization failures and deadlocks inside, a bounded number of
  times with jittered back-off, so they never reach the caller;
* retries once on a fresh connection when the server closed the connection or
  cannot be reached (a server restart leaves every pooled connection dead), and
  raises ``DatabaseUnavailable`` if that fails too;
* translates every other driver error into one of forkpoint's typed errors,
  chaining the driver's as ``__cause__``;
* shields a write from the caller's cancellation: a cancelled caller returns
  at once, while its statement or transaction finishes (committed whole or
  rolled back) and its connection goes back to the pool clean, so no
  transaction is ever left open on the server. A read is not shielded: a
  cancelled one is stopped, and asyncpg cleans its connection.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ..errors import (
    CheckpointError,
    DatabaseLocked,
    DatabaseUnavailable,
    InvalidInput,
    ReadOnlyDatabase,
    SchemaVersionError,
    SerializationError,
    StateTooLarge,
    StepConflict,
    StorageError,
    StorageFull,
)

__all__ = ["Database", "Settings", "display_url", "quote_ident"]

T = TypeVar("T")

SCHEMES = ("postgresql", "postgres")
MAX_CONFLICT_RETRIES = 8
"""Serialization failures and deadlocks retried before DatabaseLocked (bounded, never forever)."""

# SQLSTATE classes and codes, see https://www.postgresql.org/docs/current/errcodes-appendix.html
_RETRY = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_LOST_CODES = frozenset({"57P01", "57P02", "57P03", "53300"})  # shutdowns, too many connections
_REFUSED = {
    "28000": "the server refused the login",
    "28P01": "password authentication failed",
    "3D000": "the database does not exist",
    "42501": "permission denied",
}


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier, always quoted (so any spelling stays itself)."""
    return '"' + name.replace('"', '""') + '"'


def display_url(url: str) -> str:
    """The URL with its password replaced by ``***``: what messages and ``path`` show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: object) -> str:
    """A ``postgresql://`` URL asyncpg can parse; InvalidInput (one line) otherwise."""
    if not isinstance(url, str):
        raise InvalidInput(f"a PostgreSQL URL must be a str, not {type(url).__name__}")
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"not a PostgreSQL URL: {display_url(url)!r} (expected postgresql://user@host/db)"
        )
    try:
        port = urlsplit(url).port  # ValueError for a port that is not a number
    except ValueError as exc:
        raise InvalidInput(f"malformed PostgreSQL URL {display_url(url)!r}: {exc}") from exc
    del port
    return url


def check_schema(schema: object) -> str:
    """A schema name PostgreSQL accepts as an identifier (1-63 bytes, no NUL, not ``pg_*``)."""
    if not isinstance(schema, str) or not schema:
        raise InvalidInput(f"schema must be a non-empty str, not {schema!r}")
    if len(schema.encode()) > 63 or "\x00" in schema or schema.lower().startswith("pg_"):
        raise InvalidInput(
            f"schema {schema!r} is not usable: at most 63 bytes, no NUL, not starting with pg_"
        )
    return schema


@dataclass(frozen=True)
class Settings:
    """How a checkpointer connects: validated once by ``open``."""

    url: str
    schema: str
    durability: Literal["full", "normal"]
    read_only: bool
    pool_size: int
    connect_timeout: float
    statement_timeout: float | None

    @property
    def shown(self) -> str:
        """The URL as messages show it (no password)."""
        return display_url(self.url)

    def server_settings(self) -> dict[str, str]:
        """Session settings sent with every new connection (no SQL statement needed)."""
        out = {
            "search_path": quote_ident(self.schema),
            "synchronous_commit": "on" if self.durability == "full" else "off",
            "application_name": "forkpoint",
            # The planner's JIT compiles big listings for tens of milliseconds, for nothing.
            "jit": "off",
        }
        if self.read_only:
            out["default_transaction_read_only"] = "on"
        if self.statement_timeout is not None:
            out["statement_timeout"] = str(max(1, round(self.statement_timeout * 1000)))
        return out


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def _root(exc: Exception) -> Exception:
    """The server's own error behind asyncpg's "the connection is closed" (the clearer cause).

    A transaction's rollback on a connection the server just closed raises an
    InterfaceError whose ``__context__`` says why the server closed it.
    """
    context = exc.__context__
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(context, asyncpg.PostgresError):
        return exc.__context__  # type: ignore[no-any-return]  # asyncpg is untyped: Any
    return exc


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (or could not be made)."""
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.ConnectionDoesNotExistError):
        return True
    code = _sqlstate(exc)
    if code.startswith("08") or code in _LOST_CODES:
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc).lower():
        return True
    return isinstance(exc, ConnectionError | TimeoutError | OSError) and not isinstance(
        exc, asyncpg.PostgresError
    )


def translate(
    exc: BaseException,
    settings: Settings,
    *,
    thread_id: str | None = None,
    step: int | None = None,
    unique: type[CheckpointError] = StepConflict,
) -> CheckpointError:
    """A typed CheckpointError for a driver error (the caller chains it as the cause)."""
    if isinstance(exc, CheckpointError):
        return exc
    code = _sqlstate(exc)
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    kind: type[CheckpointError] = StorageError
    if code == "23505":
        kind, message = unique, "another writer stored it first"
    elif code == "53100":
        kind, message = StorageFull, f"the server's disk is full: {detail}"
    elif code == "25006":
        kind, message = ReadOnlyDatabase, f"the server accepts no writes here: {detail}"
    elif code in _RETRY:
        kind, message = DatabaseLocked, f"kept conflicting with other writers: {detail}"
    elif code in ("55P03", "57014"):
        kind = DatabaseLocked
        message = f"the statement ran past the server's lock or statement timeout: {detail}"
    elif code == "54000":
        kind, message = StateTooLarge, f"the checkpoint is too large for PostgreSQL: {detail}"
    elif code in ("42P01", "42703"):
        kind = SchemaVersionError
        message = (
            f"forkpoint's tables are missing or altered in schema {settings.schema!r}: {detail}"
        )
    elif code in ("22P02", "22032"):
        kind, message = SerializationError, f"a stored value is not valid JSON: {detail}"
    elif code == "22021":
        kind, message = SerializationError, f"text PostgreSQL cannot store: {detail}"
    elif code in _REFUSED:
        kind, message = DatabaseUnavailable, f"{_REFUSED[code]}: {detail}"
    elif connection_lost(exc):
        kind, message = DatabaseUnavailable, f"cannot reach the database server: {detail}"
    elif isinstance(exc, asyncpg.PostgresError):
        message = f"PostgreSQL failed: {detail} (SQLSTATE {code})"
    else:
        message = f"unexpected failure: {exc!r}"
    return kind(message, path=settings.shown, thread_id=thread_id, step=step)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond asyncpg's rollback of an open transaction.

    asyncpg's default reset is one more round trip after every operation
    (``RESET ALL``, ``UNLISTEN *``, …). forkpoint never changes session state:
    its settings come with the connection, it takes transaction-scoped locks
    only, and it never listens.
    """


class Database:
    """The pool, and :meth:`run`, the one way work reaches the server."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self._running: set[asyncio.Task[Any]] = set()

    @classmethod
    async def connect(cls, settings: Settings) -> Database:
        """Open the pool (one connection made now, so a bad URL fails here, in one line)."""
        try:
            pool = await asyncpg.create_pool(
                settings.url,
                min_size=1,
                max_size=settings.pool_size,
                # Idle connections are closed after 5 minutes; the pool opens new ones on demand.
                max_inactive_connection_lifetime=300.0,
                timeout=settings.connect_timeout,
                server_settings=settings.server_settings(),
                reset=_keep_session,
            )
        except Exception as exc:  # every failure to connect becomes one typed line
            if isinstance(exc, ValueError | asyncpg.ClientConfigurationError):
                raise InvalidInput(f"malformed PostgreSQL URL {settings.shown!r}: {exc}") from exc
            message = translate(exc, settings).message
            raise DatabaseUnavailable(f"cannot connect: {message}", path=settings.shown) from exc
        return cls(settings, pool)

    def spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``work`` as a background task that :meth:`close` waits for."""
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    async def shielded(self, work: Awaitable[T]) -> T:
        """Await ``work`` in its own tracked task: cancelling the caller does not cut it short."""
        result: T = await asyncio.shield(self.spawn(work))
        return result

    async def close(self) -> None:
        """Wait for work already started (cancelled callers' included), then close the pool."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        await self.pool.close()

    async def run(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        thread_id: str | None = None,
        step: int | None = None,
        unique: type[CheckpointError] = StepConflict,
    ) -> T:
        """``await work(connection)`` with retries and typed errors (see the module docstring).

        ``work`` must be safe to run again: one statement, or one transaction
        that it opens itself, whose repetition after a lost reply is harmless.
        """
        # Shielded: cancelling the caller must not cut a statement or transaction in half.
        return await self.shielded(
            self._attempts(work, thread_id=thread_id, step=step, unique=unique)
        )

    async def direct(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        thread_id: str | None = None,
        step: int | None = None,
        unique: type[CheckpointError] = StepConflict,
    ) -> T:
        """:meth:`run` in the caller's own task, without its shield.

        For work that writes nothing — cancelling the caller cancels the
        statement (asyncpg stops it on the server and cleans the connection
        before the pool takes it back), and nothing needs finishing — and for
        work already running in a shielded task (group commit's batches). It
        saves the task and event-loop turns a shield costs: ~20-100 µs of a
        ~100 µs round trip, measured here.
        """
        return await self._attempts(work, thread_id=thread_id, step=step, unique=unique)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled caller's error is not "never retrieved"

    async def _attempts(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        thread_id: str | None,
        step: int | None,
        unique: type[CheckpointError],
    ) -> T:
        conflicts = 0
        fresh_tried = False
        while True:
            try:
                async with self.pool.acquire() as conn:
                    return await work(conn)
            except CheckpointError:
                raise
            except Exception as raised:  # noqa: BLE001 - every driver error is retried or translated
                exc = _root(raised)
                code = _sqlstate(exc)
                if code in _RETRY and conflicts < MAX_CONFLICT_RETRIES:
                    conflicts += 1
                    await asyncio.sleep(random.uniform(0, 0.002 * 2**conflicts))  # noqa: S311 - jitter
                    continue
                if connection_lost(exc) and not fresh_tried and code not in _REFUSED:
                    fresh_tried = True
                    # A restarted server leaves every idle connection dead: retry on a new one.
                    await self.pool.expire_connections()
                    continue
                raise translate(
                    exc, self.settings, thread_id=thread_id, step=step, unique=unique
                ) from exc
