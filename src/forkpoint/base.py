"""The contract: the checkpointer base classes, whose public methods are the specification.

Every public method of :class:`Checkpointer` and :class:`HistoryCheckpointer`
is concrete and lives here, once. It owns, in this order:

1. the closed state (:class:`~forkpoint.errors.CheckpointerClosed`) and the
   backend's own "usable" state (e.g. SQLite's ``ForkedProcess``), checked
   before any argument is looked at;
2. the argument checks (``forkpoint._checks``), in the order each docstring
   lists the arguments, so every backend raises the same error for the same call;
3. encoding with the one codec (``StateCodec``) before any storage is touched,
   and decoding stored rows back into models.

**Not found has one meaning.** A call that only asks (``load``, ``get``,
``get_raw``, ``thread_info``) answers None for a thread or step that does not
exist, and listings answer empty; a call that must act on one (``fork``,
``set_thread_metadata``) raises ``CheckpointNotFound``; ``delete_thread``
answers False.

A backend implements only the **storage hooks** below: narrow, async, on
*encoded* data (an :class:`~forkpoint.codec.EncodedCheckpoint`, JSON text,
RFC 3339 text), with no argument checks and no encoding. Each hook's
docstring states its atomicity: "one transaction" means every write it makes
commits together or not at all, and the reads deciding it (a conflict, an
existing id) see the same snapshot as the writes — a PostgreSQL backend
implements such a hook as one transaction whose first statement takes the
row locks it needs. :class:`~forkpoint.InMemoryCheckpointer` is the reference
implementation of every hook; ``tests/contract`` holds each backend to it, and
a new backend joins by adding one factory line to ``tests/conftest.py``.

Why one module of ~870 lines: it is the specification, read top to bottom —
every public method with its documented checks and errors, then every hook
with its atomicity. Splitting it would put a method and the hook it calls in
different files; the checks themselves live in ``_checks.py``.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from ._checks import (
    check_bounds,
    check_filter,
    check_inactive_for,
    check_keep_last,
    check_limit,
    check_page_size,
    check_prune,
    check_step,
    check_thread_id,
    cutoff_before,
)
from ._checks import check_restore as check_restore  # re-exported: the CLI's import checks
from .codec import EncodedCheckpoint, StateCodec, checkpoint_metadata, format_time, thread_info
from .errors import (
    CheckpointerClosed,
    CheckpointError,
    CheckpointNotFound,
    ForkNotSupported,
    InvalidInput,
    SerializationError,
    StepConflict,
    ThreadExists,
)
from .models import Checkpoint, CheckpointMetadata, S, StateSchema, ThreadInfo
from .state_check import StateCheckReport, StateUpgradeReport, check_states, upgrade_states

__all__ = ["Checkpointer", "HistoryCheckpointer", "MetadataFilter", "PruneReport"]

MetadataFilter = Mapping[str, Any]
"""``{key: value}`` matched exactly against metadata; a mapping value matches nested keys."""

CheckpointRow = tuple[int, str, str, str, str]
"""A history listing row as stored: ``(step, created_at, node, metadata, queue)``, all encoded."""

ThreadRecord = tuple[str, str, str, int, int, str | None, int | None, str]
"""A thread record as stored: ``(thread_id, created_at, updated_at, latest_step,
checkpoint_count, parent_thread_id, parent_step, metadata)``."""

ThreadRow = tuple[str, str, str, int, int, str | None, int | None, str, str, str, str]
"""A thread listing row: the :data:`ThreadRecord` followed by its latest checkpoint's
``(node, queue, metadata)`` (from which ``latest_node`` and ``status`` are read)."""

R = TypeVar("R")


def _undecoded(row: EncodedCheckpoint) -> EncodedCheckpoint:
    """The decoder that keeps a stored row as it is (for checks that decode it themselves)."""
    return row


APPEND_ATTEMPTS = 8
"""How many times :meth:`HistoryCheckpointer.append` tries a step before raising StepConflict."""

PAGE_SIZE = 256
"""Rows per page of the streaming listings (``iter_threads``, ``iter_checkpoints``)."""


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
    """Saves and loads the latest checkpoint of a thread.

    ``state_type`` is the user's state model; ``max_state_bytes`` refuses
    larger encoded states (``StateTooLarge``); ``keep_last`` is a retention
    policy every save enforces on the saved thread (its newest N are kept).
    """

    def __init__(
        self,
        state_type: type[S],
        *,
        max_state_bytes: int | None = None,
        keep_last: int | None = None,
    ) -> None:
        self._codec: StateCodec[S] = StateCodec(state_type, max_state_bytes=max_state_bytes)
        self._keep_last = check_keep_last(keep_last)
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    @property
    def state_type(self) -> type[S]:
        """The state model this checkpointer stores and returns."""
        return self._codec.state_type

    # --- the contract -------------------------------------------------------------------------

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
        safe). Of two writers racing for one step exactly one wins. Checks, in
        order: usable, then the checkpoint (thread id, step, node, time, queue,
        metadata, state: ``InvalidInput``/``SerializationError``), then
        ``thread_metadata`` — all before anything is written. A failing save
        changes nothing.
        """
        self._usable()
        row, meta, now = self._codec.encode_save(checkpoint, thread_metadata)
        await self._store(row, meta, now, self._keep_last)

    async def load(self, thread_id: str) -> Checkpoint[S] | None:
        """The thread's checkpoint with the highest step, or None if the thread does not exist.

        Returns a fresh copy; mutating it never changes what is stored. A
        stored row that no longer validates raises ``SerializationError``
        naming thread and step.
        """
        self._usable()
        check_thread_id(thread_id)
        return await self._read_row(thread_id, None, self._decode_row)

    async def close(self) -> None:
        """Release resources; every later call raises ``CheckpointerClosed``.

        Writes already queued finish first. Safe to call more than once and
        from several tasks at once: every call returns once the checkpointer
        is closed. A ``close()`` that is cancelled still completes.
        """
        self._closed = True
        closing = self._closing
        if closing is None or (
            closing.done() and (closing.cancelled() or closing.exception() is not None)
        ):
            closing = self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(closing)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- shared machinery ---------------------------------------------------------------------

    def _usable(self) -> None:
        """Raise if this checkpointer cannot be used: the backend's state, then closed."""
        self._check_backend()
        if self._closed:
            raise CheckpointerClosed("the checkpointer is closed", path=self._error_path)

    @property
    def _error_path(self) -> str | None:
        """What errors raised here name as their ``path`` (a database file), if anything."""
        return None

    def _decode_row(self, row: EncodedCheckpoint) -> Checkpoint[S]:
        return self._codec.decode(row, path=self._error_path)

    # --- storage hooks ------------------------------------------------------------------------

    def _check_backend(self) -> None:
        """Hook: raise a ``StorageError`` if the backend cannot serve calls (e.g. ForkedProcess).

        Called before every public method, before the closed check. Must not block.
        """

    @abstractmethod
    async def _store(
        self, row: EncodedCheckpoint, thread_metadata: str | None, now: str, keep_last: int | None
    ) -> None:
        """Hook, one transaction: store ``row`` as its thread's newest step.

        A missing thread is created (``created_at = updated_at = now``, metadata
        ``thread_metadata`` or ``"{}"``); an existing one gets ``updated_at =
        now`` and, when ``thread_metadata`` is not None, that metadata. If
        ``row.step`` is not after the thread's latest step: a no-op when the
        stored row at that step equals ``row`` exactly, else raise
        ``StepConflict`` writing nothing. With ``keep_last``, the thread's rows
        older than its newest ``keep_last`` go in the same transaction.
        """

    @abstractmethod
    async def _read_row(
        self, thread_id: str, step: int | None, decode: Callable[[EncodedCheckpoint], R]
    ) -> R | None:
        """Hook, one read snapshot: ``decode`` of the row at ``step`` (None: the latest), or None.

        The row carries its full state. A stored row whose state cannot be
        rebuilt raises ``SerializationError`` naming thread and step.
        ``decode`` does no I/O and never awaits; whatever it raises must reach
        the caller unchanged (it may run user code: validators, upgrade steps).
        A backend runs it where it reads when that saves work (SQLite: on its
        reader thread, in the same round trip), else on the caller's loop.
        """

    @abstractmethod
    async def _close(self) -> None:
        """Hook: release the backend's resources; called once per successful close."""


