"""Error translation: every driver or file-system failure becomes a typed ``CheckpointError``.

Decided from error codes (``sqlite_errorcode``, ``errno``) and from the
engine's own state, never from message text.
"""

from __future__ import annotations

import errno
import sqlite3

from ..errors import (
    CheckpointError,
    DatabaseCorrupt,
    DatabaseLocked,
    DiskIOError,
    NotAForkpointDatabase,
    ReadOnlyDatabase,
    StateTooLarge,
    StorageError,
    StorageFull,
)

__all__ = ["DRIVER_ERRORS", "located", "translate"]

DRIVER_ERRORS = (sqlite3.Error, OSError)
"""What a job may raise besides a CheckpointError; :func:`translate` types each."""

_OS_ERRORS: dict[int, type[CheckpointError]] = {
    errno.ENOSPC: StorageFull,
    errno.EDQUOT: StorageFull,
    errno.EFBIG: StorageFull,
    errno.EROFS: ReadOnlyDatabase,
    errno.EIO: DiskIOError,
}

_SQLITE_ERRORS: dict[int, tuple[type[CheckpointError], str]] = {
    sqlite3.SQLITE_BUSY: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_LOCKED: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_FULL: (StorageFull, "storage is full"),
    sqlite3.SQLITE_READONLY: (ReadOnlyDatabase, "database is read-only"),
    sqlite3.SQLITE_TOOBIG: (StateTooLarge, "checkpoint is too large for SQLite"),
    sqlite3.SQLITE_NOTADB: (NotAForkpointDatabase, "not a usable SQLite database"),
    sqlite3.SQLITE_CORRUPT: (DatabaseCorrupt, "the database file is damaged"),
    sqlite3.SQLITE_IOERR: (DiskIOError, "disk I/O error"),
}


def translate(
    exc: BaseException, *, path: str, thread_id: str | None = None, step: int | None = None
) -> CheckpointError:
    """A typed CheckpointError for a driver error (chain it as the cause)."""
    if isinstance(exc, CheckpointError):
        return located(exc, path)
    kind: type[CheckpointError] = StorageError
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        kind, message = _SQLITE_ERRORS.get(code, (StorageError, "SQLite failed"))
        message = f"{message}: {exc} ({name})"
    elif isinstance(exc, OSError):
        kind = _OS_ERRORS.get(exc.errno or 0, StorageError)
        message = f"file system error: {exc}"
    else:
        message = f"unexpected failure: {exc!r}"
    return kind(message, path=path, thread_id=thread_id, step=step)


def located(exc: CheckpointError, path: str) -> CheckpointError:
    """``exc`` naming the database (errors raised on a worker thread do not know it)."""
    if exc.path is None:
        exc.path = path
        exc.args = (exc._render(),)
    return exc
