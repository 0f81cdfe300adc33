"""Faults on a shared server: many writer processes, killed connections, cancellation, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from forkpoint import (
    CheckpointError,
    DatabaseLocked,
    DatabaseUnavailable,
    ReadOnlyDatabase,
    StepConflict,
    StorageError,
    StorageFull,
    ThreadExists,
)
from forkpoint.postgres._connect import MAX_CONFLICT_RETRIES, translate
from tests.conftest import make_cp
from tests.postgres.conftest import Opener

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(
    params=[pytest.param(1, id="fast"), pytest.param(10, id="soak", marks=pytest.mark.soak)]
)
def scale(request: pytest.FixtureRequest) -> int:
    """Iteration multiplier: 1 in the fast tier, 10 under ``make soak``."""
    return int(request.param)


async def test_four_processes_and_a_contended_shared_thread_lose_nothing(
    open_pg: Opener, pg_url: str, schema: str, scale: int
) -> None:
    per = 500 * scale
    cp = await open_pg()  # migrated once, so the writers start on equal terms
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - the children run on their own; nothing here waits
            [
                sys.executable,
                "-m",
                "tests.postgres.children",
                "saver",
                pg_url,
                schema,
                f"p{i}",
                str(per),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    lines = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    assert not [line for line in lines if "error" in line]
    assert sum(1 for line in lines if line.get("done")) == 4
    for i in range(4):
        history = await cp.list_checkpoints(f"p{i}")
        assert [m.step for m in history] == list(range(per))
        assert {m.node for m in history} == {f"p{i}"}
    shared = {line["s"]: line["by"] for line in lines if line.get("t") == "shared"}
    history = await cp.list_checkpoints("shared")
    # Gap-free, and each step is exactly the one save acknowledged for it.
    assert [m.step for m in history] == sorted(shared) == list(range(len(shared)))
    assert {m.step: m.node for m in history} == shared
    lost = sum(line["lost"] for line in lines if line.get("done"))
    assert len(shared) + lost == 4 * per  # every attempt either stored or told StepConflict


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.postgres.children", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_after(proc: subprocess.Popen[str], acks: int) -> list[dict[str, Any]]:
    """Read the child's acknowledgements; SIGKILL it after ``acks`` of them; all it sent."""
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    for raw in proc.stdout:
        lines.append(json.loads(raw))
        if sum(1 for line in lines if "ready" not in line) >= acks:
            break
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    lines += [json.loads(raw) for raw in rest.splitlines() if raw.strip()]
    return lines


async def test_sigkill_mid_save_keeps_every_acknowledged_save(
    open_pg: Opener, pg_url: str, schema: str, scale: int
) -> None:
    from tests.postgres.children import grown

    cp = await open_pg()
    for round_ in range(2 * scale):
        name = f"w{round_}"
        acked = _kill_after(_child("streamer", pg_url, schema, name), 40 + 7 * round_)
        steps = [line["s"] for line in acked if "s" in line]
        history = [m.step for m in await cp.list_checkpoints(name)]
        assert history[: len(steps)] == steps  # every acknowledged save is there, in order
        assert history == list(range(len(history)))  # at most the one in flight beyond them
        assert len(history) - len(steps) <= 1
        for step in history:
            got = await cp.get(name, step)
            assert got is not None
            assert got.state.data == grown(name, step).state.data


async def test_sigkill_mid_fork_leaves_forks_whole_or_absent(
    open_pg: Opener, pg_url: str, schema: str, scale: int
) -> None:
    cp = await open_pg()
    for step in range(300):
        await cp.save(make_cp("src", step))
    acked = _kill_after(_child("forker", pg_url, schema, "src"), 5 * scale)
    done = {line["fork"] for line in acked if "fork" in line}
    forks = {info.thread_id: info for info in await cp.list_forks("src")}
    assert done <= set(forks)
    for tid in forks:
        assert [m.step for m in await cp.list_checkpoints(tid)] == list(range(300))


async def _backend_waiting(admin: asyncpg.Connection, not_pids: set[int]) -> int:
    """The pid of forkpoint's session waiting for a lock (waits until there is one).

    ``admin`` must be outside a transaction: pg_stat_activity is a snapshot per transaction.
    """
    for _ in range(2000):
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'forkpoint'"
            " AND wait_event_type = 'Lock' AND NOT (pid = ANY($1::int[]))",
            list(not_pids),
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("no forkpoint session came to wait for the lock")


