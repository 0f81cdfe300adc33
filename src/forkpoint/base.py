"""The contract: abstract checkpointers whose docstrings are the specification.

Every backend (in-memory, SQLite, later PostgreSQL) implements
:class:`HistoryCheckpointer` and must behave exactly like
:class:`~forkpoint.InMemoryCheckpointer`, the reference; ``tests/contract``
holds each backend to it.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, Self

from pydantic import BaseModel, ConfigDict

from .errors import ForkNotSupported, InvalidInput
from .models import (
    MAX_STEP,
    Checkpoint,
    CheckpointMetadata,
    S,
    ThreadInfo,
    check_step,
    check_thread_id,
)

__all__ = ["Checkpointer", "HistoryCheckpointer", "MetadataFilter", "PruneReport"]

MetadataFilter = Mapping[str, Any]
"""``{key: value}`` matched exactly against metadata; a mapping value matches nested keys."""

MAX_FILTER_DEPTH = 8


class PruneReport(BaseModel):
    """What :meth:`HistoryCheckpointer.prune` removed (or, with ``dry_run``, would remove).

    ``bytes_freed`` counts the stored bytes of the removed rows; the file
    shrinks only after ``vacuum()`` (SQLite) returns the pages to the system.
    """

    model_config = ConfigDict(frozen=True)

    dry_run: bool
    threads_touched: int
    checkpoints_removed: int
    bytes_freed: int


class Checkpointer(ABC, Generic[S]):
    """Saves and loads the latest checkpoint of a thread (the seed's ``Checkpointer``)."""

    @abstractmethod
    async def save(
        self, checkpoint: Checkpoint[S], *, thread_metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Store ``checkpoint`` durably; when this returns, the save is committed.

        ``thread_metadata``, when given, becomes the thread's metadata in the
        same transaction (on the first save or any later one).

        The first save of a thread creates it. Steps strictly increase within a
        thread: saving a step at or below the thread's latest raises
        ``StepConflict``, unless the checkpoint is identical to the one stored
        at that step, which is a no-op (a retry after a lost acknowledgement is
        safe). Of two writers racing for one step exactly one wins. Invalid
        input (thread id, step, state of the wrong type, values JSON cannot
        hold) raises ``InvalidInput``/``SerializationError`` before anything is
        written. A failing save changes nothing.

        This deliberately departs from the seed, whose in-memory ``save``
        pushed duplicates of a step onto the history.
        """

    @abstractmethod
    async def load(self, thread_id: str) -> Checkpoint[S] | None:
        """The thread's checkpoint with the highest step, or None if the thread does not exist.

        Returns a fresh copy; mutating it never changes what is stored. A
        stored row that no longer validates raises ``SerializationError``
        naming thread and step.
        """

    async def close(self) -> None:
        """Release resources; later calls raise ``CheckpointerClosed``."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class HistoryCheckpointer(Checkpointer[S]):
    """A checkpointer that keeps every step: history, fork, threads, retention."""

    @abstractmethod
    async def get(self, thread_id: str, step: int) -> Checkpoint[S] | None:
        """The checkpoint at exactly ``step``, or None (unknown thread or step)."""

    @abstractmethod
    async def list_checkpoints(
        self,
        thread_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        filter: MetadataFilter | None = None,
    ) -> list[CheckpointMetadata]:
        """Metadata of the thread's checkpoints in step order, within the exclusive bounds.

        ``after``/``before`` are exclusive step bounds; ``limit`` caps the page
        (applied after ordering, so ``newest_first=True, limit=1`` is the
        latest); ``filter`` keeps checkpoints whose metadata matches (see
        :func:`check_filter`). Never reads or decodes a state: the cost follows
        the page, not the thread. An unknown thread gives an empty list.
        """

    async def fork(self, thread_id: str, at_seq: int, *, new_thread_id: str | None = None) -> str:
        """Copy steps ≤ ``at_seq`` of ``thread_id`` into a new thread and return its id.

        The copies keep state, node, queue, created_at and metadata; only the
        thread id changes, and the new thread records ``parent_thread_id`` and
        ``parent_step``. The new id is a fresh UUID4 string unless the caller
        passes ``new_thread_id``; passing the same id again after a lost reply
        returns the same fork (idempotent), while an id taken by any other
        thread raises ``ThreadExists``. An unknown thread or step raises
        ``CheckpointNotFound`` naming both, and nothing is created. The threads
        are independent afterwards; deleting the parent leaves the fork whole.

        The default, as in the seed, raises ``ForkNotSupported``.
        """
        raise ForkNotSupported(f"fork() is not implemented by {type(self).__name__}")

    @abstractmethod
    async def list_threads(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        filter: MetadataFilter | None = None,
    ) -> list[ThreadInfo]:
        """Threads ordered by id, starting after the id ``after`` (a page cursor)."""

    @abstractmethod
    async def thread_info(self, thread_id: str) -> ThreadInfo | None:
        """Summary and lineage of one thread, or None."""

    @abstractmethod
    async def list_forks(self, thread_id: str) -> list[ThreadInfo]:
        """The threads forked directly from ``thread_id``, ordered by id."""

    @abstractmethod
    async def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread and all its checkpoints; whether it existed. Forks stay intact."""

    @abstractmethod
    async def set_thread_metadata(self, thread_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace a thread's metadata; ``CheckpointNotFound`` if the thread does not exist."""

    @abstractmethod
    async def prune(
        self,
        thread_id: str | None = None,
        *,
        keep_last: int | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Remove old checkpoints of one thread (or of all threads).

        A checkpoint is removed when every given condition holds: it is not
        among the thread's ``keep_last`` newest, and its ``created_at`` is more
        than ``older_than`` ago. A thread's latest checkpoint is never removed. ``dry_run`` reports without
        removing. Forks hold their own copies, so pruning never breaks one.
        """

    @abstractmethod
    async def delete_threads(self, *, inactive_for: timedelta) -> list[str]:
        """Delete every thread not written for ``inactive_for``; the ids deleted, sorted."""

    @abstractmethod
    async def restore_thread(self, info: ThreadInfo, checkpoints: Sequence[Checkpoint[S]]) -> None:
        """Recreate a thread exactly as exported, in one transaction (used by import).

        Its record keeps ``info``'s times, lineage and metadata; ``checkpoints``
        (all of ``info.thread_id``, strictly increasing steps, the last one at
        ``info.latest_step``) are stored as given. ``ThreadExists`` if the id
        is taken; ``InvalidInput`` if the pieces disagree. Nothing is written
        on any error.
        """


# --- argument checks shared by every backend ----------------------------------------------


def check_bounds(
    after: object, before: object, limit: object
) -> tuple[int | None, int | None, int | None]:
    """Validate list_checkpoints' bounds; InvalidInput if any is not acceptable."""
    a = None if after is None else check_step(after, "after")
    b = None if before is None else check_step(before, "before")
    n = None if limit is None else check_limit(limit)
    return a, b, n


def check_restore(info: object, checkpoints: Sequence[object]) -> str:
    """Validate restore_thread's arguments; the thread id."""
    if not isinstance(info, ThreadInfo):
        raise InvalidInput(f"info must be a ThreadInfo, not {type(info).__name__}")
    thread_id = check_thread_id(info.thread_id)
    if not checkpoints:
        raise InvalidInput("a thread needs at least one checkpoint", thread_id=thread_id)
    steps = [getattr(cp, "step", None) for cp in checkpoints]
    if any(getattr(cp, "thread_id", None) != thread_id for cp in checkpoints):
        raise InvalidInput(
            "every checkpoint must belong to the restored thread", thread_id=thread_id
        )
    if any(
        type(a) is not int or type(b) is not int or a >= b for a, b in itertools.pairwise(steps)
    ):
        raise InvalidInput("checkpoint steps must strictly increase", thread_id=thread_id)
    if steps[-1] != info.latest_step:
        raise InvalidInput("the last checkpoint is not at info.latest_step", thread_id=thread_id)
    if (info.parent_thread_id is None) != (info.parent_step is None):
        raise InvalidInput(
            "parent_thread_id and parent_step are set together or not at all", thread_id=thread_id
        )
    if info.parent_thread_id is not None:
        check_thread_id(info.parent_thread_id)
        check_step(info.parent_step, "parent_step")
    return thread_id


def check_limit(limit: object) -> int:
    """A page size: an int ≥ 0 (any size past ``MAX_STEP`` means "all", and is capped there)."""
    if type(limit) is not int or limit < 0:
        raise InvalidInput(f"limit must be an int ≥ 0, not {limit!r}")
    return min(limit, MAX_STEP)


def check_filter(flt: object, depth: int = 0) -> dict[str, Any]:
    """Validate a metadata filter and return it as a plain dict.

    Keys are any strings (they are bound as SQL parameters, never pasted into
    SQL). Values are JSON scalars (``None``, bool, int, finite float, str),
    matched by type and value (``True`` does not match ``1``), or mappings,
    which match nested keys of an object.
    """
    if not isinstance(flt, Mapping):
        raise InvalidInput(f"filter must be a mapping, not {type(flt).__name__}")
    if depth >= MAX_FILTER_DEPTH:
        raise InvalidInput(f"filter nests deeper than {MAX_FILTER_DEPTH} levels")
    out: dict[str, Any] = {}
    for key, value in flt.items():
        if not isinstance(key, str):
            raise InvalidInput(f"filter key {key!r} is not a str")
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            # Stored metadata never holds U+0000 (see codec._plain_json).
            raise InvalidInput(f"filter entry {key!r} holds U+0000 (NUL), which metadata cannot")
        if isinstance(value, Mapping):
            out[key] = check_filter(value, depth + 1)
        elif (
            value is None
            or isinstance(value, bool | str)
            or (isinstance(value, int) and -MAX_STEP - 1 <= value <= MAX_STEP)
            or (isinstance(value, float) and math.isfinite(value))
        ):
            out[key] = value
        else:
            raise InvalidInput(
                f"filter value for {key!r} must be a JSON scalar (an integer within 64 bits) "
                "or a mapping"
            )
    return out


def scalar_matches(actual: object, expected: object) -> bool:
    """JSON equality of one scalar: type class and value (bool is not a number)."""
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual == expected
    if isinstance(expected, int | float):
        return (
            isinstance(actual, int | float) and not isinstance(actual, bool) and actual == expected
        )
    return isinstance(actual, str) and actual == expected


def metadata_matches(metadata: object, flt: Mapping[str, Any]) -> bool:
    """Whether decoded metadata matches a checked filter (the reference semantics)."""
    if not isinstance(metadata, dict):
        return False
    for key, expected in flt.items():
        if key not in metadata:
            return False
        actual = metadata[key]
        if isinstance(expected, Mapping):
            if not metadata_matches(actual, expected):
                return False
        elif not scalar_matches(actual, expected):
            return False
    return True


def check_prune(
    thread_id: object, keep_last: object, older_than: object, dry_run: object
) -> tuple[str | None, int | None, timedelta | None]:
    """Validate prune's arguments."""
    tid = None if thread_id is None else check_thread_id(thread_id)
    keep = check_keep_last(keep_last)
    if older_than is not None and (
        not isinstance(older_than, timedelta) or older_than < timedelta(0)
    ):
        raise InvalidInput(f"older_than must be a non-negative timedelta, not {older_than!r}")
    if keep_last is None and older_than is None:
        raise InvalidInput("prune needs keep_last, older_than, or both")
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run must be a bool")
    return tid, keep, older_than


def check_keep_last(keep_last: object) -> int | None:
    """A retention count (prune's, or a checkpointer's policy): None or an int ≥ 1.

    Past ``MAX_STEP`` "keep the newest N" keeps everything; it is capped there
    so SQLite can bind it.
    """
    if keep_last is None:
        return None
    if type(keep_last) is not int or keep_last < 1:
        raise InvalidInput(f"keep_last must be an int ≥ 1, not {keep_last!r}")
    return min(keep_last, MAX_STEP)


def check_inactive_for(inactive_for: object) -> timedelta:
    """Validate delete_threads' TTL."""
    if not isinstance(inactive_for, timedelta) or inactive_for < timedelta(0):
        raise InvalidInput(f"inactive_for must be a non-negative timedelta, not {inactive_for!r}")
    return inactive_for
