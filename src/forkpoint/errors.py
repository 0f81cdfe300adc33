"""Every error forkpoint raises, as one tree rooted at :class:`CheckpointError`.

Catch ``CheckpointError`` to handle them all; catch a branch for one kind of
failure. Driver errors (``sqlite3``, ``OSError``) never escape untranslated:
they are chained as ``__cause__`` of one of these.

::

    CheckpointError                  the root: catch it to handle every forkpoint error
    ├── InvalidInput (ValueError)    bad argument, caught before anything is written
    │   ├── StateTooLarge            encoded state over ``max_state_bytes``
    │   └── InvalidUpdate            a reducer refused a value of the wrong shape (names the field)
    ├── CheckpointNotFound (LookupError)  an operation needs a thread or step that does not exist
    ├── StepConflict                 step not after the thread's latest (and not an identical retry)
    ├── ThreadExists                 fork into a caller-chosen id that is taken by another thread
    ├── SerializationError           a state that cannot be stored, or a stored row that no longer decodes
    │   └── StateVersionError        a stored state its class cannot read: newer, unknown keys, failed step
    ├── SchemaVersionError           database schema newer than this forkpoint, or not migrated
    ├── StorageError                 the database file or the disk failed us
    │   ├── NotAForkpointDatabase    not SQLite, or another application's SQLite file
    │   │   └── DatabaseCorrupt      an SQLite file whose pages no longer read (truncated, damaged)
    │   ├── DatabaseLocked           another writer held the lock past the busy timeout
    │   ├── StorageFull              disk (or max_page_count) full
    │   ├── ReadOnlyDatabase         opened read-only, a read-only file system, or a standby server
    │   ├── DatabaseUnavailable      the database server cannot be reached (after one fresh connection)
    │   ├── DiskIOError              the operating system reported an I/O error (EIO, EFBIG, …)
    │   ├── CheckpointerClosed       used after close()
    │   └── ForkedProcess            used in a child after os.fork(); open a new one there
    ├── ForkNotSupported             a checkpointer that keeps no history to fork from
    ├── CalledFromEventLoop (RuntimeError)  a forkpoint.sync call in a thread running an event loop
    └── RunnerError                  the runner's errors
        ├── InvalidGraph (InvalidInput)       nodes, edges, routers or options that make no graph
        │   └── UnknownNodes                  a stored queue names nodes this runner lacks
        ├── InvalidNodeResult (InvalidInput)  a node returned something that is no update
        ├── ThreadAlreadyStarted     run() on a thread that already has checkpoints
        ├── ThreadFinished           resume() on a thread whose queue is empty
        ├── StepLimitReached         a run executed max_steps nodes and work is still pending
        ├── NodeFailed               a node raised and has no retry left (the cause is chained)
        └── NodeTimeout (TimeoutError)  one attempt of a node ran past its timeout
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CalledFromEventLoop",
    "CheckpointError",
    "CheckpointNotFound",
    "CheckpointerClosed",
    "DatabaseCorrupt",
    "DatabaseLocked",
    "DatabaseUnavailable",
    "DiskIOError",
    "ForkNotSupported",
    "ForkedProcess",
    "InvalidGraph",
    "InvalidInput",
    "InvalidNodeResult",
    "InvalidUpdate",
    "NodeFailed",
    "NodeTimeout",
    "NotAForkpointDatabase",
    "ReadOnlyDatabase",
    "RunnerError",
    "SchemaVersionError",
    "SerializationError",
    "StateTooLarge",
    "StateVersionError",
    "StepConflict",
    "StepLimitReached",
    "StorageError",
    "StorageFull",
    "ThreadAlreadyStarted",
    "ThreadExists",
    "ThreadFinished",
    "UnknownNodes",
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


class InvalidUpdate(InvalidInput):
    """A reducer refused an update: the value has the wrong shape for the field.

    ``field`` names the state field; e.g. a string given to an ``Append``
    field (a string is not a list of characters).
    """

    def __init__(self, message: str, *, field: str, **where: Any) -> None:
        self.field = field
        super().__init__(message, **where)


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


class StateVersionError(SerializationError):
    """A stored state that the state class, as it is now, cannot read without losing or inventing data.

    Raised when the row was written by a newer version of the class, when an
    upgrade step fails, or when the (upgraded) state does not validate, in
    particular when it holds keys the class does not know (``unknown_keys``).
    ``state_type`` is the class name; ``stored_version`` the version that
    wrote the row, ``current_version`` the class's; ``failed_step`` the
    version whose upgrade step failed, if one did.
    """

    def __init__(
        self,
        message: str,
        *,
        state_type: str,
        stored_version: int,
        current_version: int,
        unknown_keys: tuple[str, ...] = (),
        failed_step: int | None = None,
        thread_id: str | None = None,
        step: int | None = None,
        path: str | None = None,
    ) -> None:
        self.state_type = state_type
        self.stored_version = stored_version
        self.current_version = current_version
        self.unknown_keys = unknown_keys
        self.failed_step = failed_step
        super().__init__(message, thread_id=thread_id, step=step, path=path)


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
    """A write was attempted on a read-only checkpointer, file system or standby server."""


class DatabaseUnavailable(StorageError):
    """The database server closed the connection or cannot be reached.

    Raised after one retry on a fresh connection; what the failed call wrote
    was rolled back by the server, so retrying it later is safe.
    """


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


# --- the runner's errors (forkpoint.Runner) ------------------------------------------------


class RunnerError(CheckpointError):
    """Base of the runner's own errors."""


