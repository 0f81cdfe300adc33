"""Concurrency and cancellation: contention, races, lock timeouts, cancelled tasks, close, fork()."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import sqlite3
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from forkpoint import CheckpointerClosed, DatabaseLocked, SqliteCheckpointer
from tests.reliability.support import (
    ROOT,
    Blob,
    Child,
    check_database,
    child_command,
    child_env,
    digest,
    iterations,
    make_blob,
    run_child,
)


async def test_four_processes_500_saves_each(tmp_path: Path, scale: int) -> None:
    """4 processes x 500 saves into one file: all present, zero lock errors; worst latency shown."""
    path = tmp_path / "contend.db"
    per = 500 * scale
    async with SqliteCheckpointer.open(path, Blob):
        pass  # created and migrated once, so the writers start on equal terms
    children = [Child("contend", path, f"p{i}", per) for i in range(4)]
    reports = []
    for child in children:
        child.finish(timeout=600)
        assert child.proc.returncode == 0, child.stderr
        reports.append(child.lines[-1])
    assert [r["errors"] for r in reports] == [[], [], [], []]
    worst = max(float(r["worst"]) for r in reports)
    print(f"\n4 processes x {per} saves: worst save latency {worst * 1000:.1f} ms")
    acked = {
        (f"p{i}", s): digest(make_blob(f"p{i}", s, 1024).state.data)
        for i in range(4)
        for s in range(per)
    }
    latest = await check_database(path, acked)
    assert latest == {f"p{i}": per - 1 for i in range(4)}


async def test_racing_saves_of_one_step(tmp_path: Path, scale: int) -> None:
    """Three processes save the same (thread, step): exactly one row; the rest agree or conflict."""
    path = tmp_path / "race.db"
    async with SqliteCheckpointer.open(path, Blob):
        pass
    await _race(path, iterations(6, scale))


async def _race(path: Path, rounds: int) -> None:
    results = await asyncio.to_thread(_drive_racers, path, rounds)
    _check_race(path, rounds, results)
    await check_database(path, {}, reopen_in_child=False)


def _drive_racers(path: Path, rounds: int) -> list[list[dict[str, object]]]:
    """Three racer processes; each round they all save at one go signal."""
    procs = [
        subprocess.Popen(
            child_command("racer", path, f"q{i}", rounds),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=child_env(),
            text=True,
        )
        for i in range(3)
    ]
    results: list[list[dict[str, object]]] = [[] for _ in procs]
    try:
        for r in range(rounds):
            for p in procs:
                assert p.stdout is not None
                assert json.loads(p.stdout.readline()) == {"ready": r}
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            for i, p in enumerate(procs):
                assert p.stdout is not None
                results[i].append(json.loads(p.stdout.readline()))
    finally:
        for p in procs:
            p.communicate(timeout=60)
    return results


def _check_race(path: Path, rounds: int, results: list[list[dict[str, object]]]) -> None:
    conn = sqlite3.connect(path)
    try:
        for r in range(rounds):
            outcome = [str(res[r]["result"]) for res in results]
            rows = conn.execute(
                "SELECT count(*), min(node) FROM checkpoints WHERE thread_id = 'race' AND step = ?",
                (r,),
            ).fetchone()
            assert rows[0] == 1
            if r % 2 == 0:  # identical saves: every racer succeeds (idempotent retry)
                assert outcome == ["ok", "ok", "ok"]
            else:  # different saves: exactly one wins, the others get StepConflict
                assert sorted(outcome) == ["conflict", "conflict", "ok"], outcome
                winner = next(res[r]["node"] for res in results if res[r]["result"] == "ok")
                assert rows[1] == winner
    finally:
        conn.close()


async def test_foreign_lock_past_busy_timeout(tmp_path: Path, scale: int) -> None:
    """A foreign write lock held past busy_timeout: DatabaseLocked after ~the timeout, then a retry works."""
    path = tmp_path / "lock.db"
    timeout = 1.0
    async with SqliteCheckpointer.open(path, Blob, busy_timeout=timeout) as cp:
        await cp.save(make_blob("t", 0))
        for i in range(iterations(1, scale)):
            step = 1 + i
            foreign = sqlite3.connect(path, isolation_level=None)
            foreign.execute("BEGIN IMMEDIATE")
            try:
                for call, where in (
                    (lambda s=step: cp.save(make_blob("t", s)), step),
                    (lambda i=i: cp.fork("t", 0, new_thread_id=f"f{i}"), 0),
                ):
                    started = time.monotonic()
                    with pytest.raises(DatabaseLocked) as info:
                        await call()
                    waited = time.monotonic() - started
                    assert waited >= 0.5 * timeout, f"gave up after {waited:.3f}s, not ~{timeout}s"
                    err = info.value
                    assert err.path == str(path)
                    assert err.thread_id == "t"
                    assert err.step == where
                    assert isinstance(err.__cause__, sqlite3.OperationalError)
                    assert str(path) in str(err)
            finally:
                foreign.execute("ROLLBACK")
                foreign.close()
            assert await cp.get("t", step) is None  # nothing partial
            assert await cp.thread_info(f"f{i}") is None
            await cp.save(make_blob("t", step))  # the retry, once the lock is gone
            assert await cp.fork("t", 0, new_thread_id=f"f{i}") == f"f{i}"
    await check_database(path, {("t", 1): digest(make_blob("t", 1).state.data)}, contiguous=False)


def _consistent(path: Path) -> None:
    """Thread records agree with their rows: a save or fork is fully present or absent."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT t.thread_id, t.latest_step, t.checkpoint_count, "
            "(SELECT max(step) FROM checkpoints c WHERE c.thread_id = t.thread_id), "
            "(SELECT count(*) FROM checkpoints c WHERE c.thread_id = t.thread_id) FROM threads t"
        ).fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id NOT IN (SELECT thread_id FROM threads)"
        ).fetchone()[0]
    finally:
        conn.close()
    assert orphans == 0
    for thread_id, latest, count, max_step, n in rows:
        assert (latest, count) == (max_step, n), thread_id


