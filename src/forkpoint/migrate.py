"""Schema migrations: runs the alembic scripts programmatically, atomically.

The scripts live in the repo's top-level ``migrations/`` folder and ship in the
wheel as ``forkpoint/_migrations``. An upgrade runs in one ``BEGIN IMMEDIATE``
transaction (SQLite DDL is transactional), so a process killed mid-migration
leaves the database at the old revision with all its data, and concurrent
openers simply wait for the first one and then find nothing to do.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SchemaVersionError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection, Engine

APPLICATION_ID = 0x666B7074  # "fkpt": stamped into every forkpoint database's header
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")
"""Every alembic revision this version knows, oldest first; a test keeps it equal to the scripts."""
HEAD_REVISION = KNOWN_REVISIONS[-1]

__all__ = [
    "APPLICATION_ID",
    "HEAD_REVISION",
    "KNOWN_REVISIONS",
    "alembic_config",
    "migrations_dir",
    "needs_upgrade",
    "prepare_new_file",
    "sqlalchemy_engine",
    "stamp_application_id",
    "upgrade",
]


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside the installed wheel, else the source tree's."""
    shipped = Path(str(resources.files("forkpoint"))) / "_migrations"
    if (shipped / "env.py").is_file():
        return shipped
    source = Path(__file__).resolve().parents[2] / "migrations"
    if (source / "env.py").is_file():  # editable install / source checkout
        return source
    raise StorageError("forkpoint's migration scripts are missing from this installation")


def alembic_config() -> Config:
    """An alembic Config pointing at the shipped scripts (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def prepare_new_file(path: str) -> None:
    """Settings that must exist before the first table: incremental auto-vacuum and WAL.

    A no-op for a database that already has tables.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def sqlalchemy_engine(path: str, *, busy_timeout: float) -> Engine:
    """An engine whose transactions are ``BEGIN IMMEDIATE`` on a plain sqlite3 connection."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def stamp_application_id(connection: Connection) -> None:
    """Mark the file as forkpoint's (PRAGMA application_id), inside the migration transaction."""
    connection.exec_driver_sql(f"PRAGMA application_id = {int(APPLICATION_ID)}")


def upgrade(path: str, *, busy_timeout: float = 5.0) -> None:
    """Upgrade the database at ``path`` to the head revision, in one transaction.

    Raises ``SchemaVersionError`` (without writing) if the database is stamped
    with a revision this version does not know.
    """
    from alembic import command

    prepare_new_file(path)
    engine = sqlalchemy_engine(path, busy_timeout=busy_timeout)
    try:
        with engine.connect() as conn, conn.begin():
            # Read under the write lock: a concurrent opener may have migrated meanwhile.
            dbapi = conn.connection.dbapi_connection
            assert isinstance(dbapi, sqlite3.Connection)
            if needs_upgrade(database_revision(dbapi), path=path):
                config = alembic_config()
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
    finally:
        engine.dispose()


def needs_upgrade(revision: str | None, *, path: str) -> bool:
    """The one revision rule: whether a database stamped ``revision`` must be upgraded.

    None (no stamp: a new file) and every known older revision need an
    upgrade; the head needs none; anything else was written by a newer
    forkpoint and raises ``SchemaVersionError``. Opening a file and migrating
    it both ask this, so they can never disagree.
    """
    if revision == HEAD_REVISION:
        return False
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise SchemaVersionError(
            f"database schema revision {revision!r} is newer than this forkpoint knows "
            f"(head {HEAD_REVISION!r}); upgrade forkpoint",
            path=path,
        )
    return True


def database_revision(conn: sqlite3.Connection) -> str | None:
    """The alembic revision a database is stamped with, read with a plain sqlite3 connection."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if exists is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])
