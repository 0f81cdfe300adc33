"""InMemoryCheckpointer: the reference implementation of every storage hook.

Every backend must behave exactly like this one (``tests/contract``). Rows
are kept already encoded by the base class's codec, so a state SQLite could
not store fails here too, and every load decodes a fresh copy. One lock
makes each hook atomic, which is all "one transaction" asks of it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import CheckpointRow, HistoryCheckpointer, R, ThreadRecord, ThreadRow
from .codec import EncodedCheckpoint, decode_metadata
from .errors import CheckpointNotFound, StepConflict, ThreadExists
from .models import S

__all__ = ["InMemoryCheckpointer"]


@dataclass
class _Thread:
    created_at: str
    updated_at: str
    metadata: str
    parent_thread_id: str | None = None
    parent_step: int | None = None
    rows: dict[int, EncodedCheckpoint] = field(default_factory=dict)  # insertion order = step order

    def record(self, thread_id: str) -> ThreadRow:
        latest = self.rows[next(reversed(self.rows))]
        return (
            thread_id,
            self.created_at,
            self.updated_at,
            latest.step,
            len(self.rows),
            self.parent_thread_id,
            self.parent_step,
            self.metadata,
            latest.node,
            latest.queue,
            latest.metadata,
        )


def _row_bytes(row: EncodedCheckpoint) -> int:
    """A row's stored size as prune reports it: every column's UTF-8 length, plus 16."""
    text = (row.thread_id, row.node, row.created_at, row.queue, row.metadata, row.state)
    return sum(len(part.encode("utf-8")) for part in text) + 16


def _scalar_matches(actual: object, expected: object) -> bool:
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
    """Whether decoded metadata matches a checked filter: the reference filter semantics."""
    if not isinstance(metadata, dict):
        return False
    for key, expected in flt.items():
        if key not in metadata:
            return False
        actual = metadata[key]
        if isinstance(expected, Mapping):
            if not metadata_matches(actual, expected):
                return False
        elif not _scalar_matches(actual, expected):
            return False
    return True


def _matches(text: str, flt: dict[str, Any] | None) -> bool:
    return flt is None or metadata_matches(decode_metadata(text), flt)


class InMemoryCheckpointer(HistoryCheckpointer[S]):
    """Keeps every checkpoint in process memory; nothing survives the process.

    ``keep_last`` (optional) is a retention policy enforced by every save.
    """

    def __init__(
        self,
        state_type: type[S],
        *,
        max_state_bytes: int | None = None,
        keep_last: int | None = None,
    ) -> None:
        super().__init__(state_type, max_state_bytes=max_state_bytes, keep_last=keep_last)
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.Lock()

    async def _close(self) -> None:
        """Drop all stored data."""
        with self._lock:
            self._threads.clear()

    # --- writes -------------------------------------------------------------------------------

    async def _store(
        self, row: EncodedCheckpoint, thread_metadata: str | None, now: str, keep_last: int | None
    ) -> None:
        with self._lock:
            thread = self._threads.get(row.thread_id)
            if thread is not None:
                latest = next(reversed(thread.rows))
                if row.step <= latest:
                    if thread.rows.get(row.step) == row:
                        return
                    raise StepConflict(
                        f"step {row.step} is not after the thread's latest step {latest}",
                        thread_id=row.thread_id,
                        step=row.step,
                    )
            else:
                thread = _Thread(created_at=now, updated_at=now, metadata="{}")
                self._threads[row.thread_id] = thread
            thread.rows[row.step] = row
            thread.updated_at = now
            if thread_metadata is not None:
                thread.metadata = thread_metadata
            if keep_last is not None:
                self._prune_thread(thread, keep_last, "~", dry_run=False)

    async def _copy_prefix(self, thread_id: str, at_step: int, target: str, now: str) -> str:
        with self._lock:
            existing = self._threads.get(target)
            if existing is not None:
                if existing.parent_thread_id == thread_id and existing.parent_step == at_step:
                    return target
                raise ThreadExists(
                    f"cannot fork into {target!r}: the thread exists", thread_id=target
                )
            source = self._threads.get(thread_id)
            if source is None or at_step not in source.rows:
                raise CheckpointNotFound(
                    f"cannot fork: no checkpoint at step {at_step} in thread {thread_id!r}",
                    thread_id=thread_id,
                    step=at_step,
                )
            self._threads[target] = _Thread(
                created_at=now,
                updated_at=now,
                metadata=source.metadata,
                parent_thread_id=thread_id,
                parent_step=at_step,
                rows={
                    step: row._replace(thread_id=target)
                    for step, row in source.rows.items()
                    if step <= at_step
                },
            )
            return target

    async def _delete_thread(self, thread_id: str) -> bool:
        with self._lock:
            return self._threads.pop(thread_id, None) is not None

    async def _set_thread_metadata(self, thread_id: str, metadata: str) -> bool:
        with self._lock:
            thread = self._threads.get(thread_id)
            if thread is not None:
                thread.metadata = metadata
            return thread is not None

    @staticmethod
    def _prune_thread(
        thread: _Thread, keep_last: int, cutoff: str, *, dry_run: bool
    ) -> tuple[int, int]:
        # The oldest steps only (a prefix of the history), as SQLite must: its
        # delta rows depend on newer ones. Below the latest, below the newest
        # keep_last, and below the first step created at or after the cutoff.
        steps = list(thread.rows)
        cut = len(steps) - keep_last
        young = next((i for i, s in enumerate(steps) if thread.rows[s].created_at >= cutoff), None)
        if young is not None:
            cut = min(cut, young)
        candidates = steps[: max(0, cut)]
        freed = sum(_row_bytes(thread.rows[s]) for s in candidates)
        if not dry_run:
            for step in candidates:
                del thread.rows[step]
        return len(candidates), freed

    async def _prune(
        self, thread_id: str | None, keep_last: int, cutoff: str, dry_run: bool
    ) -> list[tuple[int, int]]:
        with self._lock:
            ids = [thread_id] if thread_id is not None else list(self._threads)
            return [
                self._prune_thread(thread, keep_last, cutoff, dry_run=dry_run)
                for one in ids
                if (thread := self._threads.get(one)) is not None
            ]

    async def _delete_inactive(self, cutoff: str) -> list[str]:
        with self._lock:
            gone = sorted(t for t, rec in self._threads.items() if rec.updated_at < cutoff)
            for thread_id in gone:
                del self._threads[thread_id]
        return gone

    async def _restore(self, record: ThreadRecord, rows: Sequence[EncodedCheckpoint]) -> bool:
        thread_id, created_at, updated_at, _, _, parent_thread_id, parent_step, metadata = record
        with self._lock:
            if thread_id in self._threads:
                return False
            self._threads[thread_id] = _Thread(
                created_at=created_at,
                updated_at=updated_at,
                metadata=metadata,
                parent_thread_id=parent_thread_id,
                parent_step=parent_step,
                rows={row.step: row for row in rows},
            )
            return True

    async def _replace_states(
        self, thread_id: str, latest_step: int, count: int, rows: Sequence[EncodedCheckpoint]
    ) -> bool:
        with self._lock:
            thread = self._threads.get(thread_id)
            if (
                thread is None
                or next(reversed(thread.rows)) != latest_step
                or len(thread.rows) != count
            ):
                return False
            thread.rows = {row.step: row for row in rows}
            return True

    # --- reads --------------------------------------------------------------------------------

    def _row(self, thread_id: str, step: int | None) -> EncodedCheckpoint | None:
        with self._lock:
            thread = self._threads.get(thread_id)
            if thread is None:
                return None
            return thread.rows.get(next(reversed(thread.rows)) if step is None else step)

    async def _read_row(
        self, thread_id: str, step: int | None, decode: Callable[[EncodedCheckpoint], R]
    ) -> R | None:
        row = self._row(thread_id, step)
        return None if row is None else decode(row)

    async def _stream_rows(
        self, thread_id: str, top: int | None
    ) -> AsyncIterator[EncodedCheckpoint]:
        with self._lock:
            thread = self._threads.get(thread_id)
            rows = [] if thread is None else list(thread.rows.values())
        for row in reversed(rows):
            if top is None or row.step <= top:
                yield row

    async def _read_raw(self, thread_id: str, step: int) -> str | None:
        row = self._row(thread_id, step)
        return None if row is None else row.state

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
        with self._lock:
            thread = self._threads.get(thread_id)
            rows = [] if thread is None else list(thread.rows.values())
        if newest_first:
            rows.reverse()
        out: list[CheckpointRow] = []
        for row in rows:
            if limit is not None and len(out) >= limit:
                break
            if (after is not None and row.step <= after) or (
                before is not None and row.step >= before
            ):
                continue
            if _matches(row.metadata, filter):
                out.append((row.step, row.created_at, row.node, row.metadata, row.queue))
        return decode(out)

    async def _page_threads(
        self,
        decode: Callable[[Sequence[ThreadRow]], list[R]],
        after: str | None,
        limit: int | None,
        filter: dict[str, Any] | None,
    ) -> list[R]:
        with self._lock:
            out: list[ThreadRow] = []
            for thread_id, thread in sorted(self._threads.items()):
                if limit is not None and len(out) >= limit:
                    break
                if (after is None or thread_id > after) and _matches(thread.metadata, filter):
                    out.append(thread.record(thread_id))
        return decode(out)

    async def _thread_record(self, thread_id: str) -> ThreadRow | None:
        with self._lock:
            thread = self._threads.get(thread_id)
            return None if thread is None else thread.record(thread_id)

    async def _forks_of(self, thread_id: str) -> list[ThreadRow]:
        with self._lock:
            return [
                t.record(tid)
                for tid, t in sorted(self._threads.items())
                if t.parent_thread_id == thread_id
            ]
