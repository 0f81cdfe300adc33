"""What SQL the hot paths run: promises about cost that no result value would show."""

from __future__ import annotations

from typing import Any

from forkpoint import GraphState
from forkpoint._delta import DELTA_MIN_CHARS
from tests.conftest import Counter, make_cp


async def test_fork_is_one_insert_select_whatever_the_thread_length(recorded: Any) -> None:
    cp, seen, _ = recorded
    counts = []
    for length in (5, 200):
        for step in range(length):
            await cp.save(make_cp(f"t{length}", step))
        seen.clear()
        await cp.fork(f"t{length}", length - 1)
        inserts = [
            sql for sql in seen if sql.lstrip().upper().startswith("INSERT INTO CHECKPOINTS")
        ]
        assert any(" SELECT " in sql for sql in inserts), inserts
        counts.append(len(seen))
    # No row-by-row copy through Python: a 200-step fork runs the statements a 5-step one does.
    assert counts[0] == counts[1], counts


async def test_listing_never_reads_a_state(recorded: Any) -> None:
    cp, seen, _ = recorded
    for step in range(20):
        await cp.save(make_cp("t", step, metadata={"k": step % 2}))
    seen.clear()
    await cp.list_checkpoints("t")
    await cp.list_checkpoints("t", after=3, before=15, limit=4, newest_first=True, filter={"k": 1})
    await cp.list_threads()
    await cp.list_forks("t")
    assert seen
    for sql in seen:
        assert "state" not in sql.replace("delta_run", ""), sql


async def test_load_and_save_are_one_statement_batch_each(recorded: Any) -> None:
    cp, seen, _ = recorded
    await cp.save(make_cp("t", 0))
    seen.clear()
    await cp.save(make_cp("t", 1))
    # A small state's save to an existing thread: BEGIN, the thread update that also checks
    # the step, INSERT, COMMIT; nothing is read first. (A first save, a conflict or a retry
    # finds the update changed nothing and takes the checked path.)
    assert len(seen) == 4, seen
    assert not any(sql.lstrip().upper().startswith("SELECT") for sql in seen), seen
    seen.clear()
    await cp.load("t")
    # One SELECT: a single statement reads one snapshot, so it needs no read transaction.
    assert [sql.split()[0].upper() for sql in seen] == ["SELECT"], seen
    seen.clear()
    await cp.get("t", 0)
    assert [sql.split()[0].upper() for sql in seen] == ["SELECT"], seen


async def test_a_delta_step_is_rebuilt_inside_one_read_transaction(recorded: Any) -> None:
    cp, seen, _ = recorded
    for step in range(3):  # states over DELTA_MIN_CHARS: older steps are stored as deltas
        state = Counter(n=0, log=["x" * DELTA_MIN_CHARS, str(step)])
        await cp.save(make_cp("t", step).model_copy(update={"state": GraphState(data=state)}))
    raw = await cp.get_raw("t", 0)
    assert isinstance(raw, str)
    assert len(raw) < DELTA_MIN_CHARS  # stored as a delta
    seen.clear()
    got = await cp.get("t", 0)
    assert got is not None
    assert got.state.data.log == ["x" * DELTA_MIN_CHARS, "0"]
    # The first SELECT finds a delta; the row and the newer rows it is rebuilt from are then
    # read again, together, in one snapshot.
    words = [sql.split()[0].upper() for sql in seen]
    assert words[:2] == ["SELECT", "BEGIN"], seen
    assert words[-1] == "COMMIT", seen
    assert set(words[2:-1]) == {"SELECT"}, seen
