"""What the PostgreSQL tables hold and which statements the hot paths run."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import asyncpg
import pytest

from forkpoint import (
    Checkpoint,
    GraphState,
    InvalidInput,
    SerializationError,
    SqliteCheckpointer,
    StepConflict,
)
from forkpoint.postgres import PostgresCheckpointer
from tests.conftest import Counter, make_cp
from tests.postgres.conftest import Opener


@pytest.fixture
async def recorded(open_pg: Opener) -> tuple[PostgresCheckpointer[Counter], list[str]]:
    """A checkpointer on one connection whose every statement text is recorded."""
    cp = await open_pg(pool_size=1)
    seen: list[str] = []
    async with cp._db.pool.acquire() as conn:
        conn.add_query_logger(lambda q: seen.append(q.query))
    return cp, seen


async def test_fork_is_one_transaction_with_one_insert_select(
    recorded: tuple[PostgresCheckpointer[Counter], list[str]],
) -> None:
    cp, seen = recorded
    counts = []
    for length in (5, 300):
        for step in range(length):
            await cp.save(make_cp(f"t{length}", step))
        seen.clear()
        await cp.fork(f"t{length}", length - 1, new_thread_id=f"f{length}")
        inserts = [q for q in seen if q.lstrip().upper().startswith("INSERT INTO CHECKPOINTS")]
        assert sum(" SELECT " in q for q in inserts) == 1, inserts
        assert seen[0].upper().startswith("BEGIN"), seen
        assert seen[-1].upper().startswith("COMMIT"), seen
        assert not any(q.upper().startswith(("BEGIN", "COMMIT")) for q in seen[1:-1]), seen
        counts.append(len(seen))
        assert len(await cp.list_checkpoints(f"f{length}")) == length
    assert counts[0] == counts[1], counts  # no row-by-row copy, whatever the length


async def test_a_small_save_is_one_statement_and_load_is_one(
    recorded: tuple[PostgresCheckpointer[Counter], list[str]],
) -> None:
    cp, seen = recorded
    await cp.save(make_cp("t", 0))
    seen.clear()
    await cp.save(make_cp("t", 1))
    assert len(seen) == 1, seen
    seen.clear()
    await cp.load("t")
    assert len(seen) == 1, seen


async def test_listing_never_reads_a_state(
    recorded: tuple[PostgresCheckpointer[Counter], list[str]],
) -> None:
    cp, seen = recorded
    for step in range(20):
        await cp.save(make_cp("t", step, metadata={"k": step % 2}))
    seen.clear()
    await cp.list_checkpoints("t")
    await cp.list_checkpoints("t", after=3, before=15, limit=4, newest_first=True, filter={"k": 1})
    await cp.list_threads(filter={"k": 1})
    await cp.list_forks("t")
    assert len(seen) == 4
    for sql in seen:
        assert "state" not in sql, sql


def _grown(thread_id: str, step: int) -> Checkpoint[Counter]:
    state = Counter(log=[f"note {i} " + "x" * 400 for i in range(step + 6)])
    return Checkpoint[Counter](
        thread_id=thread_id, state=GraphState[Counter](data=state), step=step, node="n"
    )


async def test_growing_states_are_stored_as_forward_deltas_inserted_once(
    open_pg: Opener, admin: asyncpg.Connection, schema: str
) -> None:
    cp = await open_pg()
    saved = [_grown("t", step) for step in range(40)]
    for c in saved:
        await cp.save(c)
    rows = await admin.fetch(
        "SELECT step, encoding, length(state), xmin::text FROM checkpoints ORDER BY step"
    )
    encodings = [r[1] for r in rows]
    assert encodings[0] == 0, encodings
    assert set(encodings) == {0, 2}, encodings
    assert encodings.count(0) <= 6, encodings  # a full row when the deltas pass half a state
    assert max(r[2] for r, e in zip(rows, encodings, strict=True) if e == 2) < 600
    assert len({r[3] for r in rows}) == 40  # each row written by its own save, never rewritten
    for c in saved:
        got = await cp.get("t", c.step)
        assert got is not None
        assert got.state.data == c.state.data
    fork = await cp.fork("t", 20)
    got = await cp.get(fork, 3)
    assert got is not None
    assert got.state.data == saved[3].state.data


async def test_racing_large_saves_of_one_step_one_wins(open_pg: Opener) -> None:
    """Two checkpointers race for each next step of a large-state thread: one wins each step."""
    a, b = await open_pg(), await open_pg()
    await a.save(_grown("t", 0))
    for step in range(1, 15):
        first = _grown("t", step)
        second = _grown("t", step).model_copy(update={"node": "other"})
        results = await asyncio.gather(a.save(first), b.save(second), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "StepConflict"], results
    history = await a.list_checkpoints("t")
    assert [m.step for m in history] == list(range(15))
    for m in history:
        got = await a.get("t", m.step)
        assert got is not None
        assert got.state.data == _grown("t", m.step).state.data


async def test_nul_in_text_state_round_trips_and_in_a_node_name_writes_nothing(
    open_pg: Opener, admin: asyncpg.Connection, schema: str
) -> None:
    cp = await open_pg()
    with_nul = make_cp("t", 0).model_copy(
        update={"state": GraphState[Counter](data=Counter(log=["a\x00b", "\x00"]))}
    )
    await cp.save(with_nul)
    loaded = await cp.load("t")
    assert loaded is not None
    assert loaded.state.data.log == ["a\x00b", "\x00"]
    # Refused before any SQL by the contract's checks, or by the server as text it cannot
    # store: either way a typed error, and nothing written.
    results = await asyncio.gather(
        cp.save(make_cp("t", 1, node="a\x00b")), cp.save(make_cp("u", 0)), return_exceptions=True
    )
    assert isinstance(results[0], InvalidInput | SerializationError), results
    assert results[1] is None
    assert await admin.fetchval("SELECT count(*) FROM checkpoints") == 2
    assert [m.step for m in await cp.list_checkpoints("t")] == [0]


async def test_thread_ids_sort_by_code_point_whatever_the_locale(open_pg: Opener) -> None:
    cp = await open_pg()
    ids = ["b", "B", "a", "_x", "Z", "é", "e", "😀", "a b", "ab"]
    for tid in ids:
        await cp.save(make_cp(tid, 0))
    assert [t.thread_id for t in await cp.list_threads()] == sorted(ids)
    page = await cp.list_threads(after="a", limit=3)
    assert [t.thread_id for t in page] == sorted(i for i in ids if i > "a")[:3]


async def test_get_raw_shows_the_stored_delta(open_pg: Opener) -> None:
    cp = await open_pg()
    for step in range(3):
        await cp.save(_grown("t", step))
    raw = await cp.get_raw("t", 2)
    assert isinstance(raw, str)
    assert raw.startswith("[")
    assert await cp.get_raw("t", 9) is None


async def test_a_damaged_delta_row_names_its_step(
    open_pg: Opener, admin: asyncpg.Connection, schema: str
) -> None:
    cp = await open_pg()
    for step in range(4):
        await cp.save(_grown("t", step))
    await admin.execute("UPDATE checkpoints SET state = 'not json' WHERE step = 2")
    got = await cp.get("t", 1)  # older steps do not depend on it
    assert got is not None
    assert got.state.data == _grown("t", 1).state.data
    for call in (cp.get("t", 3), cp.load("t")):
        with pytest.raises(SerializationError) as info:
            await call
        assert (info.value.thread_id, info.value.step) == ("t", 3)
    with pytest.raises(StepConflict):
        await cp.save(make_cp("t", 3))
    await cp.save(_grown("t", 4))  # stored in full: the thread reads again from here
    latest = await cp.load("t")
    assert latest is not None
    assert latest.state.data == _grown("t", 4).state.data


async def test_concurrent_small_saves_share_statements_and_keep_their_own_outcomes(
    recorded: tuple[PostgresCheckpointer[Counter], list[str]],
) -> None:
    cp, seen = recorded
    await cp.save(make_cp("taken", 0), thread_metadata={"owner": "ann"})
    await cp.save(make_cp("taken", 1))
    seen.clear()
    saves = [cp.save(make_cp(f"t{i}", 0), thread_metadata={"i": i}) for i in range(60)]
    saves += [cp.save(make_cp(f"t{i}", 0)) for i in range(60, 100)]
    saves.append(cp.save(make_cp("taken", 1, n=5)))  # a conflict inside a batch
    saves.append(cp.save(make_cp("taken", 2)))  # no thread_metadata: the owner stays
    results = await asyncio.gather(*saves, return_exceptions=True)
    assert [type(r).__name__ for r in results[:100]] == ["NoneType"] * 100
    assert isinstance(results[100], StepConflict)
    assert results[101] is None
    many = [q for q in seen if "unnest" in q]
    assert 1 <= len(many) < 10, len(seen)  # a hundred saves, a few statements
    threads = {t.thread_id: t for t in await cp.list_threads()}
    assert threads["t7"].metadata == {"i": 7}
    assert threads["t77"].metadata == {}
    assert threads["taken"].metadata == {"owner": "ann"}
    assert threads["taken"].latest_step == 2
    assert [m.step for m in await cp.list_checkpoints("t99")] == [0]


async def test_backup_writes_an_sqlite_copy_and_vacuum_runs(
    open_pg: Opener, tmp_path: Path
) -> None:
    cp = await open_pg()
    for step in range(5):
        await cp.save(_grown("t", step))
    await cp.fork("t", 2, new_thread_id="f")
    await cp.backup(tmp_path / "copy.db")
    async with SqliteCheckpointer.open(tmp_path / "copy.db", Counter) as copy:
        assert [t.thread_id for t in await copy.list_threads()] == ["f", "t"]
        got = await copy.get("t", 1)
        assert got is not None
        assert got.state.data == _grown("t", 1).state.data
    with pytest.raises(InvalidInput, match="not empty"):
        await cp.backup(tmp_path / "copy.db")
    await cp.prune(keep_last=1)
    assert await cp.vacuum() >= 0
    for step in range(5, 40):
        await cp.save(_grown("t", step))
    await cp.prune(keep_last=10)
    assert await cp.vacuum(full=True) > 0  # the removed rows' space comes back
    assert [m.step for m in await cp.list_checkpoints("t")] == list(range(30, 40))
    with pytest.raises(InvalidInput):
        await cp.vacuum(full=1)  # type: ignore[arg-type]


async def test_rewritten_histories_are_stored_as_saves_store_them(
    open_pg: Opener, admin: asyncpg.Connection
) -> None:
    cp = await open_pg()
    saved = [_grown("t", step) for step in range(40)]
    for c in saved:
        await cp.save(c)
    query = "SELECT encoding FROM checkpoints ORDER BY step"
    as_saved = [r[0] for r in await admin.fetch(query)]
    assert 2 in as_saved
    rows = [cp._codec.encode(c) for c in saved]
    assert not await cp._replace_states("t", 39, 99, rows)  # the thread is not what was read
    assert await cp._replace_states("t", 39, 40, rows)
    assert [r[0] for r in await admin.fetch(query)] == as_saved
    for c in saved:
        got = await cp.get("t", c.step)
        assert got is not None
        assert got.state.data == c.state.data


@pytest.mark.parametrize("keep", [1, 3])
async def test_small_saves_under_a_retention_policy_share_statements_too(
    open_pg: Opener, admin: asyncpg.Connection, keep: int
) -> None:
    cp = await open_pg(keep_last=keep, pool_size=1)
    seen: list[str] = []
    async with cp._db.pool.acquire() as conn:
        conn.add_query_logger(lambda q: seen.append(q.query))
    for step in range(12):  # a thread whose history is forward deltas: its full row goes
        await cp.save(_grown("big", step))
    for step in range(6):
        saves = [cp.save(make_cp(f"t{i}", step, n=step)) for i in range(50)]
        saves.append(cp.save(make_cp("big", 12 + step, n=step)))
        assert await asyncio.gather(*saves) == [None] * 51
        for m in await cp.list_checkpoints("big"):  # its first kept row was stored in full
            assert await cp.get("big", m.step) is not None
    assert 1 <= sum("unnest" in q for q in seen) < 40, len(seen)  # 306 saves, a few statements
    for tid in [f"t{i}" for i in range(50)] + ["big"]:
        history = await cp.list_checkpoints(tid)
        latest = history[-1].step
        assert [m.step for m in history] == list(range(latest - keep + 1, latest + 1)), tid
        info = await cp.thread_info(tid)
        assert info is not None
        assert info.checkpoint_count == keep
        for m in history:
            got = await cp.get(tid, m.step)
            assert got is not None
            assert got.state.data.n == m.step - (12 if tid == "big" else 0)
    counted = await admin.fetchval("SELECT count(*) FROM checkpoints")
    assert counted == 51 * keep


async def test_a_leader_cancelled_mid_batch_leaves_no_unread_error(
    open_pg: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    cp = await open_pg(pool_size=1)
    await cp.save(make_cp("t", 5))
    for _ in range(3):
        task = asyncio.create_task(cp.save(make_cp("t", 1)))  # a StepConflict, answered late
        await asyncio.sleep(0)  # it leads: its save is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.gather(*cp._db._running, return_exceptions=True)
        del task
        gc.collect()
    # An error nobody reads is logged when collected, and formatting that log inside another
    # parse has broken the interpreter's own AST checks.
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert [m.step for m in await cp.list_checkpoints("t")] == [5]
