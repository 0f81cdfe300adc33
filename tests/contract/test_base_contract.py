"""What the base class owns for every backend: closing, get_raw, huge durations, state_type."""

from __future__ import annotations

import asyncio
import inspect
import json
from datetime import timedelta

import pytest

from forkpoint import CheckpointerClosed, HistoryCheckpointer
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
    assert [m.seq for m in await checkpointer.list_checkpoints("t")] == [0, 1, 2]


async def test_state_type_is_part_of_the_contract(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    assert checkpointer.state_type is Counter
    assert isinstance(inspect.getattr_static(checkpointer, "state_type"), property)
