"""save / load / get and the step rule, on every backend (base.py: Checkpointer.save, load, get)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from forkpoint import (
    Checkpoint,
    CheckpointerClosed,
    ForkNotSupported,
    GraphState,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    StepConflict,
)
from tests.conftest import Counter, Factory, make_cp
from tests.contract._util import snapshot


async def test_load_and_get_of_unknown_thread_are_none(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    assert await checkpointer.load("nobody") is None
    assert await checkpointer.get("nobody", 0) is None
    assert await checkpointer.thread_info("nobody") is None
    assert await checkpointer.list_checkpoints("nobody") == []


async def test_save_then_load_round_trips_every_field(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    cp = Checkpoint[Counter](
        thread_id="t",
        state=GraphState[Counter](data=Counter(n=7, log=["a", "ü", "😀"])),
        step=3,
        node="planner",
        queue=[("tool", 1), ("critic", 2)],
        created_at=when,
        metadata={"run": "r1", "nested": {"x": [1, 2.5, None, True]}},
    )
    await checkpointer.save(cp)
    loaded = await checkpointer.load("t")
    assert loaded is not None
    assert loaded.model_dump() == cp.model_dump()
    assert loaded.created_at == when
    assert loaded.created_at.tzinfo is not None
    assert loaded.queue == [("tool", 1), ("critic", 2)]
    got = await checkpointer.get("t", 3)
    assert got is not None
    assert got.model_dump() == cp.model_dump()


async def test_created_at_in_other_offset_is_stored_as_same_instant(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    plus2 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    await checkpointer.save(make_cp("t", 0, created_at=plus2))
    loaded = await checkpointer.load("t")
    assert loaded is not None
    assert loaded.created_at == plus2
    assert loaded.created_at.utcoffset() == timedelta(0)


async def test_load_returns_highest_step_and_get_returns_exact_step(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    for step in (0, 1, 5, 9, 10):
        await checkpointer.save(make_cp("t", step, n=step * 10))
    latest = await checkpointer.load("t")
    assert latest is not None
    assert (latest.step, latest.state.data.n) == (10, 100)
    five = await checkpointer.get("t", 5)
    assert five is not None
    assert (five.step, five.state.data.n) == (5, 50)
    assert await checkpointer.get("t", 4) is None
    assert await checkpointer.get("t", 11) is None


async def test_first_save_creates_thread_later_saves_update_it(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("t", 4))
    info = await checkpointer.thread_info("t")
    assert info is not None
    assert (info.latest_step, info.checkpoint_count) == (4, 1)
    assert (info.parent_thread_id, info.parent_step) == (None, None)
    assert info.created_at == info.updated_at
    await checkpointer.save(make_cp("t", 6))
    later = await checkpointer.thread_info("t")
    assert later is not None
    assert (later.latest_step, later.checkpoint_count) == (6, 2)
    assert later.created_at == info.created_at
    assert later.updated_at >= info.updated_at


async def test_steps_need_not_start_at_zero_or_be_contiguous(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("t", 2**63 - 2))
    await checkpointer.save(make_cp("t", 2**63 - 1))
    assert [m.step for m in await checkpointer.list_checkpoints("t")] == [2**63 - 2, 2**63 - 1]


@pytest.mark.parametrize("step", [0, 2, 3])
async def test_saving_at_or_below_latest_is_a_conflict(
    checkpointer: HistoryCheckpointer[Counter], step: int
) -> None:
    await checkpointer.save(make_cp("t", 0))
    await checkpointer.save(make_cp("t", 2))
    await checkpointer.save(make_cp("t", 3))
    before = await snapshot(checkpointer)
    with pytest.raises(StepConflict) as info:
        await checkpointer.save(make_cp("t", step, n=999))
    assert info.value.thread_id == "t"
    assert info.value.step == step
    assert await snapshot(checkpointer) == before


async def test_step_below_latest_never_stored_is_a_conflict(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("t", 0))
    await checkpointer.save(make_cp("t", 5))
    before = await snapshot(checkpointer)
    with pytest.raises(StepConflict):
        await checkpointer.save(make_cp("t", 3))
    assert await checkpointer.get("t", 3) is None
    assert await snapshot(checkpointer) == before


async def test_identical_resave_is_a_noop(checkpointer: HistoryCheckpointer[Counter]) -> None:
    first = make_cp("t", 0, metadata={"k": "v"}, queue=[("a", 1)])
    second = make_cp("t", 1)
    await checkpointer.save(first)
    await checkpointer.save(second)
    before = await snapshot(checkpointer)
    await checkpointer.save(first)  # a retry of an older step, identical: fine
    await checkpointer.save(second)  # a retry of the latest step
    await checkpointer.save(first.model_copy(deep=True))  # an equal copy is identical too
    assert await snapshot(checkpointer) == before


@pytest.mark.parametrize(
    "change",
    [
        {"n": 1},
        {"node": "other"},
        {"queue": [("x", 0)]},
        {"metadata": {"k": "other"}},
        {"created_at": datetime(2001, 1, 1, tzinfo=UTC)},
    ],
    ids=["state", "node", "queue", "metadata", "created_at"],
)
async def test_different_checkpoint_at_existing_step_is_a_conflict(
    checkpointer: HistoryCheckpointer[Counter], change: dict[str, Any]
) -> None:
    when = datetime(2020, 1, 1, tzinfo=UTC)
    base: dict[str, Any] = {
        "n": 0,
        "node": "node",
        "queue": [],
        "metadata": {"k": "v"},
        "created_at": when,
    }
    await checkpointer.save(make_cp("t", 0, **base))
    before = await snapshot(checkpointer)
    with pytest.raises(StepConflict):
        await checkpointer.save(make_cp("t", 0, **{**base, **change}))
    assert await snapshot(checkpointer) == before


async def test_racing_saves_on_one_step_exactly_one_wins(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("t", 0))
    for step in range(1, 6):
        a, b = make_cp("t", step, n=1000 + step), make_cp("t", step, n=2000 + step)
        results = await asyncio.gather(
            checkpointer.save(a), checkpointer.save(b), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "StepConflict"]
        winner = a if results[0] is None else b
        stored = await checkpointer.get("t", step)
        assert stored is not None
        assert stored.state.data.n == winner.state.data.n
    info = await checkpointer.thread_info("t")
    assert info is not None
    assert info.checkpoint_count == 6


async def test_racing_first_saves_of_a_new_thread(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    results = await asyncio.gather(
        *(checkpointer.save(make_cp("new", 0, n=i)) for i in range(4)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(r is None or isinstance(r, StepConflict) for r in results)
    info = await checkpointer.thread_info("new")
    assert info is not None
    assert info.checkpoint_count == 1


async def test_racing_identical_saves_both_succeed(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    cp = make_cp("t", 0)
    results = await asyncio.gather(checkpointer.save(cp), checkpointer.save(cp))
    assert list(results) == [None, None]
    assert [m.step for m in await checkpointer.list_checkpoints("t")] == [0]


async def test_threads_are_independent(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await checkpointer.save(make_cp("a", 5))
    await checkpointer.save(make_cp("b", 0))  # lower step in another thread: fine
    await checkpointer.save(make_cp("b", 1))
    a, b = await checkpointer.load("a"), await checkpointer.load("b")
    assert a is not None
    assert b is not None
    assert (a.step, b.step) == (5, 1)


async def test_thread_ids_are_matched_exactly(checkpointer: HistoryCheckpointer[Counter]) -> None:
    ids = ["a%", "a_", "A", "a", "x' OR '1'='1", "caf\u00e9", "cafe\u0301", " lead", "😀"]
    for i, tid in enumerate(ids):
        await checkpointer.save(make_cp(tid, 0, n=i))
    for i, tid in enumerate(ids):
        got = await checkpointer.load(tid)
        assert got is not None
        assert (got.thread_id, got.state.data.n) == (tid, i)
    assert [t.thread_id for t in await checkpointer.list_threads()] == sorted(ids)
    assert await checkpointer.load("a%%") is None


async def test_returned_objects_are_copies(checkpointer: HistoryCheckpointer[Counter]) -> None:
    cp = make_cp("t", 0, queue=[("a", 1)], metadata={"tags": ["x"], "d": {"k": 1}})
    cp.state.data.log.append("first")
    await checkpointer.save(cp)
    # Mutating what was saved does not reach the store.
    cp.state.data.log.append("after-save")
    cp.metadata["tags"].append("after-save")  # type: ignore[union-attr]
    for read in (checkpointer.load("t"), checkpointer.get("t", 0)):
        got = await read
        assert got is not None
        got.state.data.n = 99
        got.state.data.log.append("mutated")
        got.queue.append(("b", 2))
        got.metadata["tags"].append("mutated")  # type: ignore[union-attr]
        got.metadata["d"]["k"] = 2  # type: ignore[index,call-overload]
        got.metadata["new"] = 1
    meta = await checkpointer.list_checkpoints("t")
    meta[0].metadata["new"] = 1
    again = await checkpointer.load("t")
    assert again is not None
    assert again.state.data.n == 0
    assert again.state.data.log == ["first"]
    assert again.queue == [("a", 1)]
    assert again.metadata == {"tags": ["x"], "d": {"k": 1}}
    assert (await checkpointer.list_checkpoints("t"))[0].metadata == again.metadata
    info = await checkpointer.thread_info("t")
    assert info is not None
    info.metadata["x"] = 1
    assert (await checkpointer.thread_info("t")) is not None
    assert (await checkpointer.thread_info("t")).metadata == {}  # type: ignore[union-attr]


async def test_calls_after_close_raise_checkpointer_closed(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer()
    await cp.save(make_cp("t", 0))
    await cp.close()
    await cp.close()  # closing twice is fine
    with pytest.raises(CheckpointerClosed):
        await cp.save(make_cp("t", 1))
    with pytest.raises(CheckpointerClosed):
        await cp.load("t")
    with pytest.raises(CheckpointerClosed):
        await cp.list_checkpoints("t")
    with pytest.raises(CheckpointerClosed):
        await cp.fork("t", 0)
    # Closed is reported before anything about the arguments, in every method.
    bad: list[Callable[[], Awaitable[object]]] = [
        lambda: cp.save(object()),  # type: ignore[arg-type]
        lambda: cp.load(123),  # type: ignore[arg-type]
        lambda: cp.get("t", -1),
        lambda: cp.list_checkpoints("", limit=-1),
        lambda: cp.list_threads(limit=-1),
        lambda: cp.thread_info(""),
        lambda: cp.list_forks(""),
        lambda: cp.fork("", -1),
        lambda: cp.delete_thread(""),
        lambda: cp.set_thread_metadata("", []),  # type: ignore[arg-type]
        lambda: cp.prune(keep_last=0),
        lambda: cp.delete_threads(inactive_for=5),  # type: ignore[arg-type]
        lambda: cp.restore_thread("x", []),  # type: ignore[arg-type]
    ]
    for call in bad:
        with pytest.raises(CheckpointerClosed):
            await call()


async def test_async_with_closes(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer()
    async with cp as same:
        assert same is cp
        await cp.save(make_cp("t", 0))
    with pytest.raises(CheckpointerClosed):
        await cp.load("t")


async def test_default_fork_is_not_supported() -> None:
    class NoFork(InMemoryCheckpointer[Counter]):
        _copy_prefix = HistoryCheckpointer._copy_prefix

    cp = NoFork(Counter)
    await cp.save(make_cp("t", 0))
    with pytest.raises(ForkNotSupported):
        await cp.fork("t", 0)
    assert [t.thread_id for t in await cp.list_threads()] == ["t"]
