"""Child-process scenarios of the fault suite: ``python -m tests.reliability.children MODE ...``.

Each mode writes JSON lines to stdout, flushed at once: an acknowledgement is
written only after the ``save`` it reports has returned, so the parent knows
exactly which saves a SIGKILL may not lose.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from forkpoint import CheckpointError, SqliteCheckpointer, StepConflict
from forkpoint.sqlite import Durability
from tests.reliability.support import Blob, digest, make_blob

FIXED_TIME = datetime(2026, 1, 1, tzinfo=UTC)

SIZES = (1024, 16 * 1024, 256 * 1024, 1024 * 1024)
"""State sizes a crash stream cycles through: 1 KB to 1 MB."""


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _next_step(cp: SqliteCheckpointer[Blob], thread_id: str) -> int:
    latest = await cp.load(thread_id)
    return 0 if latest is None else latest.step + 1


async def saver(path: str, thread_id: str, durability: str, count: str, sizes: str) -> None:
    """Save a stream of checkpoints, resuming the thread; ack each after it returned."""
    mode: Durability = "full" if durability == "full" else "normal"
    cycle = [int(s) for s in sizes.split(",")] if sizes else list(SIZES)
    async with SqliteCheckpointer.open(path, Blob, durability=mode) as cp:
        start = await _next_step(cp, thread_id)
        emit(ready=start)
        for step in range(start, start + int(count)):
            cp_ = make_blob(thread_id, step, cycle[step % len(cycle)])
            try:
                await cp.save(cp_)
            except CheckpointError as exc:
                emit(error=type(exc).__name__, message=str(exc), step=step)
                return
            emit(t=thread_id, s=step, d=digest(cp_.state.data))
        emit(done=True)


async def forker(path: str, source: str, at: str, new_id: str) -> None:
    async with SqliteCheckpointer.open(path, Blob) as cp:
        emit(ready=True)
        made = await cp.fork(source, int(at), new_thread_id=new_id)
        emit(forked=made)


def migrate(path: str, hold: str) -> None:
    """Upgrade the file at ``path``; with ``hold``, stop inside the migration transaction."""
    from alembic import command

    from forkpoint import migrate as migrations

    if hold == "hold":
        original = command.upgrade

        def held(*args: Any, **kwargs: Any) -> None:
            original(*args, **kwargs)  # every migration has run, the transaction is open
            emit(held=True)
            time.sleep(600)

        command.upgrade = held
    emit(ready=True)
    migrations.upgrade(path)
    emit(done=True)


async def walfill(path: str, thread_id: str, count: str, size: str) -> None:
    """Save with automatic checkpoints off, so the WAL holds every commit; then wait."""
    async with SqliteCheckpointer.open(path, Blob) as cp:
        await cp.engine.on_writer(lambda c: c.execute("PRAGMA wal_autocheckpoint = 0"))
        for step in range(int(count)):
            one = make_blob(thread_id, step, int(size))
            await cp.save(one)
            emit(t=thread_id, s=step, d=digest(one.state.data))
        emit(wal=os.path.getsize(path + "-wal"))
        await asyncio.sleep(600)


async def reopen(path: str) -> None:
    """Open, load every thread, print {thread: latest step}."""
    async with SqliteCheckpointer.open(path, Blob) as cp:
        out = {}
        for info in await cp.list_threads():
            loaded = await cp.load(info.thread_id)
            assert loaded is not None
            out[info.thread_id] = loaded.step
        emit(**out)


async def opener(path: str, go: str) -> None:
    """Wait until the time ``go`` (so several openers start together), then reopen."""
    await asyncio.sleep(max(0.0, float(go) - time.time()))
    await reopen(path)


async def contend(path: str, thread_id: str, count: str) -> None:
    """Many saves into a file other processes write too; report errors and latencies."""
    worst = 0.0
    errors: list[str] = []
    async with SqliteCheckpointer.open(path, Blob, busy_timeout=30.0) as cp:
        for step in range(int(count)):
            one = make_blob(thread_id, step, 1024)
            started = time.perf_counter()
            try:
                await cp.save(one)
            except CheckpointError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            worst = max(worst, time.perf_counter() - started)
    emit(worst=worst, errors=errors)


async def racer(path: str, name: str, rounds: str) -> None:
    """Per round: wait for a line on stdin, then save step ``round`` of thread ``race``.

    Even rounds: every racer saves the identical checkpoint; odd rounds: each
    its own state. Reports "ok", "conflict" or another error per round.
    """
    async with SqliteCheckpointer.open(path, Blob, busy_timeout=30.0) as cp:
        loop = asyncio.get_running_loop()
        for r in range(int(rounds)):
            emit(ready=r)
            await loop.run_in_executor(None, sys.stdin.readline)
            node = f"racer-{name}" if r % 2 else "same"
            one = make_blob("race", r, 256, created_at=FIXED_TIME).model_copy(update={"node": node})
            try:
                await cp.save(one)
                emit(round=r, result="ok", node=one.node)
            except StepConflict:
                emit(round=r, result="conflict")
            except CheckpointError as exc:
                emit(round=r, result=f"{type(exc).__name__}: {exc}")


async def fsize(path: str, limit: str) -> None:
    """With the file-size limit at ``limit`` bytes, save until a typed error; no crash."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    async with SqliteCheckpointer.open(path, Blob) as cp:
        start = await _next_step(cp, "io")
        for step in range(start, start + 1000):
            one = make_blob("io", step, 64 * 1024)
            try:
                await cp.save(one)
            except CheckpointError as exc:
                emit(error=type(exc).__name__, cause=repr(exc.__cause__), path=exc.path, step=step)
                break
            emit(t="io", s=step, d=digest(one.state.data))
        # The same instance keeps answering after the fault.
        emit(after=(await cp.load("io")) is not None)


