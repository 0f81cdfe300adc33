"""check_states: what a new state class would fail to read, per thread, before it is deployed."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from pydantic import Field

from forkpoint import (
    CheckpointerClosed,
    InvalidInput,
    JsonState,
    SqliteCheckpointer,
    StateSchema,
)
from tests.contract._util import snapshot
from tests.versioning.conftest import Reopen
from tests.versioning.states import TicketV1, TicketV2, TicketV3, expected_v3
from tests.versioning.test_backends import cp_of, v1, write_v1


async def test_an_empty_store_is_ok(open_as: Reopen) -> None:
    cp = await open_as(JsonState)
    report = await cp.check_states(TicketV3)
    assert report.ok
    assert (report.threads_checked, report.checkpoints_checked) == (0, 0)
    assert (report.state_type, report.current_version) == ("TicketV3", 3)


async def test_old_rows_that_upgrade_are_ok_and_counted_by_version(open_as: Reopen) -> None:
    one = await open_as(TicketV1)
    for n in range(3):
        await write_v1(one, f"t{n}", 4)
    tool = await open_as(JsonState)
    latest = await tool.check_states(TicketV3)
    assert latest.ok
    assert (latest.threads_checked, latest.checkpoints_checked) == (3, 3)
    assert latest.stored_versions == {1: 3}
    every = await tool.check_states(TicketV3, all_steps=True)
    assert every.ok
    assert every.all_steps
    assert (every.threads_checked, every.checkpoints_checked) == (3, 12)
    assert every.stored_versions == {1: 12}


async def test_each_kind_of_problem_is_reported_per_thread(open_as: Reopen) -> None:
    one = await open_as(TicketV1)
    await write_v1(one, "fine", 2)
    await one.save(cp_of(v1(0, priority="urgent"), "unknown-word", 0))  # the v2 → v3 step fails
    await one.save(cp_of(v1(0, priority="urgent"), "healed", 0))
    await one.save(cp_of(v1(1), "healed", 1))  # only an older step fails
    three = await open_as(TicketV3)
    await three.save(cp_of(TicketV3.model_validate(expected_v3(v1(0).model_dump())), "new", 0))
    tool = await open_as(JsonState)
    before = await snapshot(tool)

    report = await tool.check_states(TicketV3)
    assert not report.ok
    assert [t.thread_id for t in report.threads] == ["unknown-word"]
    (problem,) = report.threads[0].problems
    assert (problem.step, problem.kind, problem.stored_version) == (0, "upgrade_failed", 1)
    assert "KeyError('urgent')" in problem.message

    every = await tool.check_states(TicketV3, all_steps=True)
    assert [t.thread_id for t in every.threads] == ["healed", "unknown-word"]
    assert [p.step for p in every.threads[0].problems] == [0]
    assert every.threads[0].checkpoints_checked == 2

    older = await tool.check_states(TicketV2)
    assert [t.thread_id for t in older.threads] == ["new"]
    (newer,) = older.threads[0].problems
    assert (newer.kind, newer.stored_version) == ("newer_version", 3)
    assert older.stored_versions == {1: 3, 3: 1}  # the latest of each thread

    assert await snapshot(tool) == before  # a check writes nothing


async def test_unknown_keys_and_invalid_states_are_told_apart(open_as: Reopen) -> None:
    class Renamed(StateSchema):
        headline: str = ""
        priority: str = "low"
        owner: str = ""
        notes: list[str] = Field(default_factory=list)

    class Retyped(StateSchema):
        title: str
        priority: int = 1
        owner: str = ""
        notes: list[str] = Field(default_factory=list)

    await write_v1(await open_as(TicketV1), "t", 1)
    tool = await open_as(JsonState)
    (renamed,) = (await tool.check_states(Renamed)).threads[0].problems
    assert (renamed.kind, renamed.unknown_keys) == ("unknown_keys", ("title",))
    (retyped,) = (await tool.check_states(Retyped)).threads[0].problems
    assert retyped.kind == "invalid"
    assert "add an upgrade step" in retyped.message


async def test_pages_and_progress(open_as: Reopen) -> None:
    one = await open_as(TicketV1)
    for n in range(5):
        await write_v1(one, f"t{n}", 3)
    await one.save(cp_of(v1(3, priority="urgent"), "t4", 3))
    seen: list[tuple[int, int]] = []
    report = await one.check_states(
        TicketV3, all_steps=True, page_size=2, progress=lambda t, c: seen.append((t, c))
    )
    assert seen == [(2, 6), (4, 12), (5, 16)]
    assert (report.threads_checked, report.checkpoints_checked) == (5, 16)
    assert [(t.thread_id, [p.step for p in t.problems]) for t in report.threads] == [("t4", [3])]


@pytest.mark.parametrize(
    ("args", "kw"),
    [
        ((dict,), {}),
        ((42,), {}),
        ((TicketV3,), {"all_steps": 1}),
        ((TicketV3,), {"page_size": 0}),
        ((TicketV3,), {"page_size": True}),
        ((TicketV3,), {"progress": "yes"}),
    ],
)
async def test_bad_arguments_are_invalid_input(
    open_as: Reopen, args: tuple[Any, ...], kw: dict[str, Any]
) -> None:
    cp = await open_as(JsonState)
    with pytest.raises(InvalidInput):
        await cp.check_states(*args, **kw)


async def test_a_closed_checkpointer_is_reported_first(open_as: Reopen) -> None:
    cp = await open_as(JsonState)
    await cp.close()
    with pytest.raises(CheckpointerClosed):
        await cp.check_states(42)  # type: ignore[arg-type]


async def test_a_damaged_row_is_reported_not_raised(open_as: Reopen, backend_name: str) -> None:
    if backend_name != "sqlite":
        pytest.skip(reason="this test damages a stored row through the SQLite file")
    one = await open_as(TicketV1)
    await write_v1(one, "t", 2)
    assert isinstance(one, SqliteCheckpointer)
    with sqlite3.connect(one.path) as conn:
        conn.execute("UPDATE checkpoints SET state = 'not json' WHERE step = 1")
    report = await one.check_states(TicketV3)
    (problem,) = report.threads[0].problems
    assert (problem.kind, problem.step, problem.stored_version) == ("damaged", 1, 1)
    assert "not JSON" in problem.message or "does not decode" in problem.message


async def test_a_delta_that_cannot_be_rebuilt_ends_its_thread_with_a_problem(
    open_as: Reopen, backend_name: str
) -> None:
    if backend_name != "sqlite":
        pytest.skip(reason="this test damages a stored delta row through the SQLite file")
    one = await open_as(TicketV1)
    state = TicketV1(title="t")
    for step in range(6):
        state = TicketV1.apply(state, {"notes": [f"note {step} " + "x" * 600]})
        await one.save(cp_of(state, "t", step))
    assert isinstance(one, SqliteCheckpointer)
    with sqlite3.connect(one.path) as conn:
        assert conn.execute("SELECT encoding FROM checkpoints WHERE step = 4").fetchone() == (1,)
        conn.execute("UPDATE checkpoints SET state = '[1, 2' WHERE step = 4")
    latest = await one.check_states(TicketV3)
    assert latest.ok  # the latest row is whole
    every = await one.check_states(TicketV3, all_steps=True)
    (thread,) = every.threads
    assert [(p.step, p.kind) for p in thread.problems] == [(4, "damaged")]
    # The rows older than the damaged delta are rebuilt through it: the stream ends there.
    assert every.checkpoints_checked < 6
