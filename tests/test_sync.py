"""``forkpoint.sync``: plain calls from scripts, threads and pools; never a deadlock.

The contract suite also runs over the sync face (the ``sync`` backend in
``tests/conftest.py``); these tests cover what only the sync face has: its
life cycle, threads, refusing callers that run an event loop, forked children.
"""

from __future__ import annotations

import gc
import inspect
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import forkpoint.sync
from forkpoint import (
    CalledFromEventLoop,
    CheckpointerClosed,
    CheckpointError,
    ForkedProcess,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    InvalidInput,
    NotAForkpointDatabase,
    SqliteCheckpointer,
    StepConflict,
)
from forkpoint.sync import SyncCheckpointer, SyncSqliteCheckpointer, open_memory, open_sqlite
from tests.conftest import Counter, make_cp

ROOT = Path(__file__).resolve().parents[1]


def _sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "forkpoint-sync"]


def test_a_plain_script_saves_loads_lists_and_forks(tmp_path: Path) -> None:
    before = len(_sync_threads())
    with open_sqlite(tmp_path / "x.db", Counter) as cp:
        assert isinstance(cp, SyncSqliteCheckpointer)
        assert len(_sync_threads()) == before + 1
        for step in range(3):
            cp.save(make_cp("t", step), thread_metadata={"user": "ann"})
        latest = cp.load("t")
        assert latest is not None
        assert latest.step == 2
        assert latest.state.data.n == 2
        assert [m.step for m in cp.list_checkpoints("t", newest_first=True)] == [2, 1, 0]
        fork = cp.fork("t", 1, new_thread_id="t2")
        assert fork == "t2"
        assert [i.thread_id for i in cp.list_forks("t")] == ["t2"]
        info = cp.thread_info("t")
        assert info is not None
        assert info.metadata == {"user": "ann"}
        got = cp.get("t2", 1)
        assert got is not None
        assert got.thread_id == "t2"
        assert cp.state_type is Counter
        assert cp.path == str(tmp_path / "x.db")
        assert cp.integrity_check() == ["ok"]
        assert cp.get_raw("t", 0) is not None
        assert cp.storage_stats().stored_bytes.keys() == {"t", "t2"}
        cp.backup(tmp_path / "copy.db")
        assert cp.prune("t", keep_last=1).checkpoints_removed == 2
        assert cp.vacuum() >= 0
        assert cp.delete_thread("t2") is True
    assert cp.closed
    assert len(_sync_threads()) == before  # the loop's thread was joined
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (5,)


def test_errors_arrive_typed_and_unchanged(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "x.db", Counter) as cp:
        cp.save(make_cp("t", 0))
        with pytest.raises(StepConflict) as conflict:
            cp.save(make_cp("t", 0, n=5))
        assert conflict.value.thread_id == "t"
        assert conflict.value.step == 0
        with pytest.raises(InvalidInput):
            cp.load("")
        with pytest.raises(InvalidInput):
            cp.list_checkpoints("t", limit=-1)
        assert cp.load("t") == make_cp("t", 0).model_copy(
            update={"created_at": cp.load("t").created_at}  # type: ignore[union-attr]
        )


def test_opening_errors_are_raised_and_leave_no_thread(tmp_path: Path) -> None:
    before = len(_sync_threads())
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 10)
    with pytest.raises(NotAForkpointDatabase):
        open_sqlite(junk, Counter)
    with pytest.raises(InvalidInput):
        open_sqlite(tmp_path / "y.db", Counter, durability="sometimes")  # type: ignore[arg-type]
    assert len(_sync_threads()) == before


def test_after_close_every_call_raises_closed(tmp_path: Path) -> None:
    cp = open_sqlite(tmp_path / "x.db", Counter)
    cp.save(make_cp("t", 0))
    cp.close()
    cp.close()  # a no-op
    for call in (
        lambda: cp.load("t"),
        lambda: cp.save(make_cp("t", 1)),
        lambda: cp.list_threads(),
        lambda: cp.vacuum(),
    ):
        with pytest.raises(CheckpointerClosed):
            call()
    with sqlite3.connect(tmp_path / "x.db") as conn:  # closed cleanly: the save is in the file
        assert conn.execute("SELECT step FROM checkpoints").fetchall() == [(0,)]


