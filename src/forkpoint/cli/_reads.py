"""The library reads the commands share: whole listings, page by page, and per-thread summaries.

Every command reads the database through these, so what a listing costs is
decided in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import SerializationError
from ..models import Checkpoint, CheckpointMetadata, JsonState, ThreadInfo
from ..sqlite import SqliteCheckpointer

__all__ = ["all_threads", "checkpoints", "history", "latest_nodes", "statuses"]

PAGE = 1000  # rows per listing call: memory stays bounded on any database
Db = SqliteCheckpointer[JsonState]


async def all_threads(cp: Db) -> list[ThreadInfo]:
    """Every thread record, in id order."""
    out: list[ThreadInfo] = []
    after: str | None = None
    while True:
        page = await cp.list_threads(limit=PAGE, after=after)
        out += page
        if len(page) < PAGE:
            return out
        after = page[-1].thread_id


async def history(
    cp: Db, thread_id: str, last: int | None = None
) -> list[tuple[CheckpointMetadata, list[tuple[str, int]]]]:
    """The thread's listing rows oldest first (only the newest ``last``), each with its queue."""
    if last is not None:
        metas = list(reversed(await cp.list_checkpoints(thread_id, newest_first=True, limit=last)))
    else:
        metas = []
        after: int | None = None
        while True:
            page = await cp.list_checkpoints(thread_id, after=after, limit=PAGE)
            metas += page
            if len(page) < PAGE:
                break
            after = page[-1].seq
    rows = []
    for meta in metas:
        full = await cp.get(thread_id, meta.seq)
        rows.append((meta, [] if full is None else list(full.queue)))
    return rows


Read = Checkpoint[JsonState] | SerializationError | None


async def checkpoints(cp: Db, thread_id: str) -> AsyncIterator[tuple[int, Read]]:
    """(step, checkpoint) for every listed step, oldest first.

    A row that does not decode gives its ``SerializationError``; a row gone
    since the listing (pruned meanwhile) gives None.
    """
    after: int | None = None
    while True:
        page = await cp.list_checkpoints(thread_id, after=after, limit=PAGE)
        for meta in page:
            try:
                yield meta.seq, await cp.get(thread_id, meta.seq)
            except SerializationError as exc:
                yield meta.seq, exc
        if len(page) < PAGE:
            return
        after = page[-1].seq


async def latest_nodes(cp: Db, infos: list[ThreadInfo]) -> dict[str, str]:
    """The node that wrote each thread's latest checkpoint."""
    out = {}
    for info in infos:
        last = await cp.list_checkpoints(info.thread_id, newest_first=True, limit=1)
        out[info.thread_id] = last[0].node if last else ""
    return out


def _status(cp: Checkpoint[JsonState]) -> str:
    if not cp.queue:
        return "done"
    mark = cp.metadata.get("interrupt")
    if mark == "before":
        return f"paused before {cp.queue[0][0]}"
    if mark == "after":
        return f"paused after {cp.node}"
    return f"pending: {cp.queue[0][0]}"


async def statuses(cp: Db, infos: list[ThreadInfo]) -> dict[str, str]:
    """Whether each thread is done, paused at an interrupt, or has work pending."""
    out = {}
    for info in infos:
        latest = await cp.load(info.thread_id)
        out[info.thread_id] = "gone" if latest is None else _status(latest)
    return out
