"""Storage faults: full disks, I/O errors, read-only files, foreign files, newer schemas, backup."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from forkpoint import (
    DatabaseCorrupt,
    NotAForkpointDatabase,
    ReadOnlyDatabase,
    SchemaVersionError,
    SqliteCheckpointer,
    StorageError,
    StorageFull,
    ThreadInfo,
)
from tests.reliability.support import (
    ROOT,
    Blob,
    Child,
    can_mount,
    check_database,
    child_command,
    child_env,
    digest,
    files_in,
    iterations,
    make_blob,
    run_child,
    sha,
    tmpfs,
)

MOUNTABLE = can_mount()
NEEDS_MOUNT = "needs root with mount rights (CAP_SYS_ADMIN) to mount a small tmpfs"


async def _page_limit(cp: SqliteCheckpointer[Blob], extra_pages: int | None) -> None:
    """Test hook: cap the writer connection's file at its current size + ``extra_pages``.

    ``PRAGMA max_page_count`` is per connection and not persisted; it makes
    SQLite fail with a real SQLITE_FULL. ``None`` lifts the cap.
    """

    def apply(conn: sqlite3.Connection) -> None:
        used = conn.execute("PRAGMA page_count").fetchone()[0]
        cap = 2**31 - 2 if extra_pages is None else used + extra_pages
        conn.execute(f"PRAGMA max_page_count = {cap}").fetchone()

    await cp.engine.on_writer(apply)


async def test_disk_full_page_limit(tmp_path: Path, scale: int) -> None:
    """SQLITE_FULL: typed StorageFull naming the file; nothing lost; the same instance recovers."""
    path = tmp_path / "full.db"
    acked: dict[tuple[str, int], str] = {}
    async with SqliteCheckpointer.open(path, Blob) as cp:
        rows = [make_blob("big", s, 4096) for s in range(300)]
        info = ThreadInfo(
            thread_id="big",
            created_at=rows[0].created_at,
            updated_at=rows[-1].created_at,
            latest_step=299,
            checkpoint_count=300,
        )
        await cp.restore_thread(info, rows)
        acked.update({("big", r.step): digest(r.state.data) for r in rows})
        step = {f"w{i}": 0 for i in range(4)}
        for round_ in range(iterations(2, scale)):
            await _page_limit(cp, 40)
            full = 0
            while full < 3:  # concurrent saves share batches; the batch that fails is split up
                batch = [make_blob(t, step[t], 24 * 1024) for t in step]
                results = await asyncio.gather(*(cp.save(b) for b in batch), return_exceptions=True)
                for one, res in zip(batch, results, strict=True):
                    if res is None:
                        acked[(one.thread_id, one.step)] = digest(one.state.data)
                        step[one.thread_id] += 1
                    else:
                        assert isinstance(res, StorageFull), repr(res)
                        assert res.path == str(path)
                        assert (res.thread_id, res.step) == (one.thread_id, one.step)
                        assert isinstance(res.__cause__, sqlite3.Error)
                        full += 1
            # A fork of 300 x 4 KB does not fit in what is left either: absent, not partial.
            with pytest.raises(StorageFull) as info_:
                await cp.fork("big", 299, new_thread_id=f"fork{round_}")
            assert (info_.value.thread_id, info_.value.step) == ("big", 299)
            assert await cp.thread_info(f"fork{round_}") is None
            assert await cp.list_checkpoints(f"fork{round_}") == []
            await _page_limit(cp, None)  # space is back
            for t in step:
                one = make_blob(t, step[t], 24 * 1024)
                await cp.save(one)
                acked[(t, step[t])] = digest(one.state.data)
                step[t] += 1
            assert await cp.fork("big", 299, new_thread_id=f"fork{round_}") == f"fork{round_}"
    await check_database(path, acked)


@pytest.mark.skipif(not MOUNTABLE, reason=NEEDS_MOUNT)
async def test_disk_full_for_real_on_tmpfs(tmp_path: Path, scale: int) -> None:
    """A real ENOSPC on a 3 MiB tmpfs: StorageFull; once a file is deleted, saves go on."""
    for i in range(iterations(1, scale)):
        with tmpfs(tmp_path / f"mnt{i}", "3m") as mnt:
            await _fill_tmpfs(mnt)


async def _fill_tmpfs(mnt: Path) -> None:
    path = mnt / "full.db"
    acked: dict[tuple[str, int], str] = {}
    async with SqliteCheckpointer.open(path, Blob) as cp:
        ballast = mnt / "ballast"
        ballast.write_bytes(os.urandom(1024 * 1024))
        step = errors = 0
        while errors < 2:
            one = make_blob("t", step, 128 * 1024)
            failure: StorageError | None = None
            try:
                await cp.save(one)
            except StorageError as exc:
                failure = exc
            if failure is not None:
                assert isinstance(failure, StorageFull), repr(failure)
                assert (failure.thread_id, failure.step) == ("t", step)
                assert failure.path == str(path)
                errors += 1
                continue
            acked[("t", step)] = digest(one.state.data)
            step += 1
            assert step < 200, "the small file system never filled up"
        ballast.unlink()  # space is back: the same instance saves again
        for _ in range(2):
            one = make_blob("t", step, 16 * 1024)
            await cp.save(one)
            acked[("t", step)] = digest(one.state.data)
            step += 1
    await check_database(path, acked)


def _strace_can_inject() -> bool:
    if shutil.which("strace") is None:
        return False
    try:
        done = subprocess.run(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=getpid:error=EIO", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.skipif(not _strace_can_inject(), reason="strace with fault injection is not available")
@pytest.mark.parametrize("syscall", ["pwrite64", "fdatasync"])
async def test_io_error_injected_with_strace(tmp_path: Path, scale: int, syscall: str) -> None:
    """EIO from the kernel mid-stream: a typed StorageError, no crash; the file reopens intact."""
    path = tmp_path / "eio.db"
    acked: dict[tuple[str, int], str] = {}
    # Create and migrate the file first: the injection counts a thread's calls, and the
    # migrating thread's count grows with every revision, which is not what this tests.
    await asyncio.to_thread(run_child, "saver", path, "setup", "full", 0, "4096")
    for i in range(iterations(1, scale)):
        when = 40 + 7 * i
        cmd = [
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            f"trace={syscall}",
            "-e",
            f"inject={syscall}:error=EIO:when={when}+",
            *child_command("saver", path, f"eio{i}", "full", 400, "4096"),
        ]
        done = await asyncio.to_thread(
            subprocess.run,
            cmd,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr  # no crash: the child ends normally
        lines = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
        errors = [x for x in lines if "error" in x]
        assert errors, "the injected I/O error never surfaced"
        assert errors[0]["error"] == "DiskIOError", errors[0]
        assert str(path) in str(errors[0]["message"])
        acked.update({(str(x["t"]), int(x["s"])): str(x["d"]) for x in lines if "t" in x})
        await check_database(path, acked)


async def test_io_error_file_size_limit(tmp_path: Path, scale: int) -> None:
    """RLIMIT_FSIZE makes writes fail (EFBIG): typed error, no crash, the file reopens intact."""
    for i in range(iterations(1, scale)):
        # A new file each time: the limit is per file, and a grown database leaves its WAL room.
        path = tmp_path / f"fsize{i}.db"
        acked: dict[tuple[str, int], str] = {}
        async with SqliteCheckpointer.open(path, Blob) as cp:
            await cp.save(make_blob("io", 0, 1024))
            acked[("io", 0)] = digest(make_blob("io", 0, 1024).state.data)
        limit = os.path.getsize(path) + 1024 * 1024 + i * 256 * 1024
        child = Child("fsize", path, limit)
        lines = child.finish(timeout=300)
        assert child.proc.returncode == 0, child.stderr
        errors = [x for x in lines if "error" in x]
        assert len(errors) == 1, lines[-3:]
        assert errors[0]["error"] in ("DiskIOError", "StorageFull")  # EFBIG: SQLite's choice
        assert errors[0]["path"] == str(path)
        assert str(errors[0]["cause"]).startswith("OperationalError(")  # the sqlite3 error
        assert lines[-1] == {"after": True}
        acked.update({(str(x["t"]), int(x["s"])): str(x["d"]) for x in lines if "t" in x})
        await check_database(path, acked)


async def _readonly_checks(path: Path, *, read_only: bool, why: str) -> None:
    """Reads work; every write (vacuum too) raises ReadOnlyDatabase saying ``why``."""
    before = sha(path)
    async with SqliteCheckpointer.open(path, Blob, read_only=read_only) as cp:
        loaded = await cp.load("t")
        assert loaded is not None
        assert loaded.step == 4
        assert [m.step for m in await cp.list_checkpoints("t")] == [0, 1, 2, 3, 4]
        assert [t.thread_id for t in await cp.list_threads()] == ["t"]
        got = await cp.get("t", 2)
        assert got is not None
        assert got.state.data == make_blob("t", 2).state.data
        for call in (
            lambda: cp.save(make_blob("t", 5)),
            lambda: cp.fork("t", 2),
            lambda: cp.delete_thread("t"),
            lambda: cp.set_thread_metadata("t", {"a": 1}),
            cp.vacuum,
        ):
            with pytest.raises(ReadOnlyDatabase, match=why) as info:
                await call()
            assert info.value.path == str(path)
    assert sha(path) == before


async def _five(path: Path) -> None:
    async with SqliteCheckpointer.open(path, Blob) as cp:
        for s in range(5):
            await cp.save(make_blob("t", s))


async def test_read_only_flag(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    await _five(path)
    await _readonly_checks(path, read_only=True, why="opened read-only")
    await check_database(path, {("t", 4): digest(make_blob("t", 4).state.data)})


@pytest.mark.skipif(not MOUNTABLE, reason=NEEDS_MOUNT)
@pytest.mark.parametrize("flag", [True, False], ids=["read_only", "read_write"])
async def test_read_only_file_system(tmp_path: Path, flag: bool) -> None:
    """On a read-only mount (no -wal/-shm there): reads work, writes raise ReadOnlyDatabase."""
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        path = mnt / "ro.db"
        await _five(path)
        assert files_in(mnt) == {"ro.db"}
        await asyncio.to_thread(subprocess.run, ["mount", "-o", "remount,ro", str(mnt)], check=True)
        await _readonly_checks(path, read_only=flag, why="read-only file system")
        assert run_child("reopen", path) == {"t": 4}
        assert files_in(mnt) == {"ro.db"}


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(range(48)) for _ in range(16))
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _foreign_sqlite(path: Path, *, wal: bool, app_id: int = 0) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    if app_id:
        conn.execute(f"PRAGMA application_id = {app_id}")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [("x" * 500,)] * 50)
    conn.close()


def _forkpoint_file(path: Path) -> None:
    asyncio.run(_five(path))


@pytest.mark.parametrize(
    "kind",
    [
        "random",
        "text",
        "image",
        "short_text",
        "zeros",
        "truncated",
        "truncated_header",
        "foreign",
        "foreign_wal",
        "foreign_app_id",
    ],
)
def test_not_a_forkpoint_database(tmp_path: Path, kind: str) -> None:
    """open() refuses files that are not forkpoint's: typed, untouched, no sidecar files."""
    path = tmp_path / "target"
    if kind == "random":
        path.write_bytes(os.urandom(8192))
    elif kind == "text":
        path.write_text("Dear diary,\n" * 400)
    elif kind == "image":
        path.write_bytes(_png())
    elif kind == "short_text":
        path.write_text("hi\n")
    elif kind == "zeros":
        path.write_bytes(bytes(4096))
    elif kind in ("truncated", "truncated_header"):
        whole = tmp_path / "whole.db"
        _forkpoint_file(whole)
        data = whole.read_bytes()
        whole.unlink()
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else data[:60])
    else:
        _foreign_sqlite(
            path, wal=kind == "foreign_wal", app_id=0x1234 if kind == "foreign_app_id" else 0
        )
    before, listing = sha(path), files_in(tmp_path)

    async def attempt() -> None:
        for read_only in (False, True):
            with pytest.raises(NotAForkpointDatabase) as info:
                await SqliteCheckpointer.open(path, Blob, read_only=read_only)
            assert info.value.path == str(path)
            # A damaged forkpoint file is told apart from someone else's file.
            assert isinstance(info.value, DatabaseCorrupt) == kind.startswith("truncated")

    asyncio.run(attempt())
    assert sha(path) == before
    assert files_in(tmp_path) == listing


