"""Crashes: real SIGKILLs of child processes in the middle of saves, forks and migrations."""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from forkpoint import SqliteCheckpointer, ThreadInfo
from forkpoint.migrate import HEAD_REVISION
from tests.reliability.support import (
    ROOT,
    Blob,
    Child,
    check_database,
    iterations,
    make_blob,
)


def _acks(lines: list[dict[str, object]]) -> dict[tuple[str, int], str]:
    return {(str(x["t"]), int(str(x["s"]))): str(x["d"]) for x in lines if "t" in x}


@pytest.mark.parametrize("durability", ["full", "normal"])
@pytest.mark.parametrize("writers", [1, 4])
async def test_kill_during_save_streams(
    tmp_path: Path, scale: int, writers: int, durability: str
) -> None:
    """SIGKILL writers mid-stream (1 KB..1 MB states), restart them, kill again: nothing lost."""
    path = tmp_path / "crash.db"
    rng = random.Random(f"{writers}{durability}{scale}")
    acked: dict[tuple[str, int], str] = {}
    for _round in range(iterations(2, scale)):
        children = [Child("saver", path, f"w{i}", durability, 10_000, "") for i in range(writers)]
        want = rng.randint(2, 12)
        for child in children:
            child.read_until(want + 1)  # "ready" plus some acknowledged saves
        await asyncio.sleep(rng.uniform(0, 0.05))
        for child in children:
            acked.update(_acks(child.kill()))
        assert all(c.proc.returncode == -9 for c in children)
        await check_database(path, acked, reopen_in_child=False)
    latest = await check_database(path, acked)
    assert len(latest) == writers
    assert len(acked) >= writers * 2


async def _large_thread(path: Path, steps: int, size: int) -> None:
    rows = [make_blob("big", s, size) for s in range(steps)]
    first, last = rows[0].created_at, rows[-1].created_at
    info = ThreadInfo(
        thread_id="big",
        created_at=first,
        updated_at=last,
        latest_step=steps - 1,
        checkpoint_count=steps,
    )
    async with SqliteCheckpointer.open(path, Blob) as cp:
        await cp.restore_thread(info, rows)


async def _snapshot(cp: SqliteCheckpointer[Blob], thread_id: str) -> list[str]:
    out = []
    for meta in await cp.list_checkpoints(thread_id):
        got = await cp.get(thread_id, meta.step)
        assert got is not None
        out.append(got.model_copy(update={"thread_id": "-"}).model_dump_json())
    return out


async def test_kill_during_fork_of_large_thread(tmp_path: Path, scale: int) -> None:
    """A fork killed at a random moment is whole or absent; the source is unchanged; retry works."""
    path = tmp_path / "fork.db"
    steps = 400
    await _large_thread(path, steps, 8 * 1024)
    async with SqliteCheckpointer.open(path, Blob) as cp:
        source = await _snapshot(cp, "big")
        source_info = await cp.thread_info("big")
    rng = random.Random(scale)
    outcomes = []
    for i in range(iterations(3, scale)):
        new_id = f"fork-{i}"
        at = rng.randrange(steps // 2, steps)
        child = Child("forker", path, "big", at, new_id)
        child.read_until(1)
        await asyncio.sleep(rng.uniform(0, 0.15))
        lines = child.kill()
        acknowledged = any("forked" in x for x in lines)
        async with SqliteCheckpointer.open(path, Blob) as cp:
            info = await cp.thread_info(new_id)
            assert not (acknowledged and info is None), "an acknowledged fork is missing"
            if info is not None:  # whole: every step up to `at`, identical to the source's
                assert (info.parent_thread_id, info.parent_step) == ("big", at)
                assert await _snapshot(cp, new_id) == source[: at + 1]
            else:
                assert await cp.list_checkpoints(new_id) == []
            outcomes.append(info is not None)
            assert await _snapshot(cp, "big") == source
            assert await cp.thread_info("big") == source_info
            # A caller that died before learning the outcome retries with the same id.
            assert await cp.fork("big", at, new_thread_id=new_id) == new_id
            assert await _snapshot(cp, new_id) == source[: at + 1]
            forks = [f.thread_id for f in await cp.list_forks("big")]
            assert forks.count(new_id) == 1
    print(f"fork kills: {outcomes.count(True)} committed, {outcomes.count(False)} absent")
    await check_database(path, {}, contiguous=False)


def _revision(path: Path) -> str | None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "alembic_version" not in tables:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def _old_database(tmp_path: Path, name: str) -> tuple[Path, str | None]:
    """A database one migration behind head: the rev 0001 fixture, or a new file at head 0001."""
    path = tmp_path / name
    fixture = ROOT / "tests" / "fixtures" / "rev0001.db"
    if HEAD_REVISION != "0001" and fixture.exists():
        shutil.copyfile(fixture, path)
        return path, "0001"
    path.write_bytes(b"")  # a zero-byte file is a new database: the migration creates everything
    return path, None


@pytest.mark.parametrize("how", ["held", "random"])
async def test_kill_during_migration(tmp_path: Path, scale: int, how: str) -> None:
    """A migration killed mid-way leaves the old revision (with its data) or the new one."""
    rng = random.Random(scale)
    for i in range(iterations(2, scale)):
        path, old = _old_database(tmp_path, f"migrate-{how}-{i}.db")
        child = Child("migrate", path, "hold" if how == "held" else "go")
        if how == "held":
            assert any("held" in x for x in child.read_until(2)), child.lines
        else:
            child.read_until(1)
            await asyncio.sleep(rng.uniform(0, 0.4))
        child.kill()
        revision = _revision(path)
        if how == "held":
            assert revision == old, "an uncommitted migration is visible"
        assert revision in (old, HEAD_REVISION)
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
        async with SqliteCheckpointer.open(path, Blob) as cp:  # the next open migrates
            if old is not None:
                assert len(await cp.list_threads()) > 0
            await cp.save(make_blob("after-migration", 0))
        assert _revision(path) == HEAD_REVISION


async def test_kill_with_pending_wal_then_concurrent_opens(tmp_path: Path, scale: int) -> None:
    """A writer dies with a large un-checkpointed WAL; four processes then open at once."""
    path = tmp_path / "wal.db"
    acked: dict[tuple[str, int], str] = {}
    for i in range(iterations(1, scale)):
        child = Child("walfill", path, f"wal{i}", 120, 64 * 1024)
        lines = child.read_until(121)
        wal = next(x["wal"] for x in lines if "wal" in x)
        assert int(wal) > 4 * 1024 * 1024
        acked.update(_acks(child.kill()))
        go = time.time() + 1.5
        openers = [Child("opener", path, go) for _ in range(4)]
        want = {f"wal{j}": 119 for j in range(i + 1)}
        for o in openers:
            o.finish()
            assert o.proc.returncode == 0, o.stderr
            assert o.lines == [want]
        await check_database(path, acked)
