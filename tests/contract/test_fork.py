"""fork(): copies, lineage, errors, idempotent retries, independence (base.py: fork, list_forks)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from forkpoint import (
    CheckpointNotFound,
    HistoryCheckpointer,
    InvalidInput,
    StepConflict,
    ThreadExists,
)
from tests.conftest import Counter, make_cp
from tests.contract._util import snapshot

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


async def _history(cp: HistoryCheckpointer[Counter], thread_id: str = "main", n: int = 5) -> None:
    for step in range(n):
        await cp.save(
            make_cp(
                thread_id,
                step,
                node=f"node{step}",
                queue=[(f"next{step}", step)],
                created_at=T0 + timedelta(minutes=step),
                metadata={"step": step, "tag": "even" if step % 2 == 0 else "odd"},
            ),
            thread_metadata={"owner": "ann"} if step == 0 else None,
        )


async def test_fork_copies_steps_up_to_at_seq_unchanged(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    fork_id = await checkpointer.fork("main", 2)
    assert str(uuid.UUID(fork_id, version=4)) == fork_id
    assert [m.step for m in await checkpointer.list_checkpoints(fork_id)] == [0, 1, 2]
    for step in range(3):
        original = await checkpointer.get("main", step)
        copy = await checkpointer.get(fork_id, step)
        assert original is not None
        assert copy is not None
        assert copy.thread_id == fork_id
        assert copy.model_dump(exclude={"thread_id"}) == original.model_dump(exclude={"thread_id"})
    assert await checkpointer.get(fork_id, 3) is None
    assert [m.model_dump() for m in await checkpointer.list_checkpoints(fork_id)] == [
        m.model_dump() for m in await checkpointer.list_checkpoints("main", before=3)
    ]


async def test_fork_records_lineage(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await _history(checkpointer)
    fork_id = await checkpointer.fork("main", 3)
    info = await checkpointer.thread_info(fork_id)
    assert info is not None
    assert (info.parent_thread_id, info.parent_step) == ("main", 3)
    assert (info.latest_step, info.checkpoint_count) == (3, 4)
    assert info.metadata == {"owner": "ann"}
    parent = await checkpointer.thread_info("main")
    assert parent is not None
    assert (parent.parent_thread_id, parent.parent_step) == (None, None)
    assert (parent.latest_step, parent.checkpoint_count) == (4, 5)


async def test_fork_at_first_and_latest_step(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await _history(checkpointer)
    first = await checkpointer.fork("main", 0)
    last = await checkpointer.fork("main", 4)
    assert [m.step for m in await checkpointer.list_checkpoints(first)] == [0]
    assert [m.step for m in await checkpointer.list_checkpoints(last)] == [0, 1, 2, 3, 4]
    assert first != last


@pytest.mark.parametrize(("thread_id", "at_seq"), [("main", 99), ("main", 5), ("ghost", 0)])
async def test_fork_of_unknown_thread_or_step_is_not_found_and_creates_nothing(
    checkpointer: HistoryCheckpointer[Counter], thread_id: str, at_seq: int
) -> None:
    await _history(checkpointer)
    before = await snapshot(checkpointer)
    with pytest.raises(CheckpointNotFound) as info:
        await checkpointer.fork(thread_id, at_seq)
    assert thread_id in str(info.value)
    assert str(at_seq) in str(info.value)
    assert (info.value.thread_id, info.value.step) == (thread_id, at_seq)
    with pytest.raises(CheckpointNotFound):
        await checkpointer.fork(thread_id, at_seq, new_thread_id="chosen")
    assert await checkpointer.thread_info("chosen") is None
    assert await snapshot(checkpointer) == before


async def test_fork_at_step_removed_by_prune_is_not_found(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    await checkpointer.prune("main", keep_last=2)
    with pytest.raises(CheckpointNotFound):
        await checkpointer.fork("main", 1)
    assert [
        m.step for m in await checkpointer.list_checkpoints(await checkpointer.fork("main", 3))
    ] == [3]


async def test_fork_threads_are_independent(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await _history(checkpointer, n=3)
    fork_id = await checkpointer.fork("main", 1)
    await checkpointer.save(make_cp("main", 3))
    await checkpointer.save(make_cp(fork_id, 2, n=-2))  # the fork's own step 2
    await checkpointer.save(make_cp(fork_id, 3, n=-3))
    main2, fork2 = await checkpointer.get("main", 2), await checkpointer.get(fork_id, 2)
    assert main2 is not None
    assert fork2 is not None
    assert (main2.state.data.n, fork2.state.data.n) == (2, -2)
    await checkpointer.set_thread_metadata(fork_id, {"owner": "bob"})
    main_info = await checkpointer.thread_info("main")
    assert main_info is not None
    assert main_info.metadata == {"owner": "ann"}
    with pytest.raises(StepConflict):
        await checkpointer.save(make_cp(fork_id, 1, n=100))  # step rule holds in the fork


async def test_fork_of_fork(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await _history(checkpointer)
    child = await checkpointer.fork("main", 3)
    await checkpointer.save(make_cp(child, 4, n=40))
    grandchild = await checkpointer.fork(child, 4)
    info = await checkpointer.thread_info(grandchild)
    assert info is not None
    assert (info.parent_thread_id, info.parent_step) == (child, 4)
    latest = await checkpointer.load(grandchild)
    assert latest is not None
    assert (latest.step, latest.state.data.n) == (4, 40)
    assert [t.thread_id for t in await checkpointer.list_forks("main")] == [child]
    assert [t.thread_id for t in await checkpointer.list_forks(child)] == [grandchild]
    assert await checkpointer.list_forks(grandchild) == []


async def test_deleting_parent_leaves_fork_intact(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    fork_id = await checkpointer.fork("main", 2)
    before = [c.model_dump() for c in [await checkpointer.get(fork_id, s) for s in range(3)] if c]
    assert await checkpointer.delete_thread("main") is True
    after = [c.model_dump() for c in [await checkpointer.get(fork_id, s) for s in range(3)] if c]
    assert after == before
    assert len(after) == 3
    info = await checkpointer.thread_info(fork_id)
    assert info is not None
    assert (info.parent_thread_id, info.parent_step) == ("main", 2)
    await checkpointer.save(make_cp(fork_id, 3))
    assert await checkpointer.load("main") is None


async def test_deleting_fork_leaves_parent_intact(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    before = await snapshot(checkpointer)
    fork_id = await checkpointer.fork("main", 2)
    assert await checkpointer.delete_thread(fork_id) is True
    assert await snapshot(checkpointer) == before


async def test_pruning_parent_leaves_fork_whole(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await _history(checkpointer)
    fork_id = await checkpointer.fork("main", 4)
    await checkpointer.prune("main", keep_last=1)
    assert [m.step for m in await checkpointer.list_checkpoints(fork_id)] == [0, 1, 2, 3, 4]
    for step in range(5):
        got = await checkpointer.get(fork_id, step)
        assert got is not None
        assert got.state.data.n == step


async def test_fork_with_chosen_id_is_idempotent(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    assert await checkpointer.fork("main", 2, new_thread_id="mine") == "mine"
    before = await snapshot(checkpointer)
    # The retry after a lost reply returns the same fork and changes nothing.
    assert await checkpointer.fork("main", 2, new_thread_id="mine") == "mine"
    assert await snapshot(checkpointer) == before
    info = await checkpointer.thread_info("mine")
    assert info is not None
    assert (info.parent_thread_id, info.parent_step, info.checkpoint_count) == ("main", 2, 3)


@pytest.mark.parametrize("taken", ["main", "other", "mine-at-other-step"])
async def test_fork_into_taken_id_is_thread_exists(
    checkpointer: HistoryCheckpointer[Counter], taken: str
) -> None:
    await _history(checkpointer)
    await checkpointer.save(make_cp("other", 0))
    await checkpointer.fork("main", 1, new_thread_id="mine-at-other-step")
    before = await snapshot(checkpointer)
    with pytest.raises(ThreadExists) as info:
        await checkpointer.fork("main", 2, new_thread_id=taken)
    assert info.value.thread_id == taken
    assert await snapshot(checkpointer) == before


async def test_fork_into_own_id_is_thread_exists(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    with pytest.raises(ThreadExists):
        await checkpointer.fork("main", 4, new_thread_id="main")


async def test_fork_bad_new_thread_id_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    before = await snapshot(checkpointer)
    with pytest.raises(InvalidInput):
        await checkpointer.fork("main", 1, new_thread_id="")
    assert await snapshot(checkpointer) == before


async def test_list_forks_is_ordered_by_id_and_direct_only(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    for name in ("f-c", "f-a", "f-b"):
        await checkpointer.fork("main", 1, new_thread_id=name)
    await checkpointer.fork("f-a", 0, new_thread_id="g")
    forks = await checkpointer.list_forks("main")
    assert [f.thread_id for f in forks] == ["f-a", "f-b", "f-c"]
    assert all((f.parent_thread_id, f.parent_step) == ("main", 1) for f in forks)
    assert await checkpointer.list_forks("nobody") == []
    await checkpointer.delete_thread("main")
    assert [f.thread_id for f in await checkpointer.list_forks("main")] == ["f-a", "f-b", "f-c"]


async def test_fork_retry_still_idempotent_after_parent_deleted(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _history(checkpointer)
    await checkpointer.fork("main", 2, new_thread_id="mine")
    await checkpointer.delete_thread("main")
    before = await snapshot(checkpointer)
    assert await checkpointer.fork("main", 2, new_thread_id="mine") == "mine"
    assert await snapshot(checkpointer) == before
