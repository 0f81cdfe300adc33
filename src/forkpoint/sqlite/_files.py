"""Opening a database file: create, check that it is forkpoint's, migrate; the connection URIs.

Nothing here modifies a file that is not a forkpoint database (or an empty
one to become one). The schema revision rule is ``migrate.needs_upgrade``,
the same one the migration itself applies.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import (
    CheckpointError,
    DatabaseCorrupt,
    NotAForkpointDatabase,
    ReadOnlyDatabase,
    SchemaVersionError,
    StorageError,
)
from ..migrate import APPLICATION_ID, HEAD_REVISION, database_revision, needs_upgrade
from ._errors import translate
from ._sql import SQL

__all__ = ["file_size", "on_read_only_fs", "prepare", "reader_uri"]

SQLITE_MAGIC = b"SQLite format 3\x00"


def _ro_uri(path: str, *, immutable: bool = False) -> str:
    return f"file:{quote(path)}?mode=ro" + ("&immutable=1" if immutable else "")


def prepare(path: str, *, read_only: bool, migrate: bool, busy_timeout: float) -> None:
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
            raise translate(exc, path=path) from exc
    try:  # a directory fails here: IsADirectoryError, a StorageError naming it
        with target.open("rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise translate(exc, path=path) from exc
    if header and not header.startswith(SQLITE_MAGIC):
        raise NotAForkpointDatabase("the file is not an SQLite database", path=path)
    if header and len(header) < 100:
        raise DatabaseCorrupt(
            "the file is a truncated SQLite database (its header is cut short)", path=path
        )
    revision = _inspect(path, header) if header else None
    if not needs_upgrade(revision, path=path):
        return
    if read_only or not migrate:
        raise SchemaVersionError(
            f"database is at schema revision {revision!r}, not {HEAD_REVISION!r}; "
            "open it with migrate=True (or run `forkpoint migrate`)",
            path=path,
        )
    from .. import migrate as migrations

    try:
        migrations.upgrade(path, busy_timeout=busy_timeout)
    except CheckpointError:
        raise
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
        orig = getattr(exc, "orig", None)
        raise translate(orig if isinstance(orig, sqlite3.Error) else cause, path=path) from exc


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
        raise translate(exc, path=path) from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in conn.execute(SQL.TABLES)}
        revision = database_revision(conn)
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            kind = DatabaseCorrupt if code == sqlite3.SQLITE_CORRUPT else NotAForkpointDatabase
            raise kind(f"the file is not a usable SQLite database: {exc}", path=path) from exc
        raise translate(exc, path=path) from exc
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


def reader_uri(path: str, *, read_only_fs: bool) -> str:
    """The reader's URI: read-only, and immutable where SQLite could not open it otherwise.

    On a read-only file system SQLite cannot create the -shm it needs for a WAL
    database; nothing can change the file there, so it is read as immutable.
    """
    immutable = read_only_fs and not os.path.exists(path + "-shm")
    if immutable and file_size(path + "-wal") > 0:
        raise ReadOnlyDatabase(
            "the database has a pending write-ahead log but no -shm file and sits on a "
            "read-only file system; open it once where it is writable",
            path=path,
        )
    if immutable:
        return _ro_uri(path, immutable=True)
    # Elsewhere a read-write connection held to `query_only`: unlike a `mode=ro` one, the
    # last connection to close can remove the -wal/-shm files it needed, so reading a
    # database (`forkpoint threads`, read_only=True) leaves nothing behind.
    return f"file:{quote(path)}"


def on_read_only_fs(path: str) -> bool:
    """Whether the directory holding ``path`` is on a read-only file system."""
    try:
        return bool(os.statvfs(os.path.dirname(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def file_size(path: str) -> int:
    """Bytes of the database file and its WAL (0 for what does not exist)."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
