"""Retention on SQLite: prune + vacuum give space back, and pruning is safe beside writers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from forkpoint import SqliteCheckpointer
from tests.storage.test_deltas import Chat, chat_cp, grow


def size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


async def test_prune_then_vacuum_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    async with SqliteCheckpointer.open(path, Chat) as cp:
        # Many independent threads of full-size rows (no deltas to hide the effect).
        for t in range(40):
            state = grow(1, size=1500)[0]
            for step in range(10):
                await cp.save(chat_cp(f"t{t}", step, Chat.apply(state, {"turn": step})))
        await cp.vacuum()
        before = size(path)
        report = await cp.prune(keep_last=1)
        assert report.checkpoints_removed == 40 * 9
        assert report.threads_touched == 40
        freed = await cp.vacuum()
        after = size(path)
    assert freed >= before - after > 0
    # 90% of the checkpoints went; the file must lose well over half its size.
    assert after < 0.4 * before, (before, after)


async def test_dry_run_reports_without_removing(tmp_path: Path) -> None:
    async with SqliteCheckpointer.open(tmp_path / "x.db", Chat) as cp:
        for step in range(6):
            await cp.save(chat_cp("t", step, Chat(turn=step)))
        dry = await cp.prune("t", keep_last=2, dry_run=True)
        assert dry.dry_run
        assert dry.checkpoints_removed == 4
        assert dry.bytes_freed > 0
        assert len(await cp.list_checkpoints("t")) == 6
        real = await cp.prune("t", keep_last=2)
        assert (real.checkpoints_removed, real.bytes_freed) == (4, dry.bytes_freed)


SAVER = textwrap.dedent(
    """
    import asyncio, sys
    from forkpoint import SqliteCheckpointer
    from tests.storage.test_deltas import Chat, chat_cp

    async def main(path, count):
        async with SqliteCheckpointer.open(path, Chat, busy_timeout=30) as cp:
            for step in range(count):
                await cp.save(chat_cp("busy", step, Chat(turn=step, messages=["m" * 3000])))
        print("saved", count, flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_pruning_beside_a_writing_process_loses_nothing_new(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    async with SqliteCheckpointer.open(path, Chat) as cp:
        await cp.save(chat_cp("busy", 0, Chat()))
        await cp.delete_thread("busy")
        count = 300
        child = subprocess.Popen(  # noqa: ASYNC220 - polled below without blocking the loop
            [sys.executable, "-c", SAVER, str(path), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        rounds = 0
        while child.poll() is None:
            report = await cp.prune(keep_last=3)
            assert report.checkpoints_removed >= 0
            rounds += 1
            await asyncio.sleep(0.01)
        out, err = child.communicate()
        assert child.returncode == 0, err.decode()
        assert out.decode().strip() == f"saved {count}"
        await cp.prune(keep_last=3)
        history = await cp.list_checkpoints("busy")
        assert [m.step for m in history] == [count - 3, count - 2, count - 1]
        latest = await cp.load("busy")
        assert latest is not None
        assert latest.state.data.turn == count - 1
        assert rounds > 1


async def test_storage_stats_count_what_is_stored(tmp_path: Path) -> None:
    async with SqliteCheckpointer.open(tmp_path / "x.db", Chat) as cp:
        states = grow(12, size=600)
        for step, state in enumerate(states):
            await cp.save(chat_cp("grow", step, state))
        await cp.save(chat_cp("small", 0, Chat()))
        await cp.fork("grow", 5, new_thread_id="fork")
        stats = await cp.storage_stats()
        for thread in ("grow", "small", "fork"):
            info = await cp.thread_info(thread)
            assert info is not None
            raws = [await cp.get_raw(thread, m.step) for m in await cp.list_checkpoints(thread)]
            sizes = [len(r.encode() if isinstance(r, str) else r) for r in raws if r is not None]
            assert stats.stored_bytes[thread] == sum(sizes)
            latest = await cp.get_raw(thread, info.latest_step)
            assert isinstance(latest, str)
            assert stats.latest_bytes[thread] == len(latest.encode())
        # Deltas make the growing thread's history far smaller than twelve full copies.
        assert stats.stored_bytes["grow"] < 3 * stats.latest_bytes["grow"]