class HistoryCheckpointer(Checkpointer[S]):
    """A checkpointer that keeps every step: history, fork, threads, retention."""

    # --- reading ------------------------------------------------------------------------------

    async def get(self, thread_id: str, step: int) -> Checkpoint[S] | None:
        """The checkpoint at exactly ``step``, or None (unknown thread or step).

        Checks, in order: usable, ``thread_id``, ``step``.
        """
        self._usable()
        check_thread_id(thread_id)
        check_step(step)
        return await self._read_row(thread_id, step, self._decode_row)

    async def get_raw(self, thread_id: str, step: int) -> str | bytes | None:
        """The stored state at ``step`` exactly as the store holds it, undecoded (for forensics).

        A backend storing reverse deltas returns the delta text for such a
        step. None if there is no such checkpoint.
        """
        self._usable()
        check_thread_id(thread_id)
        check_step(step)
        return await self._read_raw(thread_id, step)

    async def check_states(
        self,
        state_type: type[StateSchema],
        *,
        all_steps: bool = False,
        page_size: int = 200,
        progress: Callable[[int, int], None] | None = None,
    ) -> StateCheckReport:
        """Whether the stored threads read with ``state_type``: the check to run before a deploy.

        Decodes each thread's latest checkpoint (every checkpoint with
        ``all_steps``) with ``state_type``, whatever class this checkpointer
        was opened with, running its upgrade steps on older rows, and reports
        per thread what would fail and why (:class:`StateCheckReport`; its
        ``ok`` is true when nothing would). Reads ``page_size`` threads or
        steps at a time and calls ``progress(threads, checkpoints)`` after each
        page of threads; writes nothing. Checks, in order: usable,
        ``state_type``, ``all_steps``, ``page_size``, ``progress``.
        """
        self._usable()

        async def read_row(thread_id: str, step: int | None) -> EncodedCheckpoint | None:
            return await self._read_row(thread_id, step, _undecoded)

        return await check_states(
            self,
            read_row,
            self._stream_rows,
            state_type,
            all_steps=all_steps,
            page_size=page_size,
            progress=progress,
        )

    async def upgrade_states(
        self,
        *,
        dry_run: bool = False,
        page_size: int = 200,
        progress: Callable[[int, int], None] | None = None,
    ) -> StateUpgradeReport:
        """Rewrite every stored state of an older version as the current version of ``state_type``.

        Reads never rewrite history; this does, on purpose, so that old rows no
        longer run upgrade steps and older code can no longer read them. One
        transaction per thread: a thread is rewritten only if every one of its
        checkpoints reads with the class (else it is reported, as
        ``check_states`` would, and left as it is), and only if no save or
        prune touched it since it was read (else it is reported in
        ``threads_changed``; run again). Only the state and its version change:
        steps, nodes, queues, times and metadata stay as stored. ``dry_run``
        writes nothing and reports what would be rewritten. Checks, in order:
        usable, ``dry_run``, ``page_size``, ``progress``; a checkpointer
        opened with ``JsonState`` is refused (``InvalidInput``).
        """
        self._usable()
        return await upgrade_states(
            self,
            self._codec,
            self._thread_rows,
            self._replace_states,
            dry_run=dry_run,
            page_size=page_size,
            progress=progress,
        )

    async def _thread_rows(self, thread_id: str) -> list[EncodedCheckpoint]:
        """Every stored row of a thread, oldest first, with full states."""
        rows = [row async for row in self._stream_rows(thread_id, None)]
        rows.reverse()
        return rows

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
        ``check_filter``). Never reads or decodes a state: the cost follows the
        page, not the thread. An unknown thread gives an empty list. Checks,
        in order: usable, ``thread_id``, ``after``, ``before``, ``limit``,
        ``filter``.
        """
        self._usable()
        check_thread_id(thread_id)
        lo, hi, n = check_bounds(after, before, limit)
        flt = None if filter is None else check_filter(filter)
        return await self._page_checkpoints(
            self._metadata_rows(thread_id), thread_id, lo, hi, n, bool(newest_first), flt
        )

    async def list_threads(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        filter: MetadataFilter | None = None,
    ) -> list[ThreadInfo]:
        """Threads ordered by id, starting after the id ``after`` (a page cursor).

        Checks, in order: usable, ``limit``, ``after``, ``filter``.
        """
        self._usable()
        n = None if limit is None else check_limit(limit)
        cursor = None if after is None else check_thread_id(after)
        flt = None if filter is None else check_filter(filter)
        return await self._page_threads(self._thread_infos, cursor, n, flt)

    async def thread_info(self, thread_id: str) -> ThreadInfo | None:
        """Summary and lineage of one thread, or None."""
        self._usable()
        check_thread_id(thread_id)
        found = await self._thread_record(thread_id)
        return None if found is None else self._thread_infos([found])[0]

    async def list_forks(self, thread_id: str) -> list[ThreadInfo]:
        """The threads forked directly from ``thread_id``, ordered by id."""
        self._usable()
        check_thread_id(thread_id)
        return self._thread_infos(await self._forks_of(thread_id))

    # --- streaming -----------------------------------------------------------------------------

    def iter_threads(
        self, *, filter: MetadataFilter | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[ThreadInfo]:
        """Every thread (matching ``filter``), ordered by id, read a page at a time.

        ``async for info in cp.iter_threads(): ...`` holds one page of
        ``page_size`` records in memory, whatever the number of threads. Each
        page is one read; threads created or deleted meanwhile may or may not
        appear, but none appears twice. Arguments are checked when this is
        called (usable, ``filter``, ``page_size``), not at the first iteration.
        """
        self._usable()
        flt = None if filter is None else check_filter(filter)
        size = check_page_size(page_size)
        return self._iter_threads(flt, size)

    async def _iter_threads(
        self, flt: dict[str, Any] | None, size: int
    ) -> AsyncIterator[ThreadInfo]:
        cursor: str | None = None
        while True:
            self._usable()
            page = await self._page_threads(self._thread_infos, cursor, size, flt)
            for info in page:
                yield info
            if len(page) < size:
                return
            cursor = page[-1].thread_id

    def iter_checkpoints(
        self,
        thread_id: str,
        *,
        newest_first: bool = False,
        filter: MetadataFilter | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[CheckpointMetadata]:
        """Metadata of every checkpoint of the thread (matching ``filter``), a page at a time.

        In step order (``newest_first`` reverses it); never reads a state. An
        unknown thread yields nothing. Checks, when called: usable,
        ``thread_id``, ``filter``, ``page_size``.
        """
        self._usable()
        check_thread_id(thread_id)
        flt = None if filter is None else check_filter(filter)
        size = check_page_size(page_size)
        return self._iter_checkpoints(thread_id, bool(newest_first), flt, size)

    async def _iter_checkpoints(
        self, thread_id: str, newest_first: bool, flt: dict[str, Any] | None, size: int
    ) -> AsyncIterator[CheckpointMetadata]:
        cursor: int | None = None
        while True:
            self._usable()
            after, before = (None, cursor) if newest_first else (cursor, None)
            page = await self._page_checkpoints(
                self._metadata_rows(thread_id), thread_id, after, before, size, newest_first, flt
            )
            for meta in page:
                yield meta
            if len(page) < size:
                return
            cursor = page[-1].step

    def iter_states(
        self, thread_id: str, *, before: int | None = None
    ) -> AsyncIterator[Checkpoint[S]]:
        """Every checkpoint of the thread with its state, newest to oldest.

        ``before`` (exclusive) starts below a step. Reading a whole thread
        costs O(its stored bytes): a backend storing reverse deltas applies
        each one once, against the state it has just returned, instead of
        rebuilding every step from the newest. Checkpoints pruned while the
        iteration runs end it early; the ones returned are always whole.
        Checks, when called: usable, ``thread_id``, ``before``.
        """
        self._usable()
        check_thread_id(thread_id)
        top = None if before is None else check_step(before, "before") - 1
        return self._iter_states(thread_id, top)

    async def _iter_states(self, thread_id: str, top: int | None) -> AsyncIterator[Checkpoint[S]]:
        if top is not None and top < 0:
            return
        async for row in self._stream_rows(thread_id, top):
            self._usable()
            yield self._codec.decode(row, path=self._error_path)

    # --- writing ------------------------------------------------------------------------------

    async def fork(
        self,
        thread_id: str,
        at_step: int | None = None,
        *,
        new_thread_id: str | None = None,
        at_seq: int | None = None,
    ) -> str:
        """Copy steps ≤ ``at_step`` of ``thread_id`` into a new thread and return its id.

        The copies keep state, node, queue, created_at and metadata; only the
        thread id changes, and the new thread records ``parent_thread_id`` and
        ``parent_step``. The new id is a fresh UUID4 string unless the caller
        passes ``new_thread_id``; passing the same id again after a lost reply
        returns the same fork (idempotent), while an id taken by any other
        thread raises ``ThreadExists``. An unknown thread or step raises
        ``CheckpointNotFound`` naming both, and nothing is created. The threads
        are independent afterwards; deleting the parent leaves the fork whole.
        Checks, in order: usable, ``thread_id``, ``at_step``, ``new_thread_id``.

        ``at_seq`` is the former name of ``at_step``, kept as a deprecated
        keyword (``DeprecationWarning``); passing both is ``InvalidInput``.
        """
        self._usable()
        check_thread_id(thread_id)
        if at_seq is not None:
            warnings.warn(
                "fork(at_seq=...) is deprecated; use at_step", DeprecationWarning, stacklevel=2
            )
            if at_step is not None:
                raise InvalidInput("pass at_step only (at_seq is its deprecated name)")
            at_step = at_seq
        if at_step is None:
            raise InvalidInput("fork needs at_step, the step to fork at")
        check_step(at_step, "at_step")
        target = str(uuid.uuid4()) if new_thread_id is None else check_thread_id(new_thread_id)
        return await self._copy_prefix(thread_id, at_step, target, _now())

    async def append(
        self,
        thread_id: str,
        state: S,
        *,
        node: str,
        queue: Sequence[tuple[str, int]] = (),
        metadata: Mapping[str, Any] | None = None,
        thread_metadata: Mapping[str, Any] | None = None,
    ) -> Checkpoint[S]:
        """Save ``state`` as the thread's next step and return the checkpoint saved.

        The step is the thread's latest plus one (0 for a new thread), so the
        caller never counts. Should another writer take that step first
        (``StepConflict``), the step is read again and the save retried, up to
        ``APPEND_ATTEMPTS`` times in all; then the last ``StepConflict`` is
        raised. Everything else is :meth:`save`'s contract: checks, in order,
        usable, ``thread_id``, then the checkpoint's fields, before anything is
        written. The returned checkpoint holds ``state`` itself, not a copy.
        """
        self._usable()
        check_thread_id(thread_id)
        for attempt in range(APPEND_ATTEMPTS):
            record = await self._thread_record(thread_id)
            checkpoint = self._codec.checkpoint_type.model_construct(
                thread_id=thread_id,
                state=self._codec.graph_state_type.model_construct(data=state),
                step=0 if record is None else record[3] + 1,
                node=node,
                queue=list(queue) if isinstance(queue, Sequence) else queue,
                created_at=_utcnow(),
                # A non-mapping stays as given, for save's check to refuse with InvalidInput.
                metadata=cast(
                    "Any",
                    {}
                    if metadata is None
                    else dict(metadata)
                    if isinstance(metadata, Mapping)
                    else metadata,
                ),
            )
            try:
                await self.save(checkpoint, thread_metadata=thread_metadata)
            except StepConflict:
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
                continue
            return checkpoint
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread and all its checkpoints; whether it existed. Forks stay intact."""
        self._usable()
        check_thread_id(thread_id)
        return await self._delete_thread(thread_id)

    async def set_thread_metadata(self, thread_id: str, metadata: Mapping[str, Any]) -> None:
        """Replace a thread's metadata; ``CheckpointNotFound`` if the thread does not exist."""
        self._usable()
        check_thread_id(thread_id)
        text = self._codec.encode_metadata(metadata, thread_id=thread_id)
        if not await self._set_thread_metadata(thread_id, text):
            raise CheckpointNotFound("no such thread", thread_id=thread_id, path=self._error_path)

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
        than ``older_than`` ago (any duration: one longer than the calendar
        removes nothing). A thread's latest checkpoint is never removed, and
        only a prefix of a thread's history (its oldest steps) is. ``dry_run``
        reports without removing. Forks hold their own copies, so pruning
        never breaks one.
        """
        self._usable()
        tid, keep, age = check_prune(thread_id, keep_last, older_than, dry_run)
        cutoff = "~" if age is None else format_time(cutoff_before(_utcnow(), age))
        touched = removed = freed = 0
        for count, size in await self._prune(tid, keep if keep is not None else 1, cutoff, dry_run):
            if count:
                touched += 1
                removed += count
                freed += size
        return PruneReport(
            dry_run=dry_run, threads_touched=touched, checkpoints_removed=removed, bytes_freed=freed
        )

    async def delete_threads(self, *, inactive_for: timedelta) -> list[str]:
        """Delete every thread not written for ``inactive_for``; the ids deleted, sorted.

        Any duration is accepted; one longer than the calendar deletes nothing.
        """
        self._usable()
        age = check_inactive_for(inactive_for)
        return await self._delete_inactive(format_time(cutoff_before(_utcnow(), age)))

    async def restore_thread(self, info: ThreadInfo, checkpoints: Sequence[Checkpoint[S]]) -> None:
        """Recreate a thread exactly as exported, in one transaction (used by import).

        Its record keeps ``info``'s times, lineage and metadata; ``checkpoints``
        (all of ``info.thread_id``, strictly increasing steps, the last one at
        ``info.latest_step``) are stored as given. ``ThreadExists`` if the id
        is taken; ``InvalidInput`` if the pieces disagree. Nothing is written
        on any error.
        """
        self._usable()
        thread_id = check_restore(info, checkpoints)
        rows = [self._codec.encode(cp) for cp in checkpoints]
        meta = self._codec.encode_metadata(info.metadata, thread_id=thread_id)
        record: ThreadRecord = (
            thread_id,
            format_time(info.created_at),
            format_time(info.updated_at),
            info.latest_step,
            len(rows),
            info.parent_thread_id,
            info.parent_step,
            meta,
        )
        if not await self._restore(record, rows):
            raise ThreadExists(
                "cannot restore: the thread exists", thread_id=thread_id, path=self._error_path
            )

    # --- decoding listing rows ----------------------------------------------------------------

    def _thread_infos(self, rows: Sequence[ThreadRow]) -> list[ThreadInfo]:
        return self._rows(rows, thread_info, "thread record", lambda r: (r[0], None))

    def _metadata_rows(
        self, thread_id: str
    ) -> Callable[[Sequence[CheckpointRow]], list[CheckpointMetadata]]:
        """The decoder of ``thread_id``'s listing rows (a damaged one names thread and step)."""

        def decode(rows: Sequence[CheckpointRow]) -> list[CheckpointMetadata]:
            return self._rows(
                rows, checkpoint_metadata, "checkpoint metadata", lambda r: (thread_id, r[0])
            )

        return decode

    def _rows(
        self,
        rows: Sequence[Any],
        decode: Callable[..., R],
        what: str,
        locate: Callable[[Any], tuple[str, int | None]],
    ) -> list[R]:
        """``decode(*row)`` for each stored row; a row that does not decode is a SerializationError."""
        out = []
        for row in rows:
            try:
                out.append(decode(*row))
            except (ValueError, TypeError) as exc:
                thread_id, step = locate(row)
                raise SerializationError(
                    f"stored {what} does not decode: {exc}",
                    # A damaged row may hold anything where the id and step belong.
                    thread_id=thread_id if isinstance(thread_id, str) else repr(thread_id),
                    step=step if type(step) is int else None,
                    path=self._error_path,
                ) from exc
        return out

    # --- storage hooks ------------------------------------------------------------------------

    @abstractmethod
    async def _read_raw(self, thread_id: str, step: int) -> str | bytes | None:
        """Hook, one read: the state exactly as stored at ``step`` (a delta stays a delta)."""

    @abstractmethod
    def _stream_rows(self, thread_id: str, top: int | None) -> AsyncIterator[EncodedCheckpoint]:
        """Hook: the thread's rows at steps ≤ ``top`` (None: all), newest first, full states.

        An async generator. Reads may be split into pages (each one read
        snapshot); the total work must be O(bytes stored), so a delta-storing
        backend carries each rebuilt state to the next older row. Rows
        removed meanwhile (a prune removes the oldest) end the stream early.
        """

    @abstractmethod
    async def _page_checkpoints(
        self,
        decode: Callable[[Sequence[CheckpointRow]], list[R]],
        thread_id: str,
        after: int | None,
        before: int | None,
        limit: int | None,
        newest_first: bool,
        filter: dict[str, Any] | None,
    ) -> list[R]:
        """Hook, one read snapshot: a page of the thread's listing rows, decoded, never a state.

        Rows with ``after < step < before`` (None: unbounded) whose metadata
        matches ``filter`` (exact JSON equality per key, type-strict: ``True``
        is not ``1``; a mapping matches nested keys; see the reference in
        ``memory.py``), ordered by step (descending with ``newest_first``),
        at most ``limit`` of them, passed through ``decode``.

        ``decode`` turns consecutive runs of rows into their entries (it does
        no I/O and raises ``SerializationError`` naming a damaged row); the
        result is its outputs concatenated. A backend may decode a chunk at a
        time as it reads (SQLite: on its reader thread), so the raw rows of a
        long page never all exist at once beside their entries.
        """

    @abstractmethod
    async def _page_threads(
        self,
        decode: Callable[[Sequence[ThreadRow]], list[R]],
        after: str | None,
        limit: int | None,
        filter: dict[str, Any] | None,
    ) -> list[R]:
        """Hook, one read snapshot: thread records with id > ``after``, by id, filtered,
        limited, passed through ``decode`` (as for :meth:`_page_checkpoints`)."""

    @abstractmethod
    async def _thread_record(self, thread_id: str) -> ThreadRow | None:
        """Hook, one read: one thread's record, or None."""

    @abstractmethod
    async def _forks_of(self, thread_id: str) -> Sequence[ThreadRow]:
        """Hook, one read: records of threads whose ``parent_thread_id`` is ``thread_id``, by id."""

    async def _copy_prefix(self, thread_id: str, at_step: int, target: str, now: str) -> str:
        """Hook, one transaction: fork ``thread_id``'s steps ≤ ``at_step`` into ``target``.

        If ``target`` exists: return it when its lineage is exactly
        (``thread_id``, ``at_step``), else raise ``ThreadExists``. If the source
        has no row at ``at_step``: raise ``CheckpointNotFound`` naming both.
        Otherwise create ``target`` (times ``now``, the source's metadata,
        lineage set) holding copies of the rows, and return ``target``. Its
        cost must not grow with a per-row round trip (one set-based copy).

        The default raises ``ForkNotSupported``, for a store that cannot copy.
        """
        raise ForkNotSupported(f"fork() is not implemented by {type(self).__name__}")

    @abstractmethod
    async def _delete_thread(self, thread_id: str) -> bool:
        """Hook, one transaction: delete the thread's rows and record; whether it existed."""

    @abstractmethod
    async def _set_thread_metadata(self, thread_id: str, metadata: str) -> bool:
        """Hook, one transaction: replace the record's metadata text; False if no such thread."""

    @abstractmethod
    async def _prune(
        self, thread_id: str | None, keep_last: int, cutoff: str, dry_run: bool
    ) -> Sequence[tuple[int, int]]:
        """Hook: remove old rows of one thread (None: of every thread); ``(rows, bytes)`` each.

        Per thread, the rows removed are those below its latest step, below
        its newest ``keep_last``, and below its first row with ``created_at >=
        cutoff`` (RFC 3339 text; ``"~"`` sorts after every time) — always a
        prefix of its history. Bytes count every stored column's UTF-8 length
        plus 16. ``dry_run`` counts without removing. Each thread's removal is
        one transaction (several threads may share one); its record's
        ``checkpoint_count`` follows.
        """

    @abstractmethod
    async def _delete_inactive(self, cutoff: str) -> list[str]:
        """Hook, one transaction: delete every thread with ``updated_at < cutoff``; ids, sorted."""

    @abstractmethod
    async def _restore(self, record: ThreadRecord, rows: Sequence[EncodedCheckpoint]) -> bool:
        """Hook, one transaction: insert ``record`` and ``rows`` as given; False if the id exists."""

    async def _replace_states(
        self, thread_id: str, latest_step: int, count: int, rows: Sequence[EncodedCheckpoint]
    ) -> bool:
        """Hook, one transaction: replace the thread's rows with ``rows`` (the same steps).

        False, writing nothing, unless the thread exists with ``latest_step``
        and ``count`` checkpoints. The thread record is not touched
        (``updated_at`` stays: a rewrite is no activity). The default refuses,
        for backends that cannot rewrite stored states.
        """
        raise CheckpointError(
            f"{type(self).__name__} cannot rewrite stored states", thread_id=thread_id
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _now() -> str:
    return format_time(_utcnow())