def forked_use(path: str) -> None:
    """Open, fork the process; the child must get ForkedProcess, then open afresh."""
    from forkpoint import ForkedProcess

    async def opened() -> SqliteCheckpointer[Blob]:
        cp = await SqliteCheckpointer.open(path, Blob)
        await cp.save(make_blob("parent", 0))
        return cp

    cp = asyncio.run(opened())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into the parent's code
        signal.alarm(30)  # touching the parent's connections could hang: die instead
        os.close(read_end)
        report: dict[str, Any] = {}

        async def child() -> None:
            for name, call in (
                ("save", lambda: cp.save(make_blob("child", 0))),
                ("load", lambda: cp.load("parent")),
                ("fork", lambda: cp.fork("parent", 0)),
            ):
                try:
                    await call()
                    report[name] = "no error"
                except ForkedProcess:
                    report[name] = "ForkedProcess"
                except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
                    report[name] = repr(exc)
            await cp.close()  # leaves the parent's connections alone
            async with SqliteCheckpointer.open(path, Blob) as fresh:
                await fresh.save(make_blob("child", 0))
                loaded = await fresh.load("parent")
                report["fresh"] = None if loaded is None else loaded.step

        try:
            asyncio.run(child())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as a failure
            report["crash"] = repr(exc)
        os.write(write_end, json.dumps(report).encode())
        os.close(write_end)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        child_report = json.loads(reader.read() or b"{}")
    _, status = os.waitpid(pid, 0)

    async def parent() -> bool:
        ok = (await cp.load("parent")) is not None
        await cp.save(make_blob("parent", 1))
        await cp.close()
        return ok

    emit(child=child_report, status=status, parent_ok=asyncio.run(parent()))


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "migrate":
        migrate(*args)
    elif mode == "forked_use":
        forked_use(*args)
    else:
        coros: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
            "saver": saver,
            "forker": forker,
            "walfill": walfill,
            "reopen": reopen,
            "opener": opener,
            "contend": contend,
            "racer": racer,
            "fsize": fsize,
        }
        asyncio.run(coros[mode](*args))


if __name__ == "__main__":
    main(sys.argv[1:])
