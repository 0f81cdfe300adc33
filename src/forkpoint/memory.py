"""InMemoryCheckpointer: the reference semantics every backend must reproduce.

Rows are stored already encoded by the shared codec, so a state SQLite could
not store fails here too, and every load decodes a fresh copy.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .base import (
    HistoryCheckpointer,
    MetadataFilter,
    PruneReport,
    check_bounds,
    check_filter,
    check_inactive_for,
    check_keep_last,
    check_limit,
    check_prune,
    check_restore,
    metadata_matches,
)
from .codec import (
    EncodedCheckpoint,
    StateCodec,
    checkpoint_metadata,
    decode_metadata,
    format_time,
    thread_info,
)
from .errors import (
    CheckpointerClosed,
    CheckpointNotFound,
    StepConflict,
    ThreadExists,
)
from .models import Checkpoint, CheckpointMetadata, S, ThreadInfo, check_step, check_thread_id

__all__ = ["InMemoryCheckpointer"]


@dataclass
class _Thread:
    created_at: str
    updated_at: str
    metadata: str
    parent_thread_id: str | None = None
    parent_step: int | None = None
    rows: dict[int, EncodedCheckpoint] = field(default_factory=dict)  # insertion order = step order

    def info(self, thread_id: str) -> ThreadInfo:
        return thread_info(
            thread_id,
            self.created_at,
            self.updated_at,
            next(reversed(self.rows)),
            len(self.rows),
            self.parent_thread_id,
            self.parent_step,
            self.metadata,
        )


def _row_bytes(row: EncodedCheckpoint) -> int:
    return (
        sum(
            len(part.encode("utf-8"))
            for part in (
                row.thread_id,
                row.node,
                row.created_at,
                row.queue,
                row.metadata,
                row.state,
            )
        )
        + 16
    )


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
        self._codec: StateCodec[S] = StateCodec(state_type, max_state_bytes=max_state_bytes)
        self._keep_last = check_keep_last(keep_last)
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def state_type(self) -> type[S]:
        """The state model this checkpointer stores."""
        return self._codec.state_type

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointerClosed("the checkpointer is closed")

    async def close(self) -> None:
        """Drop all stored data; later calls raise ``CheckpointerClosed``."""
        with self._lock:
            self._closed = True
            self._threads.clear()

    # --- writes -----------------------------------------------------------------------------

    async def save(
        self, checkpoint: Checkpoint[S], *, thread_metadata: Mapping[str, Any] | None = None
    ) -> None:
        self._check_open()
        row, meta, now = self._codec.encode_save(checkpoint, thread_metadata)
        with self._lock:
            self._check_open()
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
            if meta is not None:
                thread.metadata = meta
            if self._keep_last is not None:
                self._prune_thread(thread, self._keep_last, None, datetime.now(UTC))

    async def fork(self, thread_id: str, at_seq: int, *, new_thread_id: str | None = None) -> str:
        self._check_open()
        check_thread_id(thread_id)
        check_step(at_seq, "at_seq")
        target = str(uuid.uuid4()) if new_thread_id is None else check_thread_id(new_thread_id)
        with self._lock:
            self._check_open()
            existing = self._threads.get(target)
            if existing is not None:
                if existing.parent_thread_id == thread_id and existing.parent_step == at_seq:
                    return target
                raise ThreadExists(
                    f"cannot fork into {target!r}: the thread exists", thread_id=target
                )
            source = self._threads.get(thread_id)
            if source is None or at_seq not in source.rows:
                raise CheckpointNotFound(
                    f"cannot fork: no checkpoint at step {at_seq} in thread {thread_id!r}",
                    thread_id=thread_id,
                    step=at_seq,
                )
            now = format_time(datetime.now(UTC))
            self._threads[target] = _Thread(
                created_at=now,
                updated_at=now,
                metadata=source.metadata,
                parent_thread_id=thread_id,
                parent_step=at_seq,
                rows={
                    step: row._replace(thread_id=target)
                    for step, row in source.rows.items()
                    if step <= at_seq
                },
            )
            return target

    async def delete_thread(self, thread_id: str) -> bool:
        self._check_open()
        check_thread_id(thread_id)
        with self._lock:
            return self._threads.pop(thread_id, None) is not None

    async def set_thread_metadata(self, thread_id: str, metadata: Mapping[str, Any]) -> None:
        self._check_open()
        check_thread_id(thread_id)
        text = self._codec.encode_metadata(metadata, thread_id=thread_id)
        with self._lock:
            thread = self._threads.get(thread_id)
            if thread is None:
                raise CheckpointNotFound("no such thread", thread_id=thread_id)
            thread.metadata = text

    @staticmethod
    def _prune_thread(
        thread: _Thread,
        keep_last: int | None,
        older_than: timedelta | None,
        now: datetime,
        *,
        dry_run: bool = False,
    ) -> tuple[int, int]:
        # The oldest steps only (a prefix of the history), as SQLite must: its
        # delta rows depend on newer ones. Below the latest, below the newest
        # keep_last, and below the first step created at or after the cutoff.
        steps = list(thread.rows)
        cut = len(steps) - (keep_last if keep_last is not None else 1)
        if older_than is not None:
            cutoff = format_time(now - older_than)
            young = [i for i, s in enumerate(steps) if thread.rows[s].created_at >= cutoff]
            if young:
                cut = min(cut, young[0])
        candidates = steps[: max(0, cut)]
        freed = sum(_row_bytes(thread.rows[s]) for s in candidates)
        if not dry_run:
            for step in candidates:
                del thread.rows[step]
        return len(candidates), freed

    async def prune(
        self,
        thread_id: str | None = None,
        *,
        keep_last: int | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        self._check_open()
        tid, keep, age = check_prune(thread_id, keep_last, older_than, dry_run)
        now = datetime.now(UTC)
        touched = removed = freed = 0
        with self._lock:
            ids = [tid] if tid is not None else list(self._threads)
            for one in ids:
                thread = self._threads.get(one)
                if thread is None:
                    continue
                count, size = self._prune_thread(thread, keep, age, now, dry_run=dry_run)
                if count:
                    touched += 1
                    removed += count
                    freed += size
        return PruneReport(
            dry_run=dry_run, threads_touched=touched, checkpoints_removed=removed, bytes_freed=freed
        )

    async def delete_threads(self, *, inactive_for: timedelta) -> list[str]:
        self._check_open()
        cutoff = format_time(datetime.now(UTC) - check_inactive_for(inactive_for))
        with self._lock:
            gone = sorted(t for t, rec in self._threads.items() if rec.updated_at < cutoff)
            for thread_id in gone:
                del self._threads[thread_id]
        return gone

    async def restore_thread(self, info: ThreadInfo, checkpoints: Sequence[Checkpoint[S]]) -> None:
        self._check_open()
        thread_id = check_restore(info, checkpoints)
        rows = [self._codec.encode(cp) for cp in checkpoints]
        meta = self._codec.encode_metadata(info.metadata, thread_id=thread_id)
        with self._lock:
            if thread_id in self._threads:
                raise ThreadExists("cannot restore: the thread exists", thread_id=thread_id)
            self._threads[thread_id] = _Thread(
                created_at=format_time(info.created_at),
                updated_at=format_time(info.updated_at),
                metadata=meta,
                parent_thread_id=info.parent_thread_id,
                parent_step=info.parent_step,
                rows={row.step: row for row in rows},
            )

    # --- reads ------------------------------------------------------------------------------

    async def load(self, thread_id: str) -> Checkpoint[S] | None:
        self._check_open()
        check_thread_id(thread_id)
        with self._lock:
            thread = self._threads.get(thread_id)
            row = None if thread is None else thread.rows[next(reversed(thread.rows))]
        return None if row is None else self._codec.decode(row)

    async def get(self, thread_id: str, step: int) -> Checkpoint[S] | None:
        self._check_open()
        check_thread_id(thread_id)
        check_step(step)
        with self._lock:
            thread = self._threads.get(thread_id)
            row = None if thread is None else thread.rows.get(step)
        return None if row is None else self._codec.decode(row)

    def get_raw(self, thread_id: str, step: int) -> str | None:
        """The stored state JSON text at a step, undecoded (for forensics)."""
        self._check_open()
        with self._lock:
            thread = self._threads.get(check_thread_id(thread_id))
            row = None if thread is None else thread.rows.get(check_step(step))
        return None if row is None else row.state

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
        self._check_open()
        check_thread_id(thread_id)
        lo, hi, limit = check_bounds(after, before, limit)
        flt = None if filter is None else check_filter(filter)
        with self._lock:
            thread = self._threads.get(thread_id)
            rows = [] if thread is None else list(thread.rows.values())
        if newest_first:
            rows.reverse()
        out: list[CheckpointMetadata] = []
        for row in rows:
            if limit is not None and len(out) >= limit:
                break
            if (lo is not None and row.step <= lo) or (hi is not None and row.step >= hi):
                continue
            if flt is not None and not metadata_matches(decode_metadata(row.metadata), flt):
                continue
            out.append(checkpoint_metadata(row.step, row.created_at, row.node, row.metadata))
        return out

    async def list_threads(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        filter: MetadataFilter | None = None,
    ) -> list[ThreadInfo]:
        self._check_open()
        n = None if limit is None else check_limit(limit)
        cursor = None if after is None else check_thread_id(after)
        flt = None if filter is None else check_filter(filter)
        with self._lock:
            items = sorted(self._threads.items())
            out: list[ThreadInfo] = []
            for thread_id, thread in items:
                if n is not None and len(out) >= n:
                    break
                if cursor is not None and thread_id <= cursor:
                    continue
                if flt is not None and not metadata_matches(decode_metadata(thread.metadata), flt):
                    continue
                out.append(thread.info(thread_id))
        return out

    async def thread_info(self, thread_id: str) -> ThreadInfo | None:
        self._check_open()
        check_thread_id(thread_id)
        with self._lock:
            thread = self._threads.get(thread_id)
            return None if thread is None else thread.info(thread_id)

    async def list_forks(self, thread_id: str) -> list[ThreadInfo]:
        self._check_open()
        check_thread_id(thread_id)
        with self._lock:
            return [
                t.info(tid)
                for tid, t in sorted(self._threads.items())
                if t.parent_thread_id == thread_id
            ]