def _take_write_lock(path: Path) -> None:
    """Another connection can BEGIN IMMEDIATE (it waits only for a commit in progress)."""
    other = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def _operation(
    cp: SqliteCheckpointer[Blob], op: str, i: int, size: int
) -> Callable[[], Coroutine[Any, Any, object]]:
    """The i-th save (thread "t", step 100 + i) or fork (into "fork-i"), as a re-issuable call."""
    if op == "save":
        one = make_blob("t", 100 + i, size)
        return lambda: cp.save(one)
    return lambda: cp.fork("src", 19, new_thread_id=f"fork-{i}")


@pytest.mark.parametrize("op", ["save", "fork"])
async def test_cancellation_at_any_point(tmp_path: Path, scale: int, op: str) -> None:
    """Cancel save/fork after 0..N loop turns or via wait_for: no open transaction, all-or-nothing."""
    path = tmp_path / "cancel.db"
    rng = random.Random(scale)
    async with SqliteCheckpointer.open(path, Blob) as cp:
        for s in range(20):
            await cp.save(make_blob("src", s, 4096))
        cancelled = 0
        for i in range(iterations(24, scale)):
            call = _operation(cp, op, i, rng.choice([64, 4096, 256 * 1024]))
            if i % 3 == 2:
                try:
                    await asyncio.wait_for(call(), timeout=rng.choice([0, 0.0001, 0.001]))
                except TimeoutError:
                    cancelled += 1
            else:
                task = asyncio.ensure_future(call())
                for _ in range(rng.randrange(0, 6)):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    cancelled += 1  # the usual outcome; completing first is allowed too
            _consistent(path)
            await asyncio.to_thread(_take_write_lock, path)
            await call()
            _consistent(path)
        assert cancelled >= iterations(24, scale) // 2  # the scenario really cancels
        for i in range(iterations(24, scale)):
            if op == "save":
                got = await cp.get("t", 100 + i)
                assert got is not None
            else:
                assert (await cp.thread_info(f"fork-{i}")) is not None
    await check_database(path, {}, contiguous=False)


