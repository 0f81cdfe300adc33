"""SQLite only: data survives reopening; instances and processes share one file safely."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from forkpoint import SqliteCheckpointer, StepConflict
from tests.conftest import Counter, make_cp

ROOT = Path(__file__).resolve().parents[2]


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "keep.db"
    async with SqliteCheckpointer.open(db, Counter) as cp:
        for step in range(4):
            await cp.save(
                make_cp("t", step, metadata={"s": step}),
                thread_metadata={"owner": "ann"},
            )
        fork_id = await cp.fork("t", 1)
        expected = [(await cp.get("t", s)) for s in range(4)]
        info = await cp.thread_info("t")
    for durability in ("full", "normal"):
        async with SqliteCheckpointer.open(db, Counter, durability=durability) as cp:
            again = [(await cp.get("t", s)) for s in range(4)]
            assert [c.model_dump() if c else None for c in again] == [
                c.model_dump() if c else None for c in expected
            ]
            assert await cp.thread_info("t") == info
            fork = await cp.thread_info(fork_id)
            assert fork is not None
            assert (fork.parent_thread_id, fork.parent_step) == ("t", 1)
            assert [m.step for m in await cp.list_checkpoints(fork_id)] == [0, 1]
            with pytest.raises(StepConflict):
                await cp.save(make_cp("t", 3, n=99))


async def test_two_instances_race_one_step(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    async with (
        SqliteCheckpointer.open(db, Counter) as one,
        SqliteCheckpointer.open(db, Counter) as two,
    ):
        await one.save(make_cp("t", 0))
        for step in range(1, 11):
            a, b = make_cp("t", step, n=step), make_cp("t", step, n=-step)
            results = await asyncio.gather(one.save(a), two.save(b), return_exceptions=True)
            assert sorted(type(r).__name__ for r in results) == ["NoneType", "StepConflict"]
            winner = a if results[0] is None else b
            for reader in (one, two):
                got = await reader.get("t", step)
                assert got is not None
                assert got.state.data.n == winner.state.data.n
        # Identical retries from either instance are no-ops.
        same = make_cp("t", 11)
        assert list(await asyncio.gather(one.save(same), two.save(same))) == [None, None]
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT step, count(*) FROM checkpoints GROUP BY step").fetchall()
    finally:
        conn.close()
    assert rows == [(step, 1) for step in range(12)]


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from tests.conftest import Counter, make_cp
    from forkpoint import SqliteCheckpointer

    async def main(path: str, worker: int, count: int) -> None:
        async with SqliteCheckpointer.open(path, Counter, busy_timeout=30) as cp:
            for step in range(count):
                await cp.save(make_cp(f"w{worker}", step))
            # All workers also race for the same steps of one shared thread.
            won = 0
            for step in range(count):
                try:
                    await cp.save(make_cp("shared", step, n=worker))
                    won += 1
                except Exception as exc:
                    if type(exc).__name__ != "StepConflict":
                        raise
            print(won)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


@pytest.mark.slow
def test_several_processes_write_one_file(tmp_path: Path) -> None:
    db = tmp_path / "procs.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    workers, count = 4, 25
    asyncio.run(_create(db))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), str(w), str(count)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err.lower()
    wins = sum(int(out.strip()) for out, _err in outputs)
    assert wins == count  # each shared step was won by exactly one process
    asyncio.run(_check(db, workers, count))


async def _create(db: Path) -> None:
    async with SqliteCheckpointer.open(db, Counter):
        pass


async def _check(db: Path, workers: int, count: int) -> None:
    async with SqliteCheckpointer.open(db, Counter) as cp:
        for w in range(workers):
            assert [m.step for m in await cp.list_checkpoints(f"w{w}")] == list(range(count))
        shared = await cp.list_checkpoints("shared")
        assert [m.step for m in shared] == list(range(count))
        info = await cp.thread_info("shared")
        assert info is not None
        assert info.checkpoint_count == count
        assert await cp.integrity_check() == ["ok"]


async def test_unexpected_failure_inside_a_write_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    """Whatever a write job raises, its transaction is rolled back and the lock released."""
    db = tmp_path / "rollback.db"
    async with (
        SqliteCheckpointer.open(db, Counter) as cp,
        SqliteCheckpointer.open(db, Counter, busy_timeout=2) as other,
    ):
        await cp.save(make_cp("t", 0))

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM checkpoints")
            raise OverflowError("not a driver error")

        with pytest.raises(Exception) as info:  # noqa: PT011 - its type is not the point here
            await cp.engine.write(job)
        assert "not a driver error" in str(info.value)
        # Nothing of the failed job stayed, the lock is free for others, and cp still writes.
        await other.save(make_cp("t", 1))
        await cp.save(make_cp("t", 2))
        assert [m.step for m in await cp.list_checkpoints("t")] == [0, 1, 2]