async def test_a_connection_killed_mid_fork_is_a_typed_error_and_nothing_partial(
    open_pg: Opener, pg_url: str, admin: asyncpg.Connection
) -> None:
    cp = await open_pg()
    for step in range(5):
        await cp.save(make_cp("t", step))
    blocker = await asyncpg.connect(pg_url, server_settings={"search_path": f'"{cp.schema}"'})
    lock = blocker.transaction()
    await lock.start()
    # An uncommitted thread row with the fork's id: the fork copies its rows, then waits here.
    await blocker.execute(
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count,"
        " metadata) VALUES ('f', 'x', 'x', 0, 1, '{}')"
    )
    fork = asyncio.create_task(cp.fork("t", 3, new_thread_id="f"))
    killed: set[int] = set()
    for _ in range(2):  # the first attempt, and the one retry on a fresh connection
        pid = await _backend_waiting(admin, killed)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        killed.add(pid)
    with pytest.raises(DatabaseUnavailable) as info:
        await fork
    assert isinstance(info.value.__cause__, asyncpg.PostgresError | OSError)
    assert info.value.thread_id == "t"
    await lock.rollback()
    assert await blocker.fetchval("SELECT count(*) FROM checkpoints WHERE thread_id = 'f'") == 0
    await blocker.close()
    assert await cp.fork("t", 3, new_thread_id="f") == "f"  # the next call works
    assert [m.step for m in await cp.list_checkpoints("f")] == [0, 1, 2, 3]


async def test_one_killed_connection_is_retried_on_a_fresh_one(
    open_pg: Opener, pg_url: str, admin: asyncpg.Connection
) -> None:
    cp = await open_pg()
    await cp.save(make_cp("t", 0))
    blocker = await asyncpg.connect(pg_url, server_settings={"search_path": f'"{cp.schema}"'})
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("SELECT 1 FROM threads WHERE thread_id = 't' FOR UPDATE")
    save = asyncio.create_task(cp.save(make_cp("t", 1)))
    pid = await _backend_waiting(admin, set())
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    await _backend_waiting(admin, {pid})  # the retry, on a new connection, waits in turn
    await lock.rollback()
    await blocker.close()
    await save
    assert [m.step for m in await cp.list_checkpoints("t")] == [0, 1]


async def test_a_statement_past_the_statement_timeout_is_database_locked(
    open_pg: Opener, pg_url: str
) -> None:
    cp = await open_pg(statement_timeout=0.2)
    await cp.save(make_cp("t", 0))
    blocker = await asyncpg.connect(pg_url, server_settings={"search_path": f'"{cp.schema}"'})
    async with blocker.transaction():
        await blocker.execute("SELECT 1 FROM threads WHERE thread_id = 't' FOR UPDATE")
        with pytest.raises(DatabaseLocked, match="timeout") as info:
            await cp.save(make_cp("t", 1))
        assert isinstance(info.value.__cause__, asyncpg.QueryCanceledError)
    await blocker.close()
    assert [m.step for m in await cp.list_checkpoints("t")] == [0]
    await cp.save(make_cp("t", 1))
    assert [m.step for m in await cp.list_checkpoints("t")] == [0, 1]


