"""How PostgreSQL stores large states: forward deltas written once, and the older layout."""

from __future__ import annotations

import asyncio
import itertools
import random
import tracemalloc

import asyncpg

from forkpoint import Checkpoint, GraphState, SqliteCheckpointer, StepConflict, copy_threads
from forkpoint._delta import apply_deltas, make_delta
from forkpoint.postgres._rows import FORWARD_RUN
from forkpoint.postgres._sql import SQL
from tests.conftest import Counter
from tests.postgres.conftest import Opener


def grown(thread_id: str, step: int, width: int = 400) -> Checkpoint[Counter]:
    """A state growing by one ~``width``-character note per step (over 2 KiB from step 0)."""
    state = Counter(log=[f"note {i} " + "x" * width for i in range(step + 6)])
    return Checkpoint[Counter](
        thread_id=thread_id, state=GraphState[Counter](data=state), step=step, node="n"
    )


async def encodings(admin: asyncpg.Connection, thread_id: str = "t") -> list[int]:
    query = "SELECT encoding FROM checkpoints WHERE thread_id = $1 ORDER BY step"
    return [r[0] for r in await admin.fetch(query, thread_id)]


async def every_step_reads_back(cp: object, thread_id: str, steps: list[int]) -> None:
    """``get`` of each step and ``iter_states`` over the thread give the saved states."""
    from forkpoint.postgres import PostgresCheckpointer

    assert isinstance(cp, PostgresCheckpointer)
    for step in steps:
        got = await cp.get(thread_id, step)
        assert got is not None, step
        assert got.state.data == grown(thread_id, step).state.data, step
    streamed = [c async for c in cp.iter_states(thread_id)]
    assert [c.step for c in streamed] == sorted(steps, reverse=True)
    for c in streamed:
        assert c.state.data == grown(thread_id, c.step).state.data, c.step


def test_long_chains_apply_as_one_edit_at_a_time() -> None:
    """Chains of hundreds of deltas, forward and reverse, rebuild exactly (bisected pieces)."""
    rnd = random.Random(11)
    for _ in range(20):
        texts = ["".join(rnd.choice("abc{}é😀") for _ in range(rnd.randint(0, 3000)))]
        for _ in range(300):
            t = texts[-1]
            i = rnd.randint(0, len(t))
            j = rnd.randint(i, min(len(t), i + rnd.choice((0, 5, 60))))
            texts.append(
                t[:i] + "".join(rnd.choice("xyz]") for _ in range(rnd.randint(0, 30))) + t[j:]
            )
        forward = [make_delta(new, old) for old, new in itertools.pairwise(texts)]
        reverse = [make_delta(old, new) for old, new in itertools.pairwise(texts)]
        if None in forward or None in reverse:
            continue
        for k in (1, 37, 300):
            assert apply_deltas(texts[0], [d for d in forward[:k] if d]) == texts[k]
            chain = [d for d in reversed(reverse[300 - k :]) if d]
            assert apply_deltas(texts[-1], chain) == texts[300 - k]


async def test_runs_stay_within_their_bounds(open_pg: Opener, admin: asyncpg.Connection) -> None:
    def small_steps(step: int) -> Checkpoint[Counter]:
        state = Counter(log=["x" * 20_000, *map(str, range(step))])
        data = GraphState[Counter](data=state)
        return Checkpoint[Counter](thread_id="t", state=data, step=step, node="n")

    cp = await open_pg()
    for step in range(2 * FORWARD_RUN + 10):
        await cp.save(small_steps(step))  # tiny deltas: only the run bound applies
    stored = await encodings(admin)
    runs = "".join(map(str, stored)).split("0")
    assert max(map(len, runs)) == FORWARD_RUN
    assert set(stored) == {0, 2}
    latest = await cp.load("t")
    assert latest is not None
    assert latest.state.data == small_steps(2 * FORWARD_RUN + 9).state.data


async def test_prune_into_a_run_stores_its_first_kept_row_in_full(
    open_pg: Opener, admin: asyncpg.Connection
) -> None:
    cp = await open_pg()
    for step in range(40):
        await cp.save(grown("t", step))
    before = await encodings(admin)
    keep = next(k for k in range(3, 40) if before[40 - k] == 2)  # the cut falls inside a run
    report = await cp.prune("t", keep_last=keep)
    assert report.checkpoints_removed == 40 - keep
    after = await encodings(admin)
    assert after[0] == 0
    assert after[1:] == before[40 - keep + 1 :]
    await every_step_reads_back(cp, "t", list(range(40 - keep, 40)))
    info = await cp.thread_info("t")
    assert info is not None
    assert info.checkpoint_count == keep


async def test_keep_last_with_large_states_keeps_every_kept_step_readable(
    open_pg: Opener, admin: asyncpg.Connection
) -> None:
    cp = await open_pg(keep_last=5)
    for step in range(30):
        await cp.save(grown("t", step))
        kept = list(range(max(0, step - 4), step + 1))
        assert [m.step for m in await cp.list_checkpoints("t")] == kept
    assert (await encodings(admin))[0] == 0
    await every_step_reads_back(cp, "t", list(range(25, 30)))


