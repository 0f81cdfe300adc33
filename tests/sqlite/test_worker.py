"""The connection thread forkpoint owns (``sqlite._thread``): one hop per call, its own state.

forkpoint uses no private API of a database driver: each connection lives on
a daemon thread of its own and every operation is one function run there.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from forkpoint.sqlite._thread import ConnectionThread, ThreadStopped


def _opener(path: Path) -> Any:
    return lambda: sqlite3.connect(path, isolation_level=None)


async def test_calls_run_on_the_threads_own_connection(tmp_path: Path) -> None:
    worker = ConnectionThread(_opener(tmp_path / "w.db"), "test-worker")
    await worker.start()
    try:
        seen: dict[str, Any] = {}

        def work(raw: sqlite3.Connection, a: int, b: int) -> int:
            seen["thread"] = threading.get_ident()
            seen["conn"] = raw
            raw.execute("CREATE TABLE t (x)")
            raw.execute("INSERT INTO t VALUES (?)", (a + b,))
            return int(raw.execute("SELECT x FROM t").fetchone()[0])

        assert await worker.call(work, 2, 3) == 5
        assert seen["thread"] != threading.get_ident()  # not the event loop's thread
        assert seen["conn"] is worker.connection
        names = {t.ident: t for t in threading.enumerate()}
        assert names[seen["thread"]].daemon  # never holds the interpreter at exit
        assert names[seen["thread"]].name == "test-worker"
    finally:
        await worker.stop()


async def test_errors_come_back_to_the_caller(tmp_path: Path) -> None:
    worker = ConnectionThread(_opener(tmp_path / "w.db"), "test-worker")
    await worker.start()
    try:

        def boom(raw: sqlite3.Connection) -> None:
            raw.execute("SELECT * FROM no_such_table")

        with pytest.raises(sqlite3.OperationalError):
            await worker.call(boom)
        assert await worker.call(lambda raw: 7) == 7  # the thread goes on
    finally:
        await worker.stop()


async def test_stop_runs_what_was_queued_then_refuses(tmp_path: Path) -> None:
    worker = ConnectionThread(_opener(tmp_path / "w.db"), "test-worker")
    await worker.start()
    queued = asyncio.ensure_future(worker.call(lambda raw: raw.execute("SELECT 1").fetchone()))
    await asyncio.sleep(0)
    await asyncio.gather(worker.stop(), worker.stop())  # concurrent stops both return
    assert await queued == (1,)
    with pytest.raises(ThreadStopped):
        await worker.call(lambda raw: None)


async def test_a_failing_connect_is_raised_by_start(tmp_path: Path) -> None:
    def refuse() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    worker = ConnectionThread(refuse, "test-worker")
    with pytest.raises(sqlite3.OperationalError):
        await worker.start()
    assert worker.stopped


async def test_a_thread_without_a_loop_blocks_for_its_call(tmp_path: Path) -> None:
    worker = ConnectionThread(_opener(tmp_path / "w.db"), "test-worker")
    await worker.start()
    try:

        def boom(raw: sqlite3.Connection) -> None:
            raw.execute("SELECT * FROM no_such_table")

        assert await asyncio.to_thread(worker.call_blocking, lambda raw: 7) == 7
        with pytest.raises(sqlite3.OperationalError):
            await asyncio.to_thread(worker.call_blocking, boom)
    finally:
        await worker.stop()
    with pytest.raises(ThreadStopped):
        worker.call_blocking(lambda raw: None)
    with pytest.raises(ThreadStopped):
        worker.post(lambda raw: None)
