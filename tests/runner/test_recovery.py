"""Finding unfinished threads and resuming them all, on every backend.

The threads are stopped mid-node by cancelling the tasks that run them (what a
crash looks like to the database); tests/runner/test_kill.py does it with a real
SIGKILL on SQLite.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from forkpoint import (
    Checkpoint,
    GraphState,
    HistoryCheckpointer,
    InvalidInput,
    NodeContext,
    StepLimitReached,
    UnknownNodes,
)
from tests.conftest import Factory
from tests.runner.children import linear3
from tests.runner.graphs import Doc


@pytest.fixture
async def cp(make_checkpointer: Factory) -> HistoryCheckpointer[Doc]:
    return await make_checkpointer(Doc)


async def _crash_in_b(cp: HistoryCheckpointer[Doc], runs: list[str], ids: list[str]) -> None:
    """Start every thread, stop them all while they are inside node b."""
    inside: list[str] = []
    everyone = asyncio.Event()

    async def b(state: Doc, ctx: NodeContext) -> dict[str, Any]:
        runs.append(f"{ctx.thread_id}:b")
        inside.append(ctx.thread_id)
        if len(inside) == len(ids):
            everyone.set()
        await asyncio.Event().wait()
        return {}

    runner = linear3(cp, runs.append, b, max_concurrency=2)
    tasks = [
        asyncio.ensure_future(runner.run(tid, Doc(), thread_metadata={"app": "x"})) for tid in ids
    ]
    await everyone.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_recover_resumes_the_unfinished_threads_only(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []
    runner = linear3(cp, runs.append)
    await runner.run("done", Doc())
    await linear3(cp, runs.append, interrupt_before=["c"]).run("paused", Doc())
    crashed = ["t1", "t2", "t3"]
    await _crash_in_b(cp, runs, crashed)

    assert await runner.unfinished_threads() == crashed
    assert await runner.unfinished_threads(filter={"app": "x"}) == crashed
    assert await runner.unfinished_threads(filter={"app": "y"}) == []
    report = await runner.recover(max_concurrency=2)
    assert report.ok
    assert sorted(report.results) == crashed
    for tid in crashed:
        assert report.results[tid].done
        assert report.results[tid].executed == ("b", "c")
    counts = Counter(runs)
    for tid in crashed:
        assert (counts[f"{tid}:a"], counts[f"{tid}:b"], counts[f"{tid}:c"]) == (1, 2, 1)
    assert counts["paused:c"] == 0
    assert await runner.unfinished_threads() == []


async def test_recovery_reports_each_failure_and_still_resumes_the_rest(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    await _crash_in_b(cp, runs, ["t1", "t2"])
    await cp.save(  # a thread of another workflow
        Checkpoint(
            thread_id="other",
            state=GraphState(data=Doc()),
            step=0,
            node="x",
            queue=[("elsewhere", 0)],
        )
    )
    report = await linear3(cp, runs.append).recover()
    assert not report.ok
    assert sorted(report.results) == ["t1", "t2"]
    assert isinstance(report.errors["other"], UnknownNodes)
    assert report.thread_ids == ["other", "t1", "t2"]


async def test_a_thread_stopped_by_its_step_limit_is_unfinished(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    runner = linear3(cp, runs.append, max_steps=1)
    with pytest.raises(StepLimitReached):
        await runner.run("t", Doc())
    assert await runner.unfinished_threads() == ["t"]
    report = await linear3(cp, runs.append).recover()
    assert report.results["t"].done


async def test_recover_checks_its_arguments(cp: HistoryCheckpointer[Doc]) -> None:
    with pytest.raises(InvalidInput):
        await linear3(cp, print).recover(max_concurrency=0)