async def test_zero_byte_file_is_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    async with SqliteCheckpointer.open(path, Blob) as cp:
        await cp.save(make_blob("t", 0))
    await check_database(path, {("t", 0): digest(make_blob("t", 0).state.data)})


async def test_newer_schema_revision_refused_without_a_write(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    await _five(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.close()
    before, listing = sha(path), files_in(tmp_path)
    for kw in ({}, {"read_only": True}, {"migrate": False}):
        with pytest.raises(SchemaVersionError) as info:
            await SqliteCheckpointer.open(path, Blob, **kw)  # type: ignore[arg-type]
        assert "9999_from_the_future" in str(info.value)
        assert info.value.path == str(path)
    assert sha(path) == before
    assert files_in(tmp_path) == listing


async def test_backup_while_writers_save(tmp_path: Path, scale: int) -> None:
    """backup() of a live database: the copy passes integrity_check and opens as forkpoint's."""
    path = tmp_path / "live.db"
    async with SqliteCheckpointer.open(path, Blob) as cp:
        await cp.save(make_blob("seed", 0))
        writers = [Child("saver", path, f"b{i}", "full", 100_000, "1024,65536") for i in range(2)]
        try:
            for w in writers:
                w.read_until(5)
            for n in range(iterations(3, scale)):
                dest = tmp_path / f"copy{n}.db"
                await cp.backup(dest)
                assert (dest.stat().st_mode & 0o777) == 0o600
                async with SqliteCheckpointer.open(dest, Blob) as copy:
                    assert await copy.integrity_check() == ["ok"]
                    threads = await copy.list_threads()
                    assert "seed" in {t.thread_id for t in threads}
                await check_database(dest, {}, reopen_in_child=False)
        finally:
            acked = {}
            for w in writers:
                acked.update(
                    {(str(x["t"]), int(x["s"])): str(x["d"]) for x in w.kill() if "t" in x}
                )
    await check_database(path, acked)


async def test_new_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    old = os.umask(0)
    try:
        async with SqliteCheckpointer.open(path, Blob) as cp:
            await cp.save(make_blob("t", 0))
            for name in ("private.db", "private.db-wal", "private.db-shm"):
                assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
            await cp.backup(tmp_path / "copy.db")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "copy.db").stat().st_mode & 0o777 == 0o600
