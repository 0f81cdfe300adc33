"""Helpers shared by the contract suites: whole-store snapshots for "nothing changed" checks."""

from __future__ import annotations

from typing import Any

from forkpoint import HistoryCheckpointer


async def snapshot(cp: HistoryCheckpointer[Any]) -> list[Any]:
    """Everything observable in a store: thread records, histories, every checkpoint."""
    out: list[Any] = []
    for info in await cp.list_threads():
        history = await cp.list_checkpoints(info.thread_id)
        checkpoints = [await cp.get(info.thread_id, m.step) for m in history]
        out.append(
            (
                info.model_dump(),
                [m.model_dump() for m in history],
                [None if c is None else c.model_dump() for c in checkpoints],
            )
        )
    return out