def _threads() -> set[threading.Thread]:
    """Live threads, without the event loop's default executor (asyncio's, not ours)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def test_close_with_saves_in_flight(tmp_path: Path, scale: int) -> None:
    """close() amid saves: each completes or raises CheckpointerClosed; no thread or warning leaks."""
    path = tmp_path / "close.db"
    baseline = _threads()
    for r in range(iterations(4, scale)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cp = await SqliteCheckpointer.open(path, Blob)
            tasks = [
                asyncio.ensure_future(cp.save(make_blob(f"r{r}-{i}", 0, 2048))) for i in range(40)
            ]
            await asyncio.sleep(0)
            closing = asyncio.ensure_future(cp.close())
            late = [asyncio.ensure_future(cp.save(make_blob(f"late{r}-{i}", 0))) for i in range(5)]
            results = await asyncio.gather(*tasks, *late, return_exceptions=True)
            await closing
            for res in results:
                assert res is None or isinstance(res, CheckpointerClosed), repr(res)
            assert all(isinstance(res, CheckpointerClosed) for res in results[40:])
            with pytest.raises(CheckpointerClosed):
                await cp.load("x")
            done = [i for i, res in enumerate(results[:40]) if res is None]
            del cp, tasks, late, closing
            gc.collect()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
        for _ in range(50):
            if _threads() <= baseline:
                break
            await asyncio.sleep(0.02)
        assert _threads() <= baseline
        async with SqliteCheckpointer.open(path, Blob) as again:
            for i in done:
                assert await again.load(f"r{r}-{i}") is not None
    await check_database(path, {}, reopen_in_child=False)


def test_use_after_os_fork(tmp_path: Path, scale: int) -> None:
    """In a child after os.fork(): ForkedProcess for every call; a fresh open works there."""
    for i in range(iterations(1, scale)):
        report = run_child("forked_use", tmp_path / f"forked{i}.db", timeout=90)
        assert report["status"] == 0
        assert report["child"] == {
            "save": "ForkedProcess",
            "load": "ForkedProcess",
            "fork": "ForkedProcess",
            "fresh": 0,
        }
        assert report["parent_ok"] is True


async def test_long_reader_does_not_block_writers(tmp_path: Path, scale: int) -> None:
    """A reader holding a snapshot does not stop saves; the WAL shrinks once it is gone."""
    path = tmp_path / "reader.db"
    mib = 1024 * 1024
    async with SqliteCheckpointer.open(path, Blob) as cp:
        limit = await cp.engine.on_writer(
            lambda c: c.execute("PRAGMA journal_size_limit").fetchone()[0]
        )
        for s in range(10):
            await cp.save(make_blob("t", s, 1024))
        step = 10
        for _ in range(iterations(1, scale)):
            reader = sqlite3.connect(path)
            reader.execute("BEGIN")
            seen = reader.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
            peak = 0
            try:
                while peak <= limit + 4 * mib:  # a slow history iteration, one row per save
                    await cp.save(make_blob("t", step, mib))
                    step += 1
                    reader.execute("SELECT step FROM checkpoints LIMIT 1").fetchall()
                    peak = max(peak, (path.parent / (path.name + "-wal")).stat().st_size)
                assert reader.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == seen
            finally:
                reader.close()
            for _ in range(3):  # the next saves checkpoint the WAL and restart it, truncated
                await cp.save(make_blob("t", step, 1024))
                step += 1
            after = (path.parent / (path.name + "-wal")).stat().st_size
            print(f"\nWAL peak {peak / mib:.1f} MiB, after the reader {after / mib:.1f} MiB")
            assert after <= limit < peak
    await check_database(path, {}, reopen_in_child=False)


async def test_close_cancelled_then_closed_again(tmp_path: Path, scale: int) -> None:
    """A close() that is itself cancelled mid-way: calling close() again still releases everything."""
    path = tmp_path / "reclose.db"
    baseline = _threads()
    for r in range(iterations(3, scale)):
        cp = await SqliteCheckpointer.open(path, Blob)
        tasks = [asyncio.ensure_future(cp.save(make_blob(f"c{r}-{i}", 0, 4096))) for i in range(20)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(cp.close())
        await asyncio.sleep(0)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await cp.close()  # the second close finishes the job
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(res is None or isinstance(res, CheckpointerClosed) for res in results), results
        with pytest.raises(CheckpointerClosed):
            await cp.save(make_blob("after", 0))
        for _ in range(100):
            if _threads() <= baseline:
                break
            await asyncio.sleep(0.02)
        assert _threads() <= baseline, "close() left connection threads running"
    await check_database(path, {}, reopen_in_child=False)
