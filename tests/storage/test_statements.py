"""What SQL the hot paths run: promises about cost that no result value would show."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_cp


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
    # One SELECT, framed by the read transaction every read runs in (one snapshot per read).
    assert [sql.split()[0].upper() for sql in seen] == ["BEGIN", "SELECT", "COMMIT"], seen
