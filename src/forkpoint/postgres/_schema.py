"""forkpoint's tables in a PostgreSQL schema: created and upgraded by the alembic scripts.

The same alembic revisions build both dialects. For PostgreSQL the upgrade is
rendered as SQL by alembic's offline mode (``migrations/env.py``), once per
process and starting revision, and run here through asyncpg:

* in one transaction (PostgreSQL DDL is transactional), so a migration killed
  half-way leaves the old revision with all its data;
* under a transaction-scoped advisory lock keyed by the schema name, so ten
  processes opening at once migrate once: the others wait, re-read the
  revision and find nothing to do;
* inside forkpoint's own schema (``search_path`` set for the transaction), so
  a database with other tables is left alone. A schema that already holds
  tables but no forkpoint revision is refused, never written to.

The schema name is configuration, not user data: it is the only name placed in
SQL text, always as a quoted identifier.
"""

from __future__ import annotations

import asyncio
import hashlib
import io

import asyncpg

from ..errors import NotAForkpointDatabase, SchemaVersionError
from ..migrate import HEAD_REVISION, KNOWN_REVISIONS
from ._connect import quote_ident

__all__ = ["database_revision", "ensure_schema", "lock_key", "upgrade_sql"]

_RENDERED: dict[str | None, str] = {}


def lock_key(schema: str) -> int:
    """The advisory lock guarding migrations of ``schema``: a stable signed 64-bit key."""
    digest = hashlib.blake2b(b"forkpoint-migrate:" + schema.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _render(start: str | None) -> str:
    """The SQL upgrading a schema from revision ``start`` (None: empty) to head."""
    from alembic import command

    from ..migrate import alembic_config

    buffer = io.StringIO()
    config = alembic_config()
    config.output_buffer = buffer
    config.attributes["dialect"] = "postgresql"
    command.upgrade(config, "head" if start is None else f"{start}:head", sql=True)
    return buffer.getvalue()


async def upgrade_sql(start: str | None) -> str:
    """:func:`_render`, cached; rendered on a worker thread (alembic loads its scripts)."""
    if start not in _RENDERED:
        _RENDERED[start] = await asyncio.to_thread(_render, start)
    return _RENDERED[start]


async def database_revision(conn: asyncpg.Connection, schema: str) -> str | None:
    """The revision ``schema`` is stamped with; None if it has no forkpoint tables.

    ``NotAForkpointDatabase`` if the schema holds tables but no forkpoint revision.
    """
    q = quote_ident(schema)
    version_table = f"{q}.alembic_version"
    stamped = "SELECT to_regclass($1) IS NOT NULL"
    if not await conn.fetchval(stamped, version_table):
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1", schema
        )
        if not tables:
            return None
        # A migration commits its tables and its revision together: tables seen now mean the
        # revision is visible now too, if they are forkpoint's (another opener just migrated).
        if not await conn.fetchval(stamped, version_table):
            raise NotAForkpointDatabase(
                f"schema {schema!r} holds {tables} tables that are not forkpoint's; "
                "choose another schema= for forkpoint"
            )
    # S608: the schema is a quoted identifier from configuration; nothing else is text.
    return await conn.fetchval(f"SELECT version_num FROM {version_table}")  # type: ignore[no-any-return]  # noqa: S608


def _check_known(revision: str | None, schema: str) -> None:
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise SchemaVersionError(
            f"schema {schema!r} is at revision {revision!r}, newer than this forkpoint knows "
            f"(head {HEAD_REVISION!r}); upgrade forkpoint"
        )


async def ensure_schema(
    conn: asyncpg.Connection, schema: str, *, migrate: bool, read_only: bool
) -> bool:
    """Make ``schema`` hold forkpoint's tables at head, or raise without writing.

    Returns whether this call ran the upgrade (False: it was there already).
    ``SchemaVersionError`` for a newer revision, or an older one when
    ``migrate`` is off or the checkpointer is read-only.
    """
    revision = await database_revision(conn, schema)
    if revision == HEAD_REVISION:
        return False  # the common case: one read, no lock
    _check_known(revision, schema)
    if not migrate or read_only:
        shown = "no forkpoint tables" if revision is None else f"revision {revision!r}"
        raise SchemaVersionError(
            f"schema {schema!r} has {shown}, not {HEAD_REVISION!r}; "
            "open it with migrate=True (or run `forkpoint migrate`)"
        )
    await upgrade_sql(revision)  # rendered before the lock, so it is never held while loading
    q = quote_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema))
        revision = await database_revision(conn, schema)  # another opener may have migrated
        if revision == HEAD_REVISION:
            return False
        _check_known(revision, schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        await conn.execute(f"SET LOCAL search_path TO {q}")
        await conn.execute(await upgrade_sql(revision))
    return True
