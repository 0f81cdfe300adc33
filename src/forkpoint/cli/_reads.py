"""The library reads the commands share, each one pass over what the command prints.

Thread listings stream ``iter_threads()`` (latest node and status come with
each record), histories stream ``iter_checkpoints()`` (the queue comes with
each row), and whole states come from ``iter_states()``, which applies each
stored reverse delta once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..base import HistoryCheckpointer
from ..errors import SerializationError
from ..models import Checkpoint, CheckpointMetadata, JsonState, ThreadInfo

__all__ = ["all_threads", "checkpoints", "history", "status_text"]

Db = HistoryCheckpointer[JsonState]
Read = Checkpoint[JsonState] | SerializationError


async def all_threads(cp: Db) -> list[ThreadInfo]:
    """Every thread record, in id order."""
    return [info async for info in cp.iter_threads()]


async def history(cp: Db, thread_id: str, last: int | None = None) -> list[CheckpointMetadata]:
    """The thread's listing rows, oldest first (only the newest ``last``)."""
    if last is not None:
        return list(reversed(await cp.list_checkpoints(thread_id, newest_first=True, limit=last)))
    return [meta async for meta in cp.iter_checkpoints(thread_id)]


async def checkpoints(cp: Db, thread_id: str) -> AsyncIterator[tuple[int | None, Read]]:
    """(step, checkpoint) for every stored step, newest first, each state rebuilt once.

    A row that does not decode gives its ``SerializationError`` in its place,
    and reading goes on below it (rows stored relative to it then fail in
    turn). Rows above it that the stream had not handed out yet are read one
    by one (only a damaged thread pays for that). An error that names no step
    ends the thread's reading, as ``(None, error)``.
    """
    before: int | None = None
    while True:
        lowest = before  # the oldest step this round handed out
        try:
            async for found in cp.iter_states(thread_id, before=before):
                yield found.step, found
                lowest = found.step
            return
        except SerializationError as exc:
            broken = exc.step
            if broken is None or (lowest is not None and broken >= lowest):
                yield None, exc
                return
            for meta in await cp.list_checkpoints(
                thread_id, after=broken, before=lowest, newest_first=True
            ):
                try:
                    one = await cp.get(thread_id, meta.step)
                except SerializationError as inner:
                    yield meta.step, inner
                else:
                    if one is not None:
                        yield meta.step, one
            yield broken, exc
            if broken == 0:
                return
            before = broken


def status_text(info: ThreadInfo) -> str:
    """``done``, ``paused after NODE`` (an interrupt) or ``pending after NODE`` (work queued)."""
    if info.status == "done":
        return "done"
    if info.status == "interrupted":
        return f"paused after {info.latest_node}"
    return f"pending after {info.latest_node}"
