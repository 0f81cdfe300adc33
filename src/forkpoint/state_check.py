"""Checking and rewriting a store's states against a state class: the engines of two base methods.

``HistoryCheckpointer.check_states`` (before a deploy: would every stored
thread read with this class?) and ``HistoryCheckpointer.upgrade_states``
(after one: store the old rows as the current version) run here, over the
public listings and the backend's row hooks, which the base class passes in.
Both read a page of threads at a time, so memory stays bounded on any store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import InvalidInput, SerializationError, StateVersionError

if TYPE_CHECKING:
    from .base import HistoryCheckpointer
    from .codec import EncodedCheckpoint, StateCodec
    from .models import StateSchema

__all__ = [
    "StateCheckReport",
    "StateProblem",
    "StateUpgradeReport",
    "ThreadStateCheck",
    "check_states",
    "upgrade_states",
]


# --- checking a store before a deploy ---------------------------------------------------------

ProblemKind = Literal["newer_version", "unknown_keys", "upgrade_failed", "invalid", "damaged"]


class StateProblem(BaseModel):
    """One stored checkpoint that the checked class would fail to read, and why."""

    model_config = ConfigDict(frozen=True)

    step: int
    kind: ProblemKind
    """``newer_version``: written by a newer class; ``unknown_keys``: holds keys the class
    does not know; ``upgrade_failed``: an upgrade step raised or returned no object;
    ``invalid``: the (upgraded) state does not validate; ``damaged``: the row is no JSON
    checkpoint at all."""
    stored_version: int | None
    message: str
    unknown_keys: tuple[str, ...] = ()


class ThreadStateCheck(BaseModel):
    """The problems found in one thread (only threads with problems are reported)."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    checkpoints_checked: int
    problems: tuple[StateProblem, ...]


class StateCheckReport(BaseModel):
    """What :meth:`~forkpoint.HistoryCheckpointer.check_states` found.

    ``stored_versions`` counts the checked checkpoints by the version that
    wrote them (every version below ``current_version`` runs upgrade steps
    when read); ``threads`` lists each thread with a problem, in id order.
    """

    model_config = ConfigDict(frozen=True)

    state_type: str
    current_version: int
    all_steps: bool
    threads_checked: int
    checkpoints_checked: int
    stored_versions: dict[int, int]
    threads: tuple[ThreadStateCheck, ...]

    @property
    def ok(self) -> bool:
        """Whether every checked checkpoint reads with the class."""
        return not self.threads


RowReader = Callable[[str, "int | None"], Awaitable["EncodedCheckpoint | None"]]
"""Reads one stored row with its full state: (thread id, step or None for the latest)."""

RowStream = Callable[[str, "int | None"], AsyncIterator["EncodedCheckpoint"]]
"""A thread's rows at steps ≤ top (None: all), newest first, with full states."""


def _problem(step: int, stored: int | None, exc: SerializationError) -> StateProblem:
    kind: ProblemKind = "damaged"
    keys: tuple[str, ...] = ()
    if isinstance(exc, StateVersionError):
        keys = exc.unknown_keys
        if exc.stored_version > exc.current_version:
            kind = "newer_version"
        elif keys:
            kind = "unknown_keys"
        elif exc.failed_step is not None:
            kind = "upgrade_failed"
        else:
            kind = "invalid"
    return StateProblem(
        step=step, kind=kind, stored_version=stored, message=exc.message, unknown_keys=keys
    )


