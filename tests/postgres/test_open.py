"""Opening: URLs and connection errors in one line, the schema, migrations, settings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from forkpoint import (
    DatabaseUnavailable,
    InvalidInput,
    NotAForkpointDatabase,
    ReadOnlyDatabase,
    SchemaVersionError,
)
from forkpoint.migrate import HEAD_REVISION
from forkpoint.postgres import PostgresCheckpointer
from forkpoint.postgres._schema import ensure_schema
from tests.conftest import Counter, make_cp
from tests.postgres.conftest import Opener


def _replace(url: str, **parts: Any) -> str:
    return urlunsplit(urlsplit(url)._replace(**parts))


@pytest.mark.parametrize(
    "url",
    ["mysql://x@localhost/db", "localhost:5432/db", "postgresql://h:notaport/db", "", 5],
)
async def test_a_url_that_is_not_postgresql_is_invalid_input(url: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        await PostgresCheckpointer.open(url, Counter)
    assert "\n" not in str(info.value)


async def test_unreachable_server_missing_database_and_unknown_role_are_one_line(
    pg_url: str,
) -> None:
    free_port = _replace(pg_url, netloc="postgres:s3cret@127.0.0.1:1")
    missing_db = _replace(pg_url, path="/no_such_database_here")
    no_role = _replace(pg_url, netloc="no_such_role@" + urlsplit(pg_url).netloc.split("@")[-1])
    for url, needle in [
        (free_port, "cannot connect"),
        (missing_db, "does not exist"),
        (no_role, "no_such_role"),
    ]:
        with pytest.raises(DatabaseUnavailable) as info:
            await PostgresCheckpointer.open(url, Counter, connect_timeout=5)
        message = str(info.value)
        assert needle in message, message
        assert "\n" not in message
        assert "s3cret" not in message  # the password is never shown
        assert info.value.__cause__ is not None


async def test_fresh_schema_is_created_at_head_and_other_tables_are_left_alone(
    open_pg: Opener, admin: asyncpg.Connection, schema: str
) -> None:
    other = schema + "_app"
    await admin.execute(f'CREATE SCHEMA "{other}"')
    await admin.execute(f'CREATE TABLE "{other}".threads (id int)')
    await admin.execute(f'INSERT INTO "{other}".threads VALUES (7)')  # noqa: S608 - test schema
    cp = await open_pg()
    await cp.save(make_cp("t", 0))
    assert await admin.fetchval("SELECT version_num FROM alembic_version") == (HEAD_REVISION)
    tables = await admin.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema
    )
    names = [r[0] for r in tables]
    core = ["alembic_version", "checkpoints", "threads"]
    assert [n for n in names if not n.startswith("lg_")] == core  # and the LangGraph saver's
    assert await admin.fetchval(f'SELECT id FROM "{other}".threads') == 7  # noqa: S608 - test schema


async def test_a_schema_holding_other_tables_is_refused_untouched(
    open_pg: Opener, admin: asyncpg.Connection, schema: str
) -> None:
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.execute("CREATE TABLE orders (id int)")
    with pytest.raises(NotAForkpointDatabase, match="not forkpoint's"):
        await open_pg()
    tables = await admin.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    assert [r[0] for r in tables] == ["orders"]


async def test_a_newer_schema_raises_schema_version_error_and_writes_nothing(
    open_pg: Opener, admin: asyncpg.Connection, schema: str
) -> None:
    cp = await open_pg()
    await cp.save(make_cp("t", 0))
    await cp.close()
    await admin.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaVersionError, match="newer"):
        await open_pg()
    assert await admin.fetchval("SELECT count(*) FROM checkpoints") == 1


async def test_an_older_schema_is_upgraded_unless_migrate_is_off(
    open_pg: Opener, admin: asyncpg.Connection, schema: str
) -> None:
    from forkpoint.postgres._schema import upgrade_sql

    rev1 = (await upgrade_sql(None)).split("-- Running upgrade 0001 -> 0002")[0]
    await admin.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"; {rev1}')
    await admin.execute("RESET search_path")
    with pytest.raises(SchemaVersionError, match="migrate=True"):
        await open_pg(migrate=False)
    with pytest.raises(SchemaVersionError, match="migrate=True"):
        await open_pg(read_only=True)
    cp = await open_pg()
    await cp.save(make_cp("t", 0))
    assert await admin.fetchval("SELECT version_num FROM alembic_version") == HEAD_REVISION


async def test_ten_openers_at_once_migrate_once(pg_url: str, schema: str) -> None:
    conns = [await asyncpg.connect(pg_url) for _ in range(10)]
    try:
        ran = await asyncio.gather(
            *(ensure_schema(c, schema, migrate=True, read_only=False) for c in conns)
        )
    finally:
        for c in conns:
            await c.close()
    assert sorted(ran) == [False] * 9 + [True]


@pytest.mark.soak  # ten interpreters starting take ~15 s here; the fast tier uses ten sessions
def test_ten_processes_opening_at_once_all_succeed(pg_url: str, schema: str) -> None:
    code = (
        "import asyncio, sys\n"
        "from forkpoint.postgres import PostgresCheckpointer\n"
        "from tests.conftest import Counter, make_cp\n"
        "async def main():\n"
        "    async with PostgresCheckpointer.open(sys.argv[1], Counter, schema=sys.argv[2]) as cp:\n"
        "        await cp.save(make_cp(sys.argv[3], 0))\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_url, schema, f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(10)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, errors

    async def check() -> list[str]:
        async with PostgresCheckpointer.open(pg_url, Counter, schema=schema) as cp:
            return [t.thread_id for t in await cp.list_threads()]

    assert asyncio.run(check()) == [f"p{i}" for i in range(10)]


@pytest.mark.parametrize(("durability", "setting"), [("full", "on"), ("normal", "off")])
async def test_durability_is_synchronous_commit(
    open_pg: Opener, durability: str, setting: str
) -> None:
    cp = await open_pg(durability=durability)
    async with cp._db.pool.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == setting


async def test_a_read_only_server_session_gives_read_only_database(
    open_pg: Opener, pg_url: str
) -> None:
    await (await open_pg()).save(make_cp("t", 0))
    standby_like = _replace(pg_url, query="default_transaction_read_only=on")
    cp = await open_pg(url=standby_like)
    assert (await cp.load("t")) is not None
    with pytest.raises(ReadOnlyDatabase) as info:
        await cp.save(make_cp("t", 1))
    assert isinstance(info.value.__cause__, asyncpg.PostgresError)


async def test_read_only_refuses_writes_before_any_sql(open_pg: Opener) -> None:
    await (await open_pg()).save(make_cp("t", 0))
    cp = await open_pg(read_only=True)
    with pytest.raises(ReadOnlyDatabase) as info:
        await cp.save(make_cp("t", 1))
    assert info.value.__cause__ is None
    assert [m.step for m in await cp.list_checkpoints("t")] == [0]


@pytest.mark.parametrize(
    "options",
    [
        {"schema": ""},
        {"schema": "pg_catalog"},
        {"schema": "x" * 64},
        {"pool_size": 0},
        {"durability": "fsync"},
        {"statement_timeout": 0},
        {"connect_timeout": True},
    ],
)
async def test_bad_options_are_invalid_input(pg_url: str, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        await PostgresCheckpointer.open(pg_url, Counter, **options)
