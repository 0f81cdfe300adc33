"""Schema migrations: runs the alembic scripts programmatically, atomically.

The scripts live in the repo's top-level ``migrations/`` folder and ship in the
wheel as ``forkpoint/_migrations``. An upgrade runs in one ``BEGIN IMMEDIATE``
transaction (SQLite DDL is transactional), so a process killed mid-migration
leaves the database at the old revision with all its data, and concurrent
openers simply wait for the first one and then find nothing to do.

A new, empty file is created at the head revision from :data:`HEAD_SQL`, the
statements the scripts leave in ``sqlite_master``, without loading alembic or
SQLAlchemy: together they add some 40,000 objects to a process, which every
full garbage collection then walks for the rest of its life, and ~0.4 s to its
first open. ``HEAD_SQL`` is not written by hand: ``tests/reliability/
test_hardening_files.py::test_new_files_are_what_the_migrations_build`` builds
the head with the scripts, compares, and on a mismatch prints the tuple to
paste here.
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

HEAD_SQL = (
    (
        "CREATE TABLE alembic_version (\n"
        "\tversion_num VARCHAR(32) NOT NULL, \n"
        "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n"
        ")"
    ),
    (
        "CREATE TABLE threads (\n"
        "\tthread_id TEXT NOT NULL, \n"
        "\tcreated_at TEXT NOT NULL, \n"
        "\tupdated_at TEXT NOT NULL, \n"
        "\tlatest_step INTEGER NOT NULL, \n"
        "\tcheckpoint_count INTEGER NOT NULL, \n"
        "\tparent_thread_id TEXT, \n"
        "\tparent_step INTEGER, \n"
        "\tmetadata TEXT DEFAULT '{}' NOT NULL, delta_run INTEGER DEFAULT 0 NOT NULL, \n"
        "\tPRIMARY KEY (thread_id)\n"
        ")"
    ),
    ("CREATE INDEX ix_threads_parent ON threads (parent_thread_id)"),
    ("CREATE INDEX ix_threads_updated_at ON threads (updated_at)"),
    (
        "CREATE TABLE checkpoints (\n"
        "\tthread_id TEXT NOT NULL, \n"
        "\tstep INTEGER NOT NULL, \n"
        "\tcreated_at TEXT NOT NULL, \n"
        "\tnode TEXT NOT NULL, \n"
        "\tmetadata TEXT DEFAULT '{}' NOT NULL, \n"
        "\tqueue TEXT NOT NULL, \n"
        "\tstate TEXT NOT NULL, encoding INTEGER DEFAULT 0 NOT NULL, state_version INTEGER DEFAULT 1 NOT NULL, \n"
        "\tPRIMARY KEY (thread_id, step)\n"
        ")"
    ),
    (
        "CREATE TABLE lg_checkpoints (\n"
        "\tseq INTEGER NOT NULL, \n"
        "\tthread_id TEXT NOT NULL, \n"
        "\tcheckpoint_ns TEXT NOT NULL, \n"
        "\tcheckpoint_id TEXT NOT NULL, \n"
        "\tparent_checkpoint_id TEXT, \n"
        "\trun_id TEXT, \n"
        "\tcreated_at TEXT NOT NULL, \n"
        "\tmetadata TEXT NOT NULL, \n"
        "\tchannels TEXT NOT NULL, \n"
        "\tcheckpoint TEXT NOT NULL, \n"
        "\tPRIMARY KEY (seq)\n"
        ")"
    ),
    (
        "CREATE UNIQUE INDEX ux_lg_checkpoints_id ON lg_checkpoints (thread_id, checkpoint_ns, checkpoint_id)"
    ),
    ("CREATE INDEX ix_lg_checkpoints_order ON lg_checkpoints (thread_id, checkpoint_ns, seq)"),
    ("CREATE INDEX ix_lg_checkpoints_run ON lg_checkpoints (run_id)"),
    (
        "CREATE TABLE lg_blobs (\n"
        "\tthread_id TEXT NOT NULL, \n"
        "\tcheckpoint_ns TEXT NOT NULL, \n"
        "\tchannel TEXT NOT NULL, \n"
        '\t"key" TEXT NOT NULL, \n'
        "\tencoding INTEGER DEFAULT 0 NOT NULL, \n"
        "\tvalue TEXT NOT NULL, \n"
        '\tPRIMARY KEY (thread_id, checkpoint_ns, channel, "key")\n'
        ")"
    ),
    (
        "CREATE TABLE lg_list_items (\n"
        "\tthread_id TEXT NOT NULL, \n"
        "\tcheckpoint_ns TEXT NOT NULL, \n"
        "\tchannel TEXT NOT NULL, \n"
        "\tlist_id TEXT NOT NULL, \n"
        "\tidx INTEGER NOT NULL, \n"
        "\tvalue TEXT NOT NULL, \n"
        "\tPRIMARY KEY (thread_id, checkpoint_ns, channel, list_id, idx)\n"
        ")"
    ),
    (
        "CREATE TABLE lg_writes (\n"
        "\tthread_id TEXT NOT NULL, \n"
        "\tcheckpoint_ns TEXT NOT NULL, \n"
        "\tcheckpoint_id TEXT NOT NULL, \n"
        "\ttask_id TEXT NOT NULL, \n"
        "\tidx INTEGER NOT NULL, \n"
        "\ttask_path TEXT DEFAULT '' NOT NULL, \n"
        "\tchannel TEXT NOT NULL, \n"
        "\tvalue TEXT NOT NULL, \n"
        "\tPRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)\n"
        ")"
    ),
)
"""What the scripts leave in ``sqlite_master`` at the head revision, in creation order."""

__all__ = [
    "APPLICATION_ID",
    "HEAD_REVISION",
    "HEAD_SQL",
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
    prepare_new_file(path)
    if _create_at_head(path, busy_timeout=busy_timeout):
        return
    from alembic import command

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


def _create_at_head(path: str, *, busy_timeout: float) -> bool:
    """Create the head schema from :data:`HEAD_SQL` if the file holds nothing yet.

    False (nothing done) when it holds anything: the scripts decide then. The
    check and the creation share one ``BEGIN IMMEDIATE``, like an upgrade.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                conn.execute("ROLLBACK")
                return False
            for statement in HEAD_SQL:
                conn.execute(statement)
            conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD_REVISION,))
            conn.execute(f"PRAGMA application_id = {int(APPLICATION_ID)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return True
    finally:
        conn.close()


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