def test_a_thread_pool_shares_one_checkpointer(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "x.db", Counter) as cp, ThreadPoolExecutor(8) as pool:

        def run(worker: int) -> None:
            for step in range(20):
                cp.save(make_cp(f"w{worker}", step))

        list(pool.map(run, range(8)))
        assert [(i.thread_id, i.latest_step) for i in cp.list_threads()] == [
            (f"w{w}", 19) for w in range(8)
        ]

        def race(n: int) -> str:
            try:
                cp.save(make_cp("race", 0, n=n))
            except StepConflict:
                return "conflict"
            return "stored"

        outcomes = list(pool.map(race, range(8)))
        assert sorted(outcomes) == ["conflict"] * 7 + ["stored"]


async def test_a_call_from_a_running_event_loop_is_refused_at_once(tmp_path: Path) -> None:
    """Inside ``async def`` (here: the test's own loop) nothing waits: a typed error at once."""
    with pytest.raises(CalledFromEventLoop):
        open_sqlite(tmp_path / "x.db", Counter)
    assert not (tmp_path / "x.db").exists()  # refused before anything ran
    cp = await _in_thread(lambda: open_sqlite(tmp_path / "x.db", Counter))
    try:
        with pytest.raises(CalledFromEventLoop) as refused:
            cp.save(make_cp("t", 0))
        assert isinstance(refused.value, CheckpointError)
        assert isinstance(refused.value, RuntimeError)
        with pytest.raises(CalledFromEventLoop):
            cp.close()
        assert await _in_thread(lambda: cp.load("t")) is None  # nothing was saved
    finally:
        await _in_thread(cp.close)