async def check_states(
    history: HistoryCheckpointer[Any],
    read_row: RowReader,
    stream_rows: RowStream,
    state_type: type[StateSchema],
    *,
    all_steps: bool = False,
    page_size: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> StateCheckReport:
    """The engine of ``check_states``: decode stored rows with ``state_type``, a page at a time.

    Threads are listed ``page_size`` at a time; each thread's latest row comes
    from ``read_row``, or, with ``all_steps``, every row from ``stream_rows``
    (newest first, each reverse delta applied once), so memory stays bounded
    and the work follows the stored bytes. ``progress(threads, checkpoints)``
    is called after each page of threads. Nothing is written.
    """
    from .codec import StateCodec  # the codec imports this module

    codec = StateCodec(state_type)
    if type(all_steps) is not bool:
        raise InvalidInput(f"all_steps must be a bool, not {all_steps!r}")
    if type(page_size) is not int or page_size < 1:
        raise InvalidInput(f"page_size must be an int ≥ 1, not {page_size!r}")
    if progress is not None and not callable(progress):
        raise InvalidInput(
            f"progress must be a function of (threads, checkpoints), not {progress!r}"
        )

    async def rows_of(thread_id: str) -> AsyncIterator[EncodedCheckpoint | None]:
        if all_steps:
            async for row in stream_rows(thread_id, None):
                yield row
        else:
            yield await read_row(thread_id, None)

    versions: dict[int, int] = {}
    failing: list[ThreadStateCheck] = []
    threads = checkpoints = 0
    cursor: str | None = None
    while page := await history.list_threads(after=cursor, limit=page_size):
        cursor = page[-1].thread_id
        for info in page:
            problems: list[StateProblem] = []
            checked = 0
            rows = rows_of(info.thread_id)
            while True:
                try:
                    row = await anext(rows)
                except StopAsyncIteration:
                    break
                except SerializationError as exc:  # a row that cannot even be rebuilt
                    checked += 1
                    step = info.latest_step if exc.step is None else exc.step
                    problems.append(_problem(step, None, exc))
                    break
                if row is None:  # deleted meanwhile
                    break
                checked += 1
                versions[row.state_version] = versions.get(row.state_version, 0) + 1
                try:
                    codec.decode(row)
                except SerializationError as exc:
                    problems.append(_problem(row.step, row.state_version, exc))
            threads += 1
            checkpoints += checked
            if problems:
                failing.append(
                    ThreadStateCheck(
                        thread_id=info.thread_id,
                        checkpoints_checked=checked,
                        problems=tuple(sorted(problems, key=lambda p: p.step)),
                    )
                )
        if progress is not None:
            progress(threads, checkpoints)
    return StateCheckReport(
        state_type=state_type.__name__,
        current_version=state_type.state_version,
        all_steps=all_steps,
        threads_checked=threads,
        checkpoints_checked=checkpoints,
        stored_versions=dict(sorted(versions.items())),
        threads=tuple(failing),
    )


# --- rewriting a store to the current version --------------------------------------------------


class StateUpgradeReport(BaseModel):
    """What :meth:`~forkpoint.HistoryCheckpointer.upgrade_states` rewrote (or, dry, would).

    ``threads_upgraded`` threads had ``checkpoints_upgraded`` checkpoints of
    older versions, now stored as ``current_version`` (one transaction per
    thread). ``threads`` lists the threads left as they were because some
    checkpoint would not read (the problems, as ``check_states`` reports
    them); ``threads_changed`` those written to while they were being read,
    left as they were too: run the upgrade again.
    """

    model_config = ConfigDict(frozen=True)

    state_type: str
    current_version: int
    dry_run: bool
    threads_checked: int
    threads_upgraded: int
    checkpoints_upgraded: int
    threads_changed: tuple[str, ...]
    threads: tuple[ThreadStateCheck, ...]

    @property
    def ok(self) -> bool:
        """Whether every thread is now (or, dry, would be) stored at the current version."""
        return not self.threads and not self.threads_changed


RowsOf = Callable[[str], Awaitable["list[EncodedCheckpoint]"]]
"""All stored rows of one thread, oldest first, with full states."""

ReplaceStates = Callable[[str, int, int, "list[EncodedCheckpoint]"], Awaitable[bool]]
"""The backend's rewrite hook: (thread id, expected latest step, expected count, new rows)."""


async def upgrade_states(
    history: HistoryCheckpointer[Any],
    codec: StateCodec[Any],
    rows_of: RowsOf,
    replace: ReplaceStates,
    *,
    dry_run: bool = False,
    page_size: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> StateUpgradeReport:
    """The engine of ``upgrade_states``: every older row re-encoded as the current version.

    A thread is rewritten whole or not at all: only when every one of its rows
    reads with the class, and only if it still has the latest step and count
    it had when listed. Only the state column and its version change.
    """
    state_type = codec.state_type
    if getattr(state_type, "_reads_any_version", False):
        raise InvalidInput(
            f"{state_type.__name__} reads every version as stored; upgrade with a checkpointer "
            "opened with the state class whose version the rows should have"
        )
    if type(dry_run) is not bool:
        raise InvalidInput(f"dry_run must be a bool, not {dry_run!r}")
    if type(page_size) is not int or page_size < 1:
        raise InvalidInput(f"page_size must be an int ≥ 1, not {page_size!r}")
    if progress is not None and not callable(progress):
        raise InvalidInput(
            f"progress must be a function of (threads, checkpoints), not {progress!r}"
        )
    current = state_type.state_version
    failing: list[ThreadStateCheck] = []
    changed: list[str] = []
    threads = upgraded_threads = upgraded_rows = 0
    cursor: str | None = None
    while page := await history.list_threads(after=cursor, limit=page_size):
        cursor = page[-1].thread_id
        for info in page:
            threads += 1
            rows = await rows_of(info.thread_id)
            old = sum(1 for row in rows if row.state_version != current)
            if not old:
                continue
            new_rows: list[EncodedCheckpoint] = []
            problems: list[StateProblem] = []
            for row in rows:
                try:
                    if row.state_version == current:
                        new_rows.append(row)
                        continue
                    state = codec.decode(row).state.data
                    text = codec.encode_state(state, thread_id=row.thread_id, step=row.step)
                    new_rows.append(row._replace(state=text, state_version=current))
                except SerializationError as exc:
                    problems.append(_problem(row.step, row.state_version, exc))
            if problems:
                failing.append(
                    ThreadStateCheck(
                        thread_id=info.thread_id,
                        checkpoints_checked=len(rows),
                        problems=tuple(problems),
                    )
                )
                continue
            if not dry_run and not await replace(
                info.thread_id, info.latest_step, info.checkpoint_count, new_rows
            ):
                changed.append(info.thread_id)
                continue
            upgraded_threads += 1
            upgraded_rows += old
        if progress is not None:
            progress(threads, upgraded_rows)
    return StateUpgradeReport(
        state_type=state_type.__name__,
        current_version=current,
        dry_run=dry_run,
        threads_checked=threads,
        threads_upgraded=upgraded_threads,
        checkpoints_upgraded=upgraded_rows,
        threads_changed=tuple(changed),
        threads=tuple(failing),
    )