async def test_fork_inside_a_run_and_restore_store_deltas(
    open_pg: Opener, admin: asyncpg.Connection, tmp_path: object
) -> None:
    cp = await open_pg()
    for step in range(30):
        await cp.save(grown("t", step))
    at = next(s for s, e in enumerate(await encodings(admin)) if e == 2 and s > 10)
    await cp.fork("t", at, new_thread_id="f")
    forked = await encodings(admin, "f")
    assert forked[-1] == 0  # the fork point in full; the rows below copied as they are
    assert forked[:-1] == (await encodings(admin))[:at]
    for step in range(at + 1):
        got = await cp.get("f", step)
        assert got is not None
        assert got.state.data == grown("t", step).state.data
    async with SqliteCheckpointer.open(f"{tmp_path}/copy.db", Counter) as local:
        await copy_threads(cp, local, ["t"])
        await cp.delete_thread("t")
        await copy_threads(local, cp, ["t"])  # restore_thread: stored as saves store them
    assert 2 in await encodings(admin)
    await every_step_reads_back(cp, "t", list(range(30)))


async def test_the_earlier_layout_of_reverse_deltas_reads_and_grows(
    open_pg: Opener, admin: asyncpg.Connection
) -> None:
    """A thread as earlier versions stored it: each older step a reverse delta of the next."""
    cp = await open_pg()
    await cp.save(grown("t", 0))
    saved = [cp._codec.encode(grown("t", step)) for step in range(20)]
    await admin.execute("DELETE FROM checkpoints")
    rows = [
        (*row._replace(state=make_delta(row.state, newer.state) or ""), 1)
        for row, newer in itertools.pairwise(saved)
    ]
    await admin.executemany(SQL.INSERT_STORED, [*rows, (*saved[-1], 0)])
    await admin.execute(
        "UPDATE threads SET latest_step = 19, checkpoint_count = 20, delta_run = 19"
    )
    await every_step_reads_back(cp, "t", list(range(20)))
    for step in range(20, 40):
        await cp.save(grown("t", step))
    assert await encodings(admin) == [1] * 19 + [0] + (await encodings(admin))[20:]
    await every_step_reads_back(cp, "t", list(range(40)))
    await cp.fork("t", 7, new_thread_id="f")
    got = await cp.get("f", 3)
    assert got is not None
    assert got.state.data == grown("t", 3).state.data
    await cp.prune("t", keep_last=25)
    await every_step_reads_back(cp, "t", list(range(15, 40)))


async def test_a_save_that_read_states_since_rewritten_starts_over(
    open_pg: Opener, admin: asyncpg.Connection
) -> None:
    """The thread row's version guards a forward delta: a rewrite of the states moves it."""
    cp = await open_pg()
    saved = [grown("t", step) for step in range(6)]
    for c in saved:
        await cp.save(c)
    top = await admin.fetch(SQL.TOP, ["t"], FORWARD_RUN)
    latest, version = top[0][1], top[0][2]
    rows = [cp._codec.encode(c) for c in saved]
    assert await cp._replace_states("t", 5, 6, rows)
    nxt = cp._codec.encode(grown("t", 6))
    args = (*nxt._replace(state='[0,0,""]'), nxt.created_at, None, latest, version)
    assert await admin.fetchval(SQL.SAVE_FORWARD, *args) is None
    await cp.save(grown("t", 6))
    await every_step_reads_back(cp, "t", list(range(7)))


async def test_concurrent_large_saves_share_statements_and_store_deltas(
    open_pg: Opener, admin: asyncpg.Connection
) -> None:
    cp = await open_pg(pool_size=1)
    seen: list[str] = []
    async with cp._db.pool.acquire() as conn:
        conn.add_query_logger(lambda q: seen.append(q.query))
    for step in range(8):
        saves = [grown(f"t{i}", step) for i in range(30)]
        results = await asyncio.gather(
            *map(cp.save, saves),
            cp.save(saves[0]),  # the same save twice: an identical retry
            *([cp.save(grown("t1", step - 1))] if step else []),  # a step already taken
            return_exceptions=True,
        )
        assert results[:31] == [None] * 31, results
        assert all(isinstance(r, StepConflict) for r in results[31:]), results
    assert 1 <= sum("unnest" in q for q in seen) < 60, len(seen)  # 255 saves, a few statements
    stored = [await encodings(admin, f"t{i}") for i in range(30)]
    assert sum(e.count(2) for e in stored) > 150, stored  # most steps a delta
    for i in range(30):
        await every_step_reads_back(cp, f"t{i}", list(range(8)))


async def test_large_saves_racing_from_two_checkpointers_store_each_step_once(
    open_pg: Opener,
) -> None:
    a, b = await open_pg(), await open_pg()
    names = [f"t{i}" for i in range(12)]
    for step in range(10):
        first = [a.save(grown(n, step)) for n in names]
        second = [b.save(grown(n, step).model_copy(update={"node": "other"})) for n in names]
        results = await asyncio.gather(*first, *second, return_exceptions=True)
        for n, mine, theirs in zip(names, results[:12], results[12:], strict=True):
            outcomes = sorted(type(r).__name__ for r in (mine, theirs))
            assert outcomes == ["NoneType", "StepConflict"], (n, mine, theirs)
    for n in names:
        history = await a.list_checkpoints(n)
        assert [m.step for m in history] == list(range(10))
        await every_step_reads_back(a, n, list(range(10)))


async def test_iterating_a_long_run_holds_a_few_states_not_the_run(open_pg: Opener) -> None:
    def step_of(step: int) -> Checkpoint[Counter]:
        state = Counter(log=["x" * 100_000, *map(str, range(step))])
        return Checkpoint[Counter](
            thread_id="t", state=GraphState[Counter](data=state), step=step, node="n"
        )

    cp = await open_pg()
    for step in range(150):  # one full row, then 149 small deltas: one run
        await cp.save(step_of(step))
    tracemalloc.start()
    try:
        seen = 0
        async for c in cp.iter_states("t"):
            assert c.state.data == step_of(c.step).state.data
            seen += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == 150
    assert peak < 30 * 100_000, peak  # the run's 150 states would be 15 MB at once