async def test_cancellation_at_random_points_leaves_no_transaction_open(
    open_pg: Opener, admin: asyncpg.Connection, scale: int
) -> None:
    cp = await open_pg(keep_last=1000)  # every save is a transaction (save + retention)
    rng = random.Random(7)
    attempted: dict[int, Any] = {}
    for step in range(40 * scale):
        attempted[step] = make_cp("t", step)
        task = asyncio.create_task(cp.save(attempted[step]))
        if step % 5 == 4:
            fork = asyncio.create_task(cp.fork("t", step // 2, new_thread_id=f"f{step}"))
            await asyncio.sleep(rng.uniform(0, 0.003))
            fork.cancel()
        await asyncio.sleep(rng.uniform(0, 0.002))
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            continue
    # Cancelled callers' work finishes in the background; close() waits for it.
    await asyncio.gather(*cp._db._running, return_exceptions=True)
    states = await admin.fetch(
        "SELECT state FROM pg_stat_activity WHERE application_name = 'forkpoint'"
        " AND datname = current_database()"
    )
    assert [r[0] for r in states if r[0] != "idle"] == []
    stored = {m.step for m in await cp.list_checkpoints("t")}
    for step, checkpoint in attempted.items():  # each is whole or absent: retrying is safe
        if step in stored:
            await cp.save(checkpoint)  # an identical retry: a no-op
            got = await cp.get("t", step)
            assert got == checkpoint
    for info in await cp.list_threads():  # a fork is whole: every step of t up to its point
        if info.thread_id != "t":
            assert info.parent_step is not None
            copied = [m.step for m in await cp.list_checkpoints(info.thread_id)]
            assert copied == sorted(s for s in stored if s <= info.parent_step)


def _pg_error(cls: type[asyncpg.PostgresError], message: str = "boom") -> asyncpg.PostgresError:
    return cls(message)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.DiskFullError, StorageFull),
        (asyncpg.ReadOnlySQLTransactionError, ReadOnlyDatabase),
        (asyncpg.UniqueViolationError, StepConflict),
        (asyncpg.AdminShutdownError, DatabaseUnavailable),
        (asyncpg.CannotConnectNowError, DatabaseUnavailable),
        (asyncpg.LockNotAvailableError, DatabaseLocked),
        (asyncpg.InternalServerError, StorageError),
    ],
)
async def test_server_errors_are_translated_at_the_boundary(
    open_pg: Opener, error: type[asyncpg.PostgresError], expected: type[CheckpointError]
) -> None:
    cp = await open_pg()
    calls = 0

    async def failing(conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        raise _pg_error(error)

    with pytest.raises(expected) as info:
        await cp._db.run(failing, thread_id="t")
    assert type(info.value.__cause__) is error
    assert info.value.thread_id == "t"
    assert calls == (2 if expected is DatabaseUnavailable else 1)  # lost: one fresh retry
    assert translate(_pg_error(asyncpg.UniqueViolationError), cp._db.settings, unique=ThreadExists)
    assert isinstance(
        translate(_pg_error(asyncpg.UniqueViolationError), cp._db.settings, unique=ThreadExists),
        ThreadExists,
    )


@pytest.mark.parametrize("error", [asyncpg.SerializationError, asyncpg.DeadlockDetectedError])
async def test_serialization_failures_and_deadlocks_are_retried_inside_bounded(
    open_pg: Opener, error: type[asyncpg.PostgresError]
) -> None:
    cp = await open_pg()
    calls = 0

    async def flaky(conn: asyncpg.Connection) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise _pg_error(error)
        return "ok"

    assert await cp._db.run(flaky) == "ok"
    calls = 0

    async def always(conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        raise _pg_error(error)

    with pytest.raises(DatabaseLocked, match="conflicting"):
        await cp._db.run(always)
    assert calls == MAX_CONFLICT_RETRIES + 1


async def test_reads_cancelled_at_random_points_leave_every_connection_usable(
    open_pg: Opener, admin: asyncpg.Connection
) -> None:
    """Reads run unshielded: a cancelled one is stopped, and its connection cleaned for reuse."""
    from tests.postgres.children import grown

    cp = await open_pg(pool_size=2)
    for step in range(40):
        await cp.save(grown("t", step))
    reads: list[Callable[[], Awaitable[object]]] = [
        lambda: cp.load("t"),
        lambda: cp.get("t", 17),
        lambda: cp.list_checkpoints("t"),
        lambda: cp.list_threads(),
        lambda: cp.get_raw("t", 3),
    ]
    rng = random.Random(5)
    for _ in range(80):
        task = asyncio.ensure_future(rng.choice(reads)())
        await asyncio.sleep(rng.uniform(0, 0.004))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    states = [c async for c in cp.iter_states("t")]
    assert [c.step for c in states] == list(range(39, -1, -1))
    loads = await asyncio.gather(*(cp.load("t") for _ in range(6)))  # both connections, again
    assert {c.step for c in loads if c is not None} == {39}
    sessions = await admin.fetch(
        "SELECT state FROM pg_stat_activity WHERE application_name = 'forkpoint'"
        " AND datname = current_database()"
    )
    assert [r[0] for r in sessions if r[0] != "idle"] == []
