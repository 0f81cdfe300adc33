"""The SQLite engine belongs to no event loop: callers on any loop, or blocked threads, share it.

Each job is answered on the loop that awaits it (or to the thread blocked on
it), and jobs from different callers still share one group-commit
transaction. The LangGraph saver relies on this: its async methods await the
engine from the application's loop, its sync methods block worker threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from forkpoint import CheckpointerClosed, SqliteCheckpointer
from forkpoint.errors import StorageError
from forkpoint.sqlite import _writer
from forkpoint.sqlite._engine import SqliteEngine
from tests.conftest import Counter


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS calls (who TEXT)")


def _insert(conn: sqlite3.Connection, who: str) -> str:
    conn.execute("INSERT INTO calls VALUES (?)", (who,))
    return who


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])


def _broken(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO no_such_table VALUES (1)")


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every transaction the writer runs."""
    sizes: list[int] = []
    real = _writer._run_batch

    def recording(conn: sqlite3.Connection, jobs: list[Any]) -> list[tuple[bool, Any]]:
        sizes.append(len(jobs))
        return real(conn, jobs)

    monkeypatch.setattr(_writer, "_run_batch", recording)
    return sizes


async def _hold_writer(engine: SqliteEngine) -> tuple[asyncio.Future[None], threading.Event]:
    """The writer's thread busy with a call that waits until the returned event is set."""
    hold, held = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        held.set()
        hold.wait(30)

    blocking = asyncio.ensure_future(engine.on_writer(block))
    await asyncio.to_thread(held.wait, 30)
    return blocking, hold


def _in_another_loop(engine: SqliteEngine, who: str, ready: threading.Event) -> str:
    async def write() -> str:
        task = asyncio.ensure_future(engine.write(_insert, who))
        await asyncio.sleep(0)  # queued now
        ready.set()
        return await asyncio.wait_for(task, 30)

    return asyncio.run(write())


async def test_jobs_from_two_loops_share_one_transaction_and_each_gets_its_own_answer(
    tmp_path: Path, batches: list[int]
) -> None:
    async with SqliteCheckpointer.open(tmp_path / "loops.db", Counter) as cp:
        engine = cp.engine
        await engine.write(_create)
        blocking, hold = await _hold_writer(engine)  # jobs queue up behind it
        ready = threading.Event()
        other = asyncio.ensure_future(asyncio.to_thread(_in_another_loop, engine, "other", ready))
        await asyncio.to_thread(ready.wait, 30)
        mine = asyncio.ensure_future(engine.write(_insert, "mine"))
        await asyncio.sleep(0)
        batches.clear()
        hold.set()
        assert list(await asyncio.wait_for(asyncio.gather(mine, other), 30)) == ["mine", "other"]
        await blocking
        assert batches == [2]  # both callers' jobs, one transaction
        assert await engine.read(_count) == 2


async def test_blocked_threads_and_the_loop_write_together(tmp_path: Path) -> None:
    async with SqliteCheckpointer.open(tmp_path / "threads.db", Counter) as cp:
        engine = cp.engine
        await engine.write(_create)

        def from_a_thread(i: int) -> tuple[str, int]:
            return engine.write_blocking(_insert, f"thread-{i}"), engine.read_blocking(_count)

        with ThreadPoolExecutor(8) as pool:
            threaded = [asyncio.wrap_future(pool.submit(from_a_thread, i)) for i in range(40)]
            looped = [engine.write(_insert, f"loop-{i}") for i in range(40)]
            both = asyncio.gather(asyncio.gather(*threaded), asyncio.gather(*looped))
            from_threads, from_loop = await asyncio.wait_for(both, 60)
        assert sorted(who for who, _ in from_threads) == sorted(f"thread-{i}" for i in range(40))
        assert all(1 <= seen <= 80 for _, seen in from_threads)  # its own write, or more
        assert sorted(from_loop) == sorted(f"loop-{i}" for i in range(40))
        assert await engine.read(_count) == 80


