"""Moving threads between databases: :func:`copy_threads`, any backend to any backend.

The way a user moves from one machine's SQLite file to a shared PostgreSQL
server, or back: every thread arrives exactly as it
was — its checkpoints (state, node, queue, times, metadata), its record's
times and metadata, and its fork lineage — through the public API only
(``list_threads`` / ``iter_states`` on the source,
``restore_thread`` on the destination, one transaction per thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._checks import check_thread_id
from .base import HistoryCheckpointer
from .errors import CheckpointNotFound, InvalidInput, ThreadExists
from .models import MAX_STEP, Checkpoint, ThreadInfo

__all__ = ["copy_threads"]

_PAGE = 256


async def _all_threads(source: HistoryCheckpointer[Any]) -> list[ThreadInfo]:
    out: list[ThreadInfo] = []
    while True:
        page = await source.list_threads(limit=_PAGE, after=out[-1].thread_id if out else None)
        out += page
        if len(page) < _PAGE:
            return out


async def copy_threads(
    source: HistoryCheckpointer[Any],
    dest: HistoryCheckpointer[Any],
    thread_ids: Iterable[str] | None = None,
    *,
    progress: Callable[[ThreadInfo], None] | None = None,
) -> list[str]:
    """Copy threads (all, or ``thread_ids``) from ``source`` into ``dest``; the ids copied.

    Each thread is restored whole in one transaction of ``dest``, as it was
    when read: checkpoints written to the source meanwhile stay behind (copy
    again later with the threads missing). Checks before anything is written:
    every id must exist in ``source`` (``CheckpointNotFound``) and none in
    ``dest`` (``ThreadExists``, naming the first), so a copy never merges into
    or overwrites a thread. ``progress`` is called after each thread.
    """
    for name, cp in (("source", source), ("dest", dest)):
        if not isinstance(cp, HistoryCheckpointer):
            raise InvalidInput(f"{name} must be a HistoryCheckpointer, not {type(cp).__name__}")
    if source is dest:
        raise InvalidInput("source and dest are the same checkpointer")
    if thread_ids is None:
        infos = await _all_threads(source)
    else:
        if isinstance(thread_ids, str):
            raise InvalidInput("thread_ids must be an iterable of ids, not one str")
        infos = []
        for tid in dict.fromkeys(check_thread_id(t) for t in thread_ids):
            info = await source.thread_info(tid)
            if info is None:
                raise CheckpointNotFound("no such thread in the source", thread_id=tid)
            infos.append(info)
    for info in infos:
        if await dest.thread_info(info.thread_id) is not None:
            raise ThreadExists(
                "cannot copy: the destination already has this thread", thread_id=info.thread_id
            )
    copied = []
    for info in infos:
        # Newest to oldest, each reverse delta applied once: O(the thread's stored bytes).
        before = None if info.latest_step >= MAX_STEP else info.latest_step + 1
        checkpoints: list[Checkpoint[Any]] = [
            c async for c in source.iter_states(info.thread_id, before=before)
        ]
        checkpoints.reverse()
        while checkpoints and checkpoints[-1].step > info.latest_step:
            checkpoints.pop()  # saved after the thread was read: left for a later copy
        if not checkpoints or checkpoints[-1].step != info.latest_step:
            continue  # deleted while copying: nothing to copy
        await dest.restore_thread(info, checkpoints)
        copied.append(info.thread_id)
        if progress is not None:
            progress(info)
    return copied
