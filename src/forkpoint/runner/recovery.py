"""Recovery at start-up: find the threads that were mid-run and resume them all.

A thread is *unfinished* when its ``ThreadInfo.status`` is ``"running"``: its
latest checkpoint still has work queued and is not a pause (no
``INTERRUPT_KEY`` in its metadata). The process that ran it died, or it
stopped at a step limit. Paused threads (``"interrupted"``) wait for a human
and finished ones (``"done"``) have nothing to do; both are left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic

from ..base import HistoryCheckpointer, MetadataFilter
from ..models import S
from .results import RunResult

__all__ = ["RecoveryReport", "recover", "unfinished_threads"]


@dataclass(frozen=True)
class RecoveryReport(Generic[S]):
    """What :meth:`Runner.recover` did: each resumed thread's result, or its error.

    ``results`` and ``errors`` are keyed by thread id; a thread is in exactly
    one of them. ``ok`` is true when no resume failed.
    """

    results: dict[str, RunResult[S]] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every unfinished thread was resumed without an error."""
        return not self.errors

    @property
    def thread_ids(self) -> list[str]:
        """Every thread recovery touched, sorted."""
        return sorted([*self.results, *self.errors])


async def unfinished_threads(
    checkpointer: HistoryCheckpointer[S], *, filter: MetadataFilter | None = None
) -> list[str]:
    """Ids (ordered) of the threads whose status is ``"running"``: work queued, no pause.

    Reads thread records a page at a time (``iter_threads``), never a state;
    ``filter`` matches thread metadata.
    """
    return [
        info.thread_id
        async for info in checkpointer.iter_threads(filter=filter)
        if info.status == "running"
    ]


async def recover(
    thread_ids: Sequence[str],
    resume: Callable[[str], Awaitable[RunResult[S]]],
    max_concurrency: int,
) -> RecoveryReport[S]:
    """Call ``resume`` for every id, at most ``max_concurrency`` at once; collect outcomes."""
    report: RecoveryReport[S] = RecoveryReport()
    gate = asyncio.Semaphore(max_concurrency)

    async def one(thread_id: str) -> None:
        async with gate:
            try:
                report.results[thread_id] = await resume(thread_id)
            except Exception as exc:  # noqa: BLE001 - one thread's failure must not stop the others
                report.errors[thread_id] = exc

    await asyncio.gather(*(one(tid) for tid in thread_ids))
    return report
