"""Opening a database file: create, check that it is forkpoint's, migrate; the connection URIs.

Nothing here modifies a file that is not a forkpoint database (or an empty
one to become one), and nothing is created for a path that cannot be used.
The door, in order: the path (NUL, not UTF-8, too long: ``InvalidInput``),
what it leads to (a regular file, or nothing yet; FIFOs, devices, sockets and
folders are refused without ever opening them in a blocking way), the SQLite
header, ``application_id``, the revision, and the schema itself
(``_schema.check_schema``: tables, columns and indexes exactly forkpoint's, no
views or triggers). The schema revision rule is ``migrate.needs_upgrade``,
the same one the migration itself applies.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from urllib.parse import quote

from ..errors import (
    CheckpointError,
    DatabaseCorrupt,
    InvalidInput,
    NotAForkpointDatabase,
    ReadOnlyDatabase,
    SchemaVersionError,
    StorageError,
)
from ..migrate import (
    APPLICATION_ID,
    HEAD_REVISION,
    KNOWN_REVISIONS,
    database_revision,
    needs_upgrade,
)
from ._errors import translate
from ._schema import check_schema
from ._sql import SQL

__all__ = ["check_path", "close_reader", "file_size", "on_read_only_fs", "prepare", "reader_uri"]

SQLITE_MAGIC = b"SQLite format 3\x00"


def _ro_uri(path: str, *, immutable: bool = False) -> str:
    return f"file:{quote(path)}?mode=ro" + ("&immutable=1" if immutable else "")


def check_path(path: str) -> os.stat_result | None:
    """The path's ``stat`` (None: nothing there yet); typed errors for paths SQLite cannot use.

    Runs before anything is created: a NUL, a name that is not UTF-8 (SQLite
    takes file names as UTF-8 text) or too long for the file system is
    ``InvalidInput``; a directory is a ``StorageError``, and anything else
    that is not a regular file (a FIFO would block the opener forever, a
    device is no database) is ``NotAForkpointDatabase``, for the database
    and for its ``-wal``/``-shm`` files alike.
    """
    if "\x00" in path:
        raise InvalidInput("the path contains a NUL character", path=path.replace("\x00", "\\0"))
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            "the path is not valid UTF-8 text (SQLite takes file names as UTF-8)",
            path=path.encode("utf-8", "backslashreplace").decode("utf-8"),
        ) from None
    found: os.stat_result | None = None
    for candidate in (path, path + "-wal", path + "-shm"):
        try:
            info = os.stat(candidate)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidInput("the path is too long for the file system", path=path) from exc
            raise translate(exc, path=path) from exc
        if stat.S_ISDIR(info.st_mode):
            raise StorageError(f"{candidate!r} is a directory, not a database file", path=path)
        if not stat.S_ISREG(info.st_mode):
            raise NotAForkpointDatabase(
                f"{candidate!r} is not a regular file (a FIFO, device or socket)", path=path
            )
        if candidate == path:
            found = info
    return found


def _read_header(path: str) -> bytes:
    """The first 100 bytes, read without ever blocking on something that is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise translate(exc, path=path) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in since check_path looked
            raise NotAForkpointDatabase("the path is not a regular file", path=path)
        return os.read(fd, 100)
    except OSError as exc:
        raise translate(exc, path=path) from exc
    finally:
        os.close(fd)


def prepare(path: str, *, read_only: bool, migrate: bool, busy_timeout: float) -> None:
    """Check (and create or migrate) the file at ``path``; never modifies a foreign file.

    Runs in a worker thread: it may take the write lock to migrate.
    """
    if check_path(path) is None:
        if read_only:
            raise StorageError("no database file", path=path)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass  # another opener made it a moment ago; go on with theirs
        except OSError as exc:
            raise translate(exc, path=path) from exc
    header = _read_header(path)
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
        conn.execute("BEGIN")  # one snapshot for every question below
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        objects = conn.execute(SQL.SCHEMA_OBJECTS).fetchone()[0]
        revision = database_revision(conn)
        wrong = (
            check_schema(conn, revision)
            if app_id == APPLICATION_ID and revision in KNOWN_REVISIONS
            else None
        )
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            kind = DatabaseCorrupt if code == sqlite3.SQLITE_CORRUPT else NotAForkpointDatabase
            raise kind(f"the file is not a usable SQLite database: {exc}", path=path) from exc
        raise translate(exc, path=path) from exc
    finally:
        conn.close()
    if wrong is not None:
        raise NotAForkpointDatabase(
            f"the file claims to be a forkpoint database but {wrong}", path=path
        )
    if app_id == APPLICATION_ID:
        return revision
    if app_id == 0 and not objects:
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


def reader_uri(path: str, *, read_only_fs: bool, read_only: bool = False) -> str:
    """The reader's URI: a connection that never writes the database or its write-ahead log.

    * On a read-only file system SQLite cannot create the -shm it needs for a
      WAL database; nothing can change the file there, so it is read as
      immutable.
    * A read-only checkpointer facing an existing ``-wal`` (a live writer, or
      one that crashed) reads through a ``mode=ro`` connection, as SQLite
      documents for read-only WAL access: committed saves in the log are read
      where they are, and neither the database nor the log is written (SQLite
      may create or rebuild its ``-shm`` index).
    * Otherwise a read-write connection held to ``query_only``: unlike a
      ``mode=ro`` one, the last connection to close removes the empty -wal/-shm
      files it needed, so reading a cleanly closed database (``forkpoint
      threads``, ``read_only=True``) leaves nothing behind. A read-only
      checkpointer closes it behind a guard when another process wrote to the
      log meanwhile (:func:`close_reader`), so it never folds that log in.
    """
    immutable = read_only_fs and not os.path.exists(path + "-shm")
    if immutable and _wal_size(path) > 0:
        raise ReadOnlyDatabase(
            "the database has a pending write-ahead log but no -shm file and sits on a "
            "read-only file system; open it once where it is writable",
            path=path,
        )
    if immutable:
        return _ro_uri(path, immutable=True)
    if read_only and os.path.exists(path + "-wal"):
        return _ro_uri(path)
    return f"file:{quote(path)}"


def close_reader(conn: sqlite3.Connection, path: str, read_only: bool) -> None:
    """Close a reader connection; a read-only one never folds another process's log into the file.

    A read-write connection that is the last to close checkpoints the WAL into
    the database and deletes it. For a read-only checkpointer whose log holds
    frames (another process wrote while it read), a ``mode=ro`` guard
    connection stays open across the close, so this connection is not the
    last, and the files are left as that process left them.
    """
    if not read_only or _wal_size(path) == 0:
        conn.close()
        return
    guard = sqlite3.connect(_ro_uri(path), uri=True)
    try:
        guard.execute("SELECT count(*) FROM sqlite_master").fetchone()  # joins the WAL
        conn.close()
    finally:
        guard.close()


def _wal_size(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


def on_read_only_fs(path: str) -> bool:
    """Whether the directory holding ``path`` is on a read-only file system."""
    try:
        return bool(os.statvfs(os.path.dirname(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def file_size(path: str) -> int:
    """Bytes of the database file and its WAL (0 for what does not exist)."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
