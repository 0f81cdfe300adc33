"""Schema migrations: fresh, re-run, newer refused, foreign files untouched, alembic agrees."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from forkpoint import (
    NotAForkpointDatabase,
    SchemaVersionError,
    SqliteCheckpointer,
    StorageError,
)
from forkpoint.migrate import alembic_config
from forkpoint.schema import APPLICATION_ID, HEAD_REVISION, KNOWN_REVISIONS, metadata
from tests.conftest import Counter, build_with_scripts, make_cp

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def revision(path: Path) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_known_revisions_equal_the_alembic_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD_REVISION]
    walked = [rev.revision for rev in script.walk_revisions()]
    assert list(reversed(walked)) == list(KNOWN_REVISIONS)
    # The repo-root folder and the one forkpoint runs are the same scripts.
    root_scripts = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert {Path(r.path).name for r in script.walk_revisions()} == root_scripts


async def test_fresh_database_is_created_at_head(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        await cp.save(make_cp("t", 0))
    assert revision(db) == HEAD_REVISION
    assert {"threads", "checkpoints", "alembic_version"} <= tables(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_reopening_a_migrated_database_is_a_noop(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        await cp.save(make_cp("t", 0))
    conn = sqlite3.connect(db)
    schema_before = conn.execute(
        "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    ).fetchall()
    conn.close()
    for _ in range(2):
        async with SqliteCheckpointer.open(db, Counter) as cp:
            assert await cp.load("t") is not None
    conn = sqlite3.connect(db)
    schema_after = conn.execute(
        "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    ).fetchall()
    conn.close()
    assert schema_after == schema_before
    assert revision(db) == HEAD_REVISION


def test_migrated_schema_matches_the_package_tables(tmp_path: Path) -> None:
    """alembic's autogenerate comparison finds nothing between the migrations and schema.py."""
    db = tmp_path / "auto.db"
    import asyncio

    async def create() -> None:
        async with SqliteCheckpointer.open(db, Counter):
            pass

    asyncio.run(create())
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_autogenerate_comparison_can_see_a_difference(tmp_path: Path) -> None:
    """The comparison above is not blind: a missing column is reported."""
    db = tmp_path / "drift.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE threads (thread_id TEXT PRIMARY KEY)")
    conn.close()
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), metadata)
    finally:
        engine.dispose()
    assert diff != []


def _stamp(db: Path, rev: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("UPDATE alembic_version SET version_num = ?", (rev,))
    finally:
        conn.close()


async def test_newer_revision_is_refused_and_file_untouched(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        await cp.save(make_cp("t", 0))
    _stamp(db, "9999_from_the_future")
    before = db.read_bytes()
    for migrate in (True, False):
        with pytest.raises(SchemaVersionError) as info:
            await SqliteCheckpointer.open(db, Counter, migrate=migrate)
        assert "9999_from_the_future" in str(info.value)
    assert db.read_bytes() == before
    assert revision(db) == "9999_from_the_future"


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database at all, just text\n" * 10,
        b"SQLite format 3\x00" + b"\xff" * 200,
        b"\x00" * 4096,
        b"short",
    ],
    ids=["text", "bad-header", "zeros", "short"],
)
async def test_non_sqlite_file_is_refused_and_untouched(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "not.db"
    db.write_bytes(content)
    with pytest.raises(NotAForkpointDatabase):
        await SqliteCheckpointer.open(db, Counter)
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not.db"]


async def test_other_applications_sqlite_file_is_refused_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "theirs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('ann')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(NotAForkpointDatabase):
        await SqliteCheckpointer.open(db, Counter)
    assert db.read_bytes() == before


async def test_not_a_forkpoint_database_is_a_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    db.write_bytes(b"garbage" * 100)
    with pytest.raises(StorageError):
        await SqliteCheckpointer.open(db, Counter)


async def test_old_database_without_migrate_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURES / "rev0001.db", db)
    old = revision(db)
    assert old is not None
    assert old != HEAD_REVISION
    before = db.read_bytes()
    with pytest.raises(SchemaVersionError):
        await SqliteCheckpointer.open(db, Counter, migrate=False)
    assert db.read_bytes() == before
    async with SqliteCheckpointer.open(db, Counter, migrate=True):
        pass
    assert revision(db) == HEAD_REVISION


def test_alembic_upgrade_head_from_the_shell(tmp_path: Path) -> None:
    """`alembic upgrade head` with the repo-root config, in a copy, on a chosen file."""
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(ROOT / "alembic.ini", work / "alembic.ini")
    shutil.copytree(ROOT / "migrations", work / "migrations")
    db = tmp_path / "shell.db"
    alembic = Path(sys.executable).with_name("alembic")
    command = [str(alembic)] if alembic.exists() else [sys.executable, "-m", "alembic"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [*command, "-x", f"db={db}", "upgrade", "head"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert revision(db) == HEAD_REVISION
    assert not (work / "forkpoint.db").exists()  # -x db= was honoured
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        conn.close()
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), metadata) == []
    finally:
        engine.dispose()


def _master(path: Path) -> list[Any]:
    """Everything that makes a file forkpoint's: sqlite_master in order, header stamps, revision."""
    conn = sqlite3.connect(path)
    try:
        return [
            conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
            ).fetchall(),
            [conn.execute(f"PRAGMA {name}").fetchone()[0] for name in _STAMPS],
            conn.execute("SELECT version_num FROM alembic_version").fetchall(),
        ]
    finally:
        conn.close()


_STAMPS = ("application_id", "auto_vacuum", "journal_mode", "user_version", "page_size")


def _head_sql_source(statements: tuple[str, ...]) -> str:
    """``statements`` as ``forkpoint/migrate.py`` spells HEAD_SQL (one source line per SQL line)."""
    out = ["HEAD_SQL = ("]
    for sql in statements:
        lines = sql.split("\n")
        out += [
            "    (",
            *(f"        {line!r}" for line in [*(x + "\n" for x in lines[:-1]), lines[-1]]),
        ]
        out.append("    ),")
    return "\n".join([*out, ")"])


def test_new_files_are_what_the_migrations_build(tmp_path: Path) -> None:
    """A new file is created from HEAD_SQL, not by the scripts: the two files are identical.

    When a migration is added or changed this fails and prints the HEAD_SQL
    to paste into ``forkpoint/migrate.py``.
    """
    from forkpoint.migrate import HEAD_SQL, upgrade

    scripts = tmp_path / "scripts.db"
    build_with_scripts(scripts)
    conn = sqlite3.connect(scripts)
    try:
        built = tuple(
            str(sql)
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            )
        )
    finally:
        conn.close()
    assert built == HEAD_SQL, "paste into forkpoint/migrate.py:\n" + _head_sql_source(built)
    new = tmp_path / "new.db"
    upgrade(str(new))
    assert _master(new) == _master(scripts)


def test_creating_and_opening_files_loads_neither_alembic_nor_sqlalchemy(tmp_path: Path) -> None:
    """They would add ~40,000 objects that every full garbage collection walks (and ~0.4 s)."""
    script = f"""
import asyncio, sys
from forkpoint import SqliteCheckpointer
from forkpoint.langgraph import ForkpointSaver
from tests.conftest import Counter, build_with_scripts, make_cp

async def main():
    for _ in range(2):  # created, then opened again
        async with SqliteCheckpointer.open({str(tmp_path / "new.db")!r}, Counter) as cp:
            await cp.save(make_cp("t", len(await cp.list_checkpoints("t"))))
    ForkpointSaver({str(tmp_path / "saver.db")!r}).close()

asyncio.run(main())
print(sorted(name for name in ("alembic", "sqlalchemy", "mako") if name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
