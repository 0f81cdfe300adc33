"""What the base class owns for every backend: closing, get_raw, huge durations, state_type."""

from __future__ import annotations

import asyncio
import inspect
import json
from datetime import timedelta
from typing import Any

import pytest

from forkpoint import (
    CheckpointerClosed,
    CheckpointNotFound,
    HistoryCheckpointer,
    InvalidInput,
    StepConflict,
)
from forkpoint.base import APPEND_ATTEMPTS
from tests.conftest import Counter, Factory, make_cp


async def test_concurrent_closes_all_return(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer()
    await cp.save(make_cp("t", 0))
    pending = asyncio.ensure_future(cp.save(make_cp("t", 1)))
    await asyncio.sleep(0)
    # A hang here is the failure; pytest-timeout would report it, wait_for reports it sooner.
    await asyncio.wait_for(asyncio.gather(cp.close(), cp.close(), cp.close()), timeout=60)
    await asyncio.wait_for(cp.close(), timeout=60)  # and a later one returns at once
    await asyncio.gather(pending, return_exceptions=True)
    with pytest.raises(CheckpointerClosed):
        await cp.load("t")


async def test_get_raw_is_async_and_returns_the_stored_json(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("t", 3, n=7))
    raw = await checkpointer.get_raw("t", 3)
    assert isinstance(raw, str)
    assert json.loads(raw) == {"n": 7, "log": []}
    assert await checkpointer.get_raw("t", 4) is None
    assert await checkpointer.get_raw("nope", 3) is None


@pytest.mark.parametrize("age", [timedelta(days=10**6), timedelta.max], ids=["1e6d", "max"])
async def test_durations_past_the_calendar_remove_nothing(
    checkpointer: HistoryCheckpointer[Counter], age: timedelta
) -> None:
    for step in range(3):
        await checkpointer.save(make_cp("t", step))
    report = await checkpointer.prune(older_than=age)
    assert report.checkpoints_removed == 0
    report = await checkpointer.prune("t", keep_last=1, older_than=age)
    assert report.checkpoints_removed == 0
    assert await checkpointer.delete_threads(inactive_for=age) == []
    assert [m.step for m in await checkpointer.list_checkpoints("t")] == [0, 1, 2]


async def test_state_type_is_part_of_the_contract(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    assert checkpointer.state_type is Counter
    assert isinstance(inspect.getattr_static(checkpointer, "state_type"), property)


# --- append: the next step without counting ---------------------------------------------------


async def test_append_saves_the_next_step(checkpointer: HistoryCheckpointer[Counter]) -> None:
    first = await checkpointer.append("t", Counter(n=1), node="a", thread_metadata={"o": 1})
    assert first.step == 0
    second = await checkpointer.append(
        "t", Counter(n=2), node="b", queue=[("c", 0)], metadata={"k": "v"}
    )
    assert second.step == 1
    assert await checkpointer.load("t") == second
    assert second.queue == [("c", 0)]
    assert second.metadata == {"k": "v"}
    info = await checkpointer.thread_info("t")
    assert info is not None
    assert info.metadata == {"o": 1}
    await checkpointer.save(make_cp("t", 10))
    assert (await checkpointer.append("t", Counter(), node="z")).step == 11


async def test_racing_appends_all_land_on_distinct_steps(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    made = await asyncio.gather(
        *(checkpointer.append("t", Counter(n=i), node="n") for i in range(6))
    )
    assert sorted(c.step for c in made) == list(range(6))
    assert [m.step for m in await checkpointer.list_checkpoints("t")] == list(range(6))


async def test_append_gives_up_after_bounded_conflicts(
    checkpointer: HistoryCheckpointer[Counter], monkeypatch: pytest.MonkeyPatch
) -> None:
    await checkpointer.save(make_cp("t", 0))
    calls = 0
    real_record = type(checkpointer)._thread_record

    async def stale(self: Any, thread_id: str) -> Any:  # always reports a step already taken
        nonlocal calls
        calls += 1
        record = await real_record(self, thread_id)
        return None if record is None else (*record[:3], -1, *record[4:])

    monkeypatch.setattr(type(checkpointer), "_thread_record", stale)
    with pytest.raises(StepConflict):
        await checkpointer.append("t", Counter(n=5), node="n")
    assert calls == APPEND_ATTEMPTS
    monkeypatch.undo()
    assert [m.step for m in await checkpointer.list_checkpoints("t")] == [0]


async def test_append_checks_its_arguments(checkpointer: HistoryCheckpointer[Counter]) -> None:
    with pytest.raises(InvalidInput):
        await checkpointer.append("", Counter(), node="n")
    with pytest.raises(InvalidInput):
        await checkpointer.append("t", "not a state", node="n")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await checkpointer.append("t", Counter(), node=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await checkpointer.append("t", Counter(), node="n", queue=[("a",)])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        await checkpointer.append("t", Counter(), node="n", metadata=[1])  # type: ignore[arg-type]
    assert await checkpointer.list_threads() == []


# --- one name per concept: step, with the former names deprecated -----------------------------


async def test_former_names_still_work_and_warn(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await checkpointer.save(make_cp("t", 0))
    await checkpointer.save(make_cp("t", 1))
    (meta,) = await checkpointer.list_checkpoints("t", limit=1)
    with pytest.warns(DeprecationWarning, match="step"):
        assert meta.seq == meta.step == 0
    with pytest.warns(DeprecationWarning, match="at_step"):
        old = await checkpointer.fork("t", at_seq=0, new_thread_id="old")
    assert old == await checkpointer.fork("t", at_step=0, new_thread_id="old")
    with pytest.raises(InvalidInput), pytest.warns(DeprecationWarning, match="at_step"):
        await checkpointer.fork("t", 0, at_seq=0)
    with pytest.raises(InvalidInput):
        await checkpointer.fork("t")


# --- not found has one meaning ------------------------------------------------------------------


async def test_asking_answers_none_acting_raises_not_found(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    """Reads answer None (or empty) for what does not exist; operations needing it raise."""
    await checkpointer.save(make_cp("t", 0))
    for thread_id, step in (("ghost", 0), ("t", 1)):
        assert await checkpointer.get(thread_id, step) is None
        assert await checkpointer.get_raw(thread_id, step) is None
        with pytest.raises(CheckpointNotFound) as info:
            await checkpointer.fork(thread_id, step)
        assert (info.value.thread_id, info.value.step) == (thread_id, step)
        assert isinstance(info.value, LookupError)
    assert await checkpointer.load("ghost") is None
    assert await checkpointer.thread_info("ghost") is None
    assert await checkpointer.list_checkpoints("ghost") == []
    assert await checkpointer.list_forks("ghost") == []
    assert await checkpointer.delete_thread("ghost") is False
    with pytest.raises(CheckpointNotFound):
        await checkpointer.set_thread_metadata("ghost", {})
    assert [i.thread_id for i in await checkpointer.list_threads()] == ["t"]
