"""The CLI on a PostgreSQL URL (``--db postgresql://…``) and ``forkpoint copy`` between backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import Result

from tests.cli.conftest import Invoke, assert_user_error, parse_jsonl
from tests.postgres.support import run_database

pytest.importorskip("asyncpg", reason="the PostgreSQL tests need the forkpoint[postgres] extra")


async def _drop_schema(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS forkpoint CASCADE")
    finally:
        await conn.close()


async def _has_schema(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'forkpoint'")
        )
    finally:
        await conn.close()


@pytest.fixture
def pg() -> Iterator[str]:
    """This run's test database, its (CLI-default) ``forkpoint`` schema dropped before and after."""
    url = asyncio.run(run_database())
    asyncio.run(_drop_schema(url))
    yield url
    asyncio.run(_drop_schema(url))


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def _export_lines(text: str) -> list[dict[str, object]]:
    """An export's records, without the header (which names the database it came from)."""
    return [r for r in parse_jsonl(text) if r.get("kind") != "header"]


def test_copy_sqlite_to_postgres_and_back_keeps_everything(
    cli: Invoke, db: Path, pg: str, tmp_path: Path
) -> None:
    assert "copied 3 threads" in ok(cli("copy", f"sqlite:///{db}", pg))
    back = tmp_path / "back.db"
    ok(cli("copy", pg, str(back)))
    for where in (pg, str(back)):
        assert ok(cli("threads", "--json", "--db", where)) == ok(cli("threads", "--json"))
        assert _export_lines(ok(cli("export", "--db", where))) == _export_lines(ok(cli("export")))
        assert ok(cli("history", "alt", "--json", "--db", where)) == ok(
            cli("history", "alt", "--json")
        )
        assert ok(cli("show", "main", "2", "--json", "--db", where)) == ok(
            cli("show", "main", "2", "--json")
        )
    assert json.loads(ok(cli("threads", "--json", "--db", pg)))  # not trivially empty


def test_writes_on_postgres(cli: Invoke, db: Path, pg: str, tmp_path: Path) -> None:
    env = {"FORKPOINT_DB": pg}
    assert "is at schema revision" in ok(cli("migrate", env=env))
    export_file = tmp_path / "all.jsonl"
    export_file.write_text(ok(cli("export")))
    ok(cli("import", str(export_file), env=env))
    made = json.loads(ok(cli("fork", "main", "1", "--new-id", "again", "--json", env=env)))
    assert made["thread_id"] == "again"
    ok(cli("delete", "solo", "--yes", env=env))
    ok(cli("prune", "--keep-last", "1", "--yes", env=env))
    threads = {t["thread_id"]: t for t in json.loads(ok(cli("threads", "--json", env=env)))}
    assert sorted(threads) == ["again", "alt", "main"]
    assert threads["again"]["parent_thread_id"] == "main"
    assert len(json.loads(ok(cli("history", "main", "--json", env=env)))) == 1
    assert "VACUUM FULL" in ok(cli("vacuum", env=env))


def test_read_only_commands_never_create_the_schema(cli: Invoke, pg: str) -> None:
    result = cli("threads", "--db", pg)
    assert_user_error(result, "schema")
    assert not asyncio.run(_has_schema(pg))


def test_copy_refuses_a_taken_id_before_writing(cli: Invoke, db: Path, pg: str) -> None:
    ok(cli("copy", str(db), pg, "--thread", "solo"))
    before = ok(cli("export", "--db", pg))
    assert_user_error(cli("copy", str(db), pg), "solo")
    assert ok(cli("export", "--db", pg)) == before  # main and alt were not written either
    assert [t["thread_id"] for t in json.loads(ok(cli("threads", "--json", "--db", pg)))] == [
        "solo"
    ]


def test_a_bad_url_is_one_line_without_the_password(cli: Invoke) -> None:
    url = "postgresql://someone:s3cr3t-pw@127.0.0.1:1/nothing"
    for args in (("threads", "--db", url), ("copy", url, url + "x")):
        result = cli(*args)
        assert_user_error(result)
        assert "s3cr3t-pw" not in result.stderr


def test_sqlite_only_commands_say_so_on_postgres(cli: Invoke, db: Path, pg: str) -> None:
    ok(cli("copy", str(db), pg))
    assert_user_error(cli("stats", "--db", pg), "SQLite")
    result = cli("check", "--db", pg)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "SQLite-only" in result.stderr
    assert "10 of 10 in 3 threads" in result.stdout  # every checkpoint still decoded