async def _in_thread(call: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(call)


class _Reentrant(InMemoryCheckpointer[Counter]):
    """A backend whose ``load`` calls the sync face it sits under: on the private loop's thread."""

    outer: SyncCheckpointer[Counter] | None = None

    async def load(self, thread_id: str) -> Any:
        assert self.outer is not None
        return self.outer.get(thread_id, 0)


@pytest.mark.timeout(60)  # the failure this guards against is a hang
def test_a_call_from_the_private_loops_own_thread_raises_instead_of_deadlocking() -> None:
    inner = _Reentrant(Counter)
    with SyncCheckpointer.open(lambda: inner) as cp:
        inner.outer = cp
        with pytest.raises(CalledFromEventLoop):
            cp.load("t")
        cp.save(make_cp("t", 0))  # the checkpointer still works afterwards
        assert cp.get("t", 0) is not None


def test_sync_checkpointer_open_takes_any_backend_opener(tmp_path: Path) -> None:
    with SyncCheckpointer[Counter].open(
        lambda: SqliteCheckpointer.open(tmp_path / "x.db", Counter)
    ) as cp:
        cp.save(make_cp("t", 0))
        assert cp.load("t") is not None
        assert cp.path == str(tmp_path / "x.db")  # type: ignore[attr-defined]  # forwarded
    with open_memory(Counter, keep_last=1) as mem:
        mem.save(make_cp("t", 0))
        mem.save(make_cp("t", 1))
        assert [m.step for m in mem.list_checkpoints("t")] == [1]


class _Iterating(InMemoryCheckpointer[Counter]):
    """A backend with an async-iterator method, as backends grow them."""

    closed_early = False

    async def iter_steps(self, thread_id: str) -> AsyncIterator[int]:
        try:
            for meta in await self.list_checkpoints(thread_id):
                yield meta.step
        finally:
            if meta.step != (await self.load(thread_id)).step:  # type: ignore[union-attr]
                type(self).closed_early = True


def test_an_async_iterator_method_becomes_a_plain_iterator() -> None:
    with SyncCheckpointer.open(lambda: _Iterating(Counter)) as cp:
        for step in range(5):
            cp.save(make_cp("t", step))
        steps = cp.iter_steps("t")  # type: ignore[attr-defined]  # forwarded at run time
        assert isinstance(steps, Iterator)
        assert list(steps) == [0, 1, 2, 3, 4]
        assert not _Iterating.closed_early
        for step in cp.iter_steps("t"):  # type: ignore[attr-defined]
            if step == 1:
                break
        gc.collect()
        assert cp.load("t") is not None  # a round trip: the early close ran before it
        assert _Iterating.closed_early


def test_the_spelled_out_methods_take_the_async_methods_arguments() -> None:
    """Every typed sync method has its async twin's parameters (so none can drift apart)."""
    pairs: list[tuple[type[Any], type[Any]]] = [
        (SyncCheckpointer, HistoryCheckpointer),
        (SyncSqliteCheckpointer, SqliteCheckpointer),
    ]
    checked = 0
    for sync_cls, async_cls in pairs:
        for name, method in vars(sync_cls).items():
            if name.startswith("_") or not inspect.isfunction(method) or name == "open":
                continue
            theirs = inspect.signature(getattr(async_cls, name)).parameters.values()
            ours = inspect.signature(method).parameters.values()
            assert list(ours) == list(theirs), name
            checked += 1
    assert checked >= 23
    for opener, original in (
        (open_sqlite, SqliteCheckpointer.open),
        (open_memory, InMemoryCheckpointer),
    ):
        assert list(inspect.signature(opener).parameters) == list(
            inspect.signature(original).parameters
        )


def test_every_async_method_is_reachable_as_a_plain_call(tmp_path: Path) -> None:
    async_methods = {
        name
        for name, member in inspect.getmembers(SqliteCheckpointer)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    with open_sqlite(tmp_path / "x.db", Counter) as cp:
        missing = {name for name in async_methods if not callable(getattr(cp, name, None))}
    assert missing == set()
    assert "close" in async_methods
    assert "save" in async_methods


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX-only")
@pytest.mark.timeout(60)  # the failure this guards against is a hang in the child
def test_a_forked_child_gets_forked_process_not_a_hang(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "x.db", Counter) as cp:
        cp.save(make_cp("t", 0))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what a call does, then leave without cleanup
            try:
                cp.load("t")
                outcome = b"returned"
            except ForkedProcess:
                outcome = b"ForkedProcess"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                outcome = type(exc).__name__.encode()
            os.write(write, outcome)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            outcome = pipe.read()
        os.waitpid(pid, 0)
        assert outcome == b"ForkedProcess"
        assert cp.load("t") is not None  # the parent's checkpointer is untouched


FORGETFUL = textwrap.dedent(
    """
    import sys
    import forkpoint.sync
    from tests.conftest import Counter, make_cp

    cp = forkpoint.sync.open_sqlite(sys.argv[1], Counter)
    cp.save(make_cp("t", 0))
    print("returned", flush=True)
    """
)


def test_an_unclosed_sync_checkpointer_lets_the_process_exit(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    done = subprocess.run(
        [sys.executable, "-c", FORGETFUL, str(path)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,  # a hang guard
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "returned"
    assert done.stderr.decode() == ""
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT step FROM checkpoints").fetchall() == [(0,)]


def test_a_forgotten_checkpointer_is_closed_when_collected(tmp_path: Path) -> None:
    before = set(_sync_threads())
    cp = open_sqlite(tmp_path / "x.db", Counter)
    cp.save(make_cp("t", 0))
    (thread,) = set(_sync_threads()) - before
    del cp
    gc.collect()
    thread.join(timeout=60)  # a hang guard, not a timing assertion
    assert not thread.is_alive()
    assert not (tmp_path / "x.db-wal").exists()  # closed properly: the WAL was folded in


def test_the_module_is_importable_as_forkpoint_sync() -> None:
    assert forkpoint.sync.open_sqlite is open_sqlite
    assert "SyncCheckpointer" in forkpoint.sync.__all__


def test_streaming_methods_are_plain_iterators_checked_when_called(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "x.db", Counter) as cp:
        for step in range(5):
            cp.append("t", Counter(n=step), node="n")
        metas = cp.iter_checkpoints("t", newest_first=True, page_size=2)
        assert isinstance(metas, Iterator)
        assert [m.step for m in metas] == [4, 3, 2, 1, 0]
        assert [c.state.data.n for c in cp.iter_states("t", before=3)] == [2, 1, 0]
        assert [i.thread_id for i in cp.iter_threads()] == ["t"]
        with pytest.raises(InvalidInput):  # at the call, before any iteration
            cp.iter_checkpoints("t", page_size=0)
        for meta in cp.iter_checkpoints("t", page_size=1):  # left early: nothing hangs
            assert meta.step == 0
            break
        assert cp.load("t") is not None
