"""Hangs, waits that multiply, untyped errors and unobserved futures at the public API and the CLI.

Every scenario that could hang on a defect is bounded (``asyncio.wait_for``,
subprocess timeouts), so a hang fails the test instead of stopping the suite.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from forkpoint import (
    CheckpointError,
    DatabaseLocked,
    InMemoryCheckpointer,
    InvalidInput,
    SqliteCheckpointer,
    StepConflict,
)
from tests.conftest import Counter, Factory, make_cp
from tests.reliability.support import ROOT, child_env


def _cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from forkpoint.cli import main; main()",
                "--db",
                str(path),
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**child_env(), "FORKPOINT_PROGRESS": "never"},
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`forkpoint {' '.join(args)}` hung")


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    if done.returncode != 0:
        assert done.returncode == 1, done
        assert done.stderr.startswith("forkpoint: error: "), done.stderr[-2000:]
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]


# --- item 3: a lineage cycle made by ordinary use -------------------------------------------


async def test_tree_shows_threads_whose_lineage_forms_a_cycle(tmp_path: Path) -> None:
    """Delete main, then fork experiment back into a new thread named main: both are shown."""
    path = tmp_path / "cycle.db"
    async with SqliteCheckpointer.open(path, Counter) as cp:
        for step in range(3):
            await cp.save(make_cp("main", step))
        await cp.fork("main", 1, new_thread_id="experiment")
        await cp.delete_thread("main")
        await cp.fork("experiment", 1, new_thread_id="main")
        main, experiment = await cp.thread_info("main"), await cp.thread_info("experiment")
        assert main is not None
        assert experiment is not None
        assert (main.parent_thread_id, experiment.parent_thread_id) == ("experiment", "main")
    text = _cli(path, "tree")
    assert text.returncode == 0, text.stderr[-2000:]
    assert "no threads" not in text.stdout
    for name in ("main", "experiment"):
        assert name in text.stdout, text.stdout
    as_json = _cli(path, "tree", "--json")
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    shown = json.dumps(json.loads(as_json.stdout))
    for name in ('"main"', '"experiment"'):
        assert name in shown, shown


# --- item 5: close() called twice at once ------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_concurrent_closes_all_return(tmp_path: Path, backend: str) -> None:
    for _ in range(3):
        cp: Any = (
            InMemoryCheckpointer(Counter)
            if backend == "memory"
            else await SqliteCheckpointer.open(tmp_path / "close.db", Counter)
        )
        await cp.save(make_cp("t", 0)) if await cp.load("t") is None else None
        pending = asyncio.ensure_future(cp.save(make_cp("t", 99)))
        await asyncio.wait_for(asyncio.gather(cp.close(), cp.close(), cp.close()), 10)
        await asyncio.wait_for(cp.close(), 10)  # and once more, after the fact
        outcome = await asyncio.gather(pending, return_exceptions=True)
        assert outcome[0] is None or isinstance(outcome[0], CheckpointError), outcome
        if backend == "sqlite":
            async with SqliteCheckpointer.open(tmp_path / "close.db", Counter) as again:
                assert await again.load("t") is not None


# --- item 6: a held write lock ----------------------------------------------------------------


async def test_a_held_lock_fails_every_waiting_write_within_busy_timeout(tmp_path: Path) -> None:
    """30 saves against a lock held for 15 x busy_timeout: every one is DatabaseLocked.

    A write that cannot get the lock within ``busy_timeout`` raises
    ``DatabaseLocked``; the lock is released only long after that. A backend
    that waits the timeout again per job outlasts the holder, and its last
    saves succeed instead: the count of stored saves is the failure signal.
    """
    path = tmp_path / "locked.db"
    busy = 0.2
    async with SqliteCheckpointer.open(path, Counter, busy_timeout=busy) as cp:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            holder.execute("BEGIN IMMEDIATE")
            release = asyncio.get_running_loop().call_later(15 * busy, holder.rollback)
            saves = [cp.save(make_cp(f"t{i}", 0)) for i in range(30)]
            outcomes = await asyncio.wait_for(asyncio.gather(*saves, return_exceptions=True), 60)
            release.cancel()
        finally:
            holder.close()
        kinds = sorted({type(o).__name__ for o in outcomes})
        assert kinds == ["DatabaseLocked"], kinds
        assert all(isinstance(o, DatabaseLocked) for o in outcomes)
        assert await cp.list_threads() == []
        await cp.save(make_cp("after", 0))  # the lock is free again: writes go on
        assert [t.thread_id for t in await cp.list_threads()] == ["after"]


async def test_a_burst_larger_than_a_batch_waits_for_the_lock_at_most_twice(tmp_path: Path) -> None:
    """2,600 saves (ten batches' worth) against a lock held for 5 x busy_timeout: all DatabaseLocked.

    Saves queued behind a batch that is waiting for the lock have waited as
    long as it; when it fails they fail too, instead of each later batch
    waiting busy_timeout again (which would outlast the holder: some would
    then succeed).
    """
    path = tmp_path / "burst.db"
    busy = 0.5
    async with SqliteCheckpointer.open(path, Counter, busy_timeout=busy) as cp:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            holder.execute("BEGIN IMMEDIATE")
            release = asyncio.get_running_loop().call_later(5 * busy, holder.rollback)
            saves = [cp.save(make_cp(f"t{i}", 0)) for i in range(2600)]
            outcomes = await asyncio.wait_for(asyncio.gather(*saves, return_exceptions=True), 120)
            release.cancel()
        finally:
            holder.close()
        assert sorted({type(o).__name__ for o in outcomes}) == ["DatabaseLocked"]
        assert await cp.list_threads() == []


# --- item 11: durations past the calendar ---------------------------------------------------

HUGE = [timedelta(days=10**6), timedelta(days=3_000_000), timedelta.max]


@pytest.mark.parametrize("age", HUGE, ids=["1e6-days", "3e6-days", "max"])
async def test_durations_older_than_the_calendar_remove_nothing(
    make_checkpointer: Factory, age: timedelta
) -> None:
    """Nothing is that old: prune and delete_threads remove nothing (or refuse with InvalidInput)."""
    cp = await make_checkpointer()
    for step in range(3):
        await cp.save(make_cp("t", step))
    for call in (
        lambda: cp.prune(older_than=age),
        lambda: cp.prune("t", older_than=age, keep_last=1),
        lambda: cp.delete_threads(inactive_for=age),
    ):
        try:
            result = await call()
        except InvalidInput:
            continue
        except BaseException as exc:  # noqa: BLE001 - the point: which kind escapes
            pytest.fail(f"raised a bare {type(exc).__name__}: {exc!r}")
        assert result in ([],) or getattr(result, "checkpoints_removed", None) == 0, result
    assert [m.step for m in await cp.list_checkpoints("t")] == [0, 1, 2]


@pytest.mark.parametrize(
    "age",
    [
        "3000000d",
        "99999999999999999999d",
    ],
)
async def test_cli_prune_with_a_huge_age_prints_no_traceback(tmp_path: Path, age: str) -> None:
    path = tmp_path / "prune.db"
    async with SqliteCheckpointer.open(path, Counter) as cp:
        for step in range(3):
            await cp.save(make_cp("t", step))
    for extra in ([], ["--dry-run"]):
        _no_traceback(_cli(path, "prune", "--older-than", age, *extra))
    async with SqliteCheckpointer.open(path, Counter) as cp:
        assert [m.step for m in await cp.list_checkpoints("t")] == [0, 1, 2]


# --- item 13: one signature for get_raw -------------------------------------------------------


async def test_get_raw_is_awaited_on_every_backend(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer()
    await cp.save(make_cp("t", 0))
    raw = await cp.get_raw("t", 0)
    assert isinstance(raw, str)
    assert json.loads(raw)["n"] == 0
    assert await cp.get_raw("t", 1) is None


# --- item 16: futures nobody observes ---------------------------------------------------------


async def test_a_cancelled_save_whose_job_fails_logs_nothing(tmp_path: Path) -> None:
    """A save leading a group commit is cancelled; its job then fails (StepConflict): no log."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with SqliteCheckpointer.open(tmp_path / "cancel.db", Counter) as cp:
            await cp.save(make_cp("t", 0))
            for round_ in range(5):
                task = asyncio.ensure_future(cp.save(make_cp("t", 0, n=100 + round_)))
                await asyncio.sleep(0)  # it leads: its batch is on the writer's thread now
                task.cancel()
                outcome = await asyncio.gather(task, return_exceptions=True)
                assert isinstance(outcome[0], asyncio.CancelledError | StepConflict), outcome
                await cp.save(make_cp("t", round_ + 1))  # runs after that batch was answered
                del task, outcome
                gc.collect()
                await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [c.get("message") for c in reported] == []