async def test_blocking_calls_type_their_errors(tmp_path: Path) -> None:
    async with SqliteCheckpointer.open(tmp_path / "errors.db", Counter) as cp:
        engine = cp.engine

        def broken() -> None:
            engine.write_blocking(_broken)

        with pytest.raises(StorageError) as raised:
            await asyncio.to_thread(broken)
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(StorageError):
            await asyncio.to_thread(engine.read_blocking, _broken)
    with pytest.raises(CheckpointerClosed):
        await asyncio.to_thread(engine.write_blocking, _create)
    with pytest.raises(CheckpointerClosed):
        await asyncio.to_thread(engine.read_blocking, _count)


async def test_maintenance_waits_for_one_batch_at_most_however_many_writes_are_queued(
    tmp_path: Path, batches: list[int]
) -> None:
    """The drain queues itself again after each batch, behind what was sent to the thread."""
    async with SqliteCheckpointer.open(tmp_path / "fair.db", Counter) as cp:
        engine = cp.engine
        await engine.write(_create)
        blocking, hold = await _hold_writer(engine)
        writes = [asyncio.ensure_future(engine.write(_insert, f"w{i}")) for i in range(600)]
        await asyncio.sleep(0)  # all 600 queued: three batches' worth
        maintenance = asyncio.ensure_future(engine.on_writer(_count))
        await asyncio.sleep(0)
        batches.clear()
        hold.set()
        seen = await asyncio.wait_for(maintenance, 30)
        await asyncio.wait_for(asyncio.gather(blocking, *writes), 30)
        assert seen == _writer.MAX_BATCH  # it ran after the first batch, not after all three
        assert batches == [_writer.MAX_BATCH, _writer.MAX_BATCH, 600 - 2 * _writer.MAX_BATCH]


@pytest.mark.parametrize("behind_a_batch", [False, True])
async def test_a_lingering_job_waits_for_company_and_leaves_with_it(
    tmp_path: Path, batches: list[int], behind_a_batch: bool
) -> None:
    """Alone it would wait its whole linger; the next ordinary job joins its commit at once.

    Behind a busy writer, the linger counts from when the writer turns to it,
    not from when it was queued: LangGraph queues a task's writes while the
    previous checkpoint's commit runs, and sends the next checkpoint only after
    that commit answered, so writes whose wait had run out behind the busy
    writer would go alone.
    """
    async with SqliteCheckpointer.open(tmp_path / "linger.db", Counter) as cp:
        engine = cp.engine
        await engine.write(_create)
        held = await _hold_writer(engine) if behind_a_batch else None
        batches.clear()
        linger = 0.5 if behind_a_batch else 60.0
        waiting = asyncio.ensure_future(engine.write(_insert, "writes", linger=linger))
        if held is not None:
            blocking, hold = held
            await asyncio.sleep(0.8)  # longer than its linger, all of it behind the busy writer
            hold.set()
            await blocking
        await asyncio.sleep(0.1)  # the writer has turned to it and waits for company
        assert not waiting.done()
        both = await asyncio.wait_for(
            asyncio.gather(waiting, engine.write(_insert, "checkpoint")), 10
        )
        assert list(both) == ["writes", "checkpoint"]
        assert batches == [2]


async def test_a_lone_lingering_job_is_committed_when_its_time_is_up(
    tmp_path: Path, batches: list[int]
) -> None:
    async with SqliteCheckpointer.open(tmp_path / "alone.db", Counter) as cp:
        engine = cp.engine
        await engine.write(_create)
        batches.clear()
        assert await asyncio.wait_for(engine.write(_insert, "alone", linger=0.01), 10) == "alone"
        blocked = await asyncio.to_thread(engine.write_blocking, _insert, "sync", linger=0.01)
        assert blocked == "sync"
        assert batches == [1, 1]
        assert await engine.read(_count) == 2
