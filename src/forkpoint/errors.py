"""Every error forkpoint raises, as one tree rooted at :class:`CheckpointError`.

Catch ``CheckpointError`` to handle them all; catch a branch for one kind of
failure. Driver errors (``sqlite3``, ``OSError``) never escape untranslated:
they are chained as ``__cause__`` of one of these.

::

    CheckpointError                  the root: catch it to handle every forkpoint error
    ├── InvalidInput (ValueError)    bad argument, caught before anything is written
    │   └── StateTooLarge            encoded state over ``max_state_bytes``
    ├── CheckpointNotFound (LookupError)  an operation needs a thread or step that does not exist
    ├── StepConflict                 step not after the thread's latest (and not an identical retry)
    ├── ThreadExists                 fork into a caller-chosen id that is taken by another thread
    ├── SerializationError           a state that cannot be stored, or a stored row that no longer decodes
    ├── SchemaVersionError           database schema newer than this forkpoint, or not migrated
    ├── StorageError                 the database file or the disk failed us
    │   ├── NotAForkpointDatabase    not SQLite, or another application's SQLite file
    │   │   └── DatabaseCorrupt      an SQLite file whose pages no longer read (truncated, damaged)
    │   ├── DatabaseLocked           another writer held the lock past the busy timeout
    │   ├── StorageFull              disk (or max_page_count) full
    │   ├── ReadOnlyDatabase         opened read-only, or a read-only file system
    │   ├── DiskIOError              the operating system reported an I/O error (EIO, EFBIG, …)
    │   ├── CheckpointerClosed       used after close()
    │   └── ForkedProcess            used in a child after os.fork(); open a new one there
    ├── ForkNotSupported             a checkpointer that keeps no history to fork from
    └── CalledFromEventLoop (RuntimeError)  a forkpoint.sync call in a thread running an event loop
"""

from __future__ import annotations

__all__ = [
    "CalledFromEventLoop",
    "CheckpointError",
    "CheckpointNotFound",
    "CheckpointerClosed",
    "DatabaseCorrupt",
    "DatabaseLocked",
    "DiskIOError",
    "ForkNotSupported",
    "ForkedProcess",
    "InvalidInput",
    "NotAForkpointDatabase",
    "ReadOnlyDatabase",
    "SchemaVersionError",
    "SerializationError",
    "StateTooLarge",
    "StepConflict",
    "StorageError",
    "StorageFull",
    "ThreadExists",
]


class CheckpointError(Exception):
    """Base of every forkpoint error.

    ``thread_id``, ``step`` and ``path`` say where it happened, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        thread_id: str | None = None,
        step: int | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.thread_id = thread_id
        self.step = step
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(f"database {self.path!r}")
        if self.thread_id is not None:
            where.append(f"thread {self.thread_id!r}")
        if self.step is not None:
            where.append(f"step {self.step}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class InvalidInput(CheckpointError, ValueError):
    """An argument is not acceptable; nothing was read or written."""


class StateTooLarge(InvalidInput):
    """The encoded state is larger than the checkpointer's ``max_state_bytes``."""


class CheckpointNotFound(CheckpointError, LookupError):
    """An operation needs a thread, or a step within it, that does not exist.

    Raised by calls that act on something (``fork``, ``set_thread_metadata``,
    the runner's resume). Calls that only ask (``load``, ``get``,
    ``get_raw``, ``thread_info``) answer None instead; ``delete_thread``
    answers False.
    """


class StepConflict(CheckpointError):
    """The step is not greater than the thread's latest step.

    Raised unless the checkpoint is identical to the one stored at that step,
    in which case the save is a no-op (a safe retry).
    """


class ThreadExists(CheckpointError):
    """A fork was asked to create a thread id that another thread already has."""


class SerializationError(CheckpointError):
    """A state cannot be stored as JSON, or a stored row no longer decodes."""


class SchemaVersionError(CheckpointError):
    """The database schema is not the one this version of forkpoint runs on."""


class StorageError(CheckpointError):
    """The database or the file system failed."""


class NotAForkpointDatabase(StorageError):
    """The file is not SQLite, or is another application's SQLite database."""


class DatabaseCorrupt(NotAForkpointDatabase):
    """The file is SQLite but damaged: a page is missing or malformed (SQLITE_CORRUPT)."""


class DiskIOError(StorageError):
    """The operating system failed a read, write or sync (SQLITE_IOERR); the file may be fine."""


class DatabaseLocked(StorageError):
    """Another connection held the write lock for longer than the busy timeout."""


class StorageFull(StorageError):
    """The disk, or the database's page limit, is full."""


class ReadOnlyDatabase(StorageError):
    """A write was attempted on a read-only checkpointer or file system."""


class CheckpointerClosed(StorageError):
    """The checkpointer was closed."""


class ForkedProcess(StorageError):
    """The checkpointer was opened in a parent process; open a new one in the child."""


class ForkNotSupported(CheckpointError):
    """This backend keeps no history to fork from."""


class CalledFromEventLoop(CheckpointError, RuntimeError):
    """A blocking ``forkpoint.sync`` call was made in a thread that is running an event loop.

    Raised at once, before anything runs: waiting there would block that loop
    (or, on the sync checkpointer's own loop, never end). Await the async
    checkpointer in async code.
    """