class InvalidGraph(RunnerError, InvalidInput):
    """The workflow definition is wrong: unknown node names, no entry node, bad callables.

    Raised by the ``Runner`` constructor; nothing is written.
    """


class UnknownNodes(InvalidGraph):
    """A stored queue names nodes this runner does not have (``nodes``, sorted).

    Raised by ``resume`` / ``recover`` before any node runs. If the nodes were
    renamed, pass ``renamed_nodes={"old": "new"}`` to the ``Runner``.
    """

    def __init__(self, message: str, *, nodes: Sequence[str], **where: Any) -> None:
        self.nodes = tuple(nodes)
        super().__init__(message, **where)


class InvalidNodeResult(RunnerError, InvalidInput):
    """A node or router returned something unusable (wrong type, unknown next node,
    an update that does not apply to the state). Nothing is saved for that node,
    so fixing the code and resuming runs it again."""


class ThreadAlreadyStarted(RunnerError):
    """``Runner.run`` was given a thread id that already has checkpoints; use resume."""


class ThreadFinished(RunnerError):
    """``Runner.resume`` on a thread whose latest checkpoint has an empty queue."""


class StepLimitReached(RunnerError):
    """A run executed ``limit`` nodes and the thread still has pending work.

    Raised after the last node's checkpoint is saved (``step`` is that
    checkpoint's): inspect the thread, then ``resume`` it, with a higher
    ``max_steps`` if the work is legitimately long.
    """

    def __init__(self, message: str, *, limit: int, **where: Any) -> None:
        self.limit = limit
        super().__init__(message, **where)


class NodeFailed(RunnerError):
    """A node raised on its last allowed attempt (or raised an exception its retry
    policy does not retry). The node's exception is ``__cause__`` (also ``cause``);
    ``node``, ``attempts`` and ``failures`` (one line per failed attempt) say what
    happened. Nothing was saved for the node: ``step`` is the thread's latest
    checkpoint, and ``resume`` runs the node again."""

    def __init__(
        self,
        message: str,
        *,
        node: str,
        cause: BaseException,
        failures: Sequence[str],
        **where: Any,
    ) -> None:
        self.node = node
        self.cause = cause
        self.failures = tuple(failures)
        self.attempts = len(self.failures)
        super().__init__(message, **where)


class NodeTimeout(RunnerError, TimeoutError):
    """One attempt of a node ran past its timeout and was cancelled.

    It is what a retry policy sees for that attempt (retried unless the
    policy's ``retry_on`` excludes it); when no attempt is left it is the
    ``__cause__`` of :class:`NodeFailed`.
    """

    def __init__(self, message: str, *, node: str, seconds: float, **where: Any) -> None:
        self.node = node
        self.seconds = seconds
        super().__init__(message, **where)
