"""Changing a state class between deploys, on every backend: nothing is lost, nothing stranded.

Each test writes threads with one version of a class and reads them with
another, through the same store (see ``conftest.Reopen``). The rename,
remove, add-required and type-change cases each failed before versions
existed: a rename read as the default silently, a removed field's value was
dropped silently, and the other two could not be read at all.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any

import pytest
from pydantic import ConfigDict, Field

from forkpoint import (
    Append,
    Checkpoint,
    GraphState,
    HistoryCheckpointer,
    InvalidInput,
    JsonState,
    SqliteCheckpointer,
    StateSchema,
    StateVersionError,
    upgrade_from,
)
from tests.versioning.conftest import Reopen
from tests.versioning.states import TicketV1, TicketV2, TicketV3, expected_v2, expected_v3


def cp_of(state: StateSchema, thread_id: str, step: int, **kw: Any) -> Checkpoint[Any]:
    return Checkpoint[Any](
        thread_id=thread_id, state=GraphState[Any](data=state), step=step, node="n", **kw
    )


def v1(step: int, *, big: bool = False, priority: str = "high") -> TicketV1:
    pad = "x" * (600 if big else 4)
    return TicketV1(
        title=f"ticket at {step}",
        priority=priority,
        owner="ann",
        notes=[f"note {i} {pad}" for i in range(step + 1)],
    )


async def write_v1(cp: HistoryCheckpointer[Any], thread_id: str, steps: int, **kw: Any) -> None:
    for step in range(steps):
        await cp.save(cp_of(v1(step, **kw), thread_id, step))


# --- the four changes the issue names ------------------------------------------------------


async def test_rename_with_a_step_keeps_the_value(open_as: Reopen) -> None:
    await write_v1(await open_as(TicketV1), "t", 3)
    cp = await open_as(TicketV2)
    latest = await cp.load("t")
    assert latest is not None
    assert latest.state.data.headline == "ticket at 2"
    assert latest.state.data.model_dump() == expected_v2(v1(2).model_dump())


async def test_rename_without_a_step_is_refused_not_defaulted(open_as: Reopen) -> None:
    class Renamed(StateSchema):
        headline: str = ""
        priority: str = "low"
        owner: str = ""
        notes: list[str] = Field(default_factory=list)

    await write_v1(await open_as(TicketV1), "t", 2)
    cp = await open_as(Renamed)
    for read in (cp.load("t"), cp.get("t", 0)):
        with pytest.raises(StateVersionError) as caught:
            await read
        assert caught.value.unknown_keys == ("title",)
        assert caught.value.thread_id == "t"


class WithoutOwner(StateSchema):
    title: str
    priority: str = "low"
    notes: Annotated[list[str], Append] = Field(default_factory=list)


async def test_remove_without_a_step_is_refused(open_as: Reopen) -> None:
    await write_v1(await open_as(TicketV1), "t", 1)
    cp = await open_as(WithoutOwner)
    with pytest.raises(StateVersionError) as caught:
        await cp.load("t")
    assert caught.value.unknown_keys == ("owner",)
    assert (caught.value.stored_version, caught.value.current_version) == (1, 1)


async def test_remove_with_extra_ignore_drops_as_the_class_asked(open_as: Reopen) -> None:
    class Dropping(WithoutOwner):
        model_config = ConfigDict(extra="ignore")

    await write_v1(await open_as(TicketV1), "t", 1)
    cp = await open_as(Dropping)
    latest = await cp.load("t")
    assert latest is not None
    assert latest.state.data.model_dump() == {
        "title": "ticket at 0",
        "priority": "high",
        "notes": ["note 0 xxxx"],
    }


class AddsCustomer(StateSchema, version=2):
    title: str
    priority: str = "low"
    owner: str = ""
    customer: str
    notes: Annotated[list[str], Append] = Field(default_factory=list)

    @upgrade_from(1)
    def customer_from_owner(state: dict[str, Any]) -> dict[str, Any]:
        state["customer"] = f"customer of {state['owner']}"
        return state


async def test_add_required_with_a_step(open_as: Reopen) -> None:
    await write_v1(await open_as(TicketV1), "t", 2)
    cp = await open_as(AddsCustomer)
    got = await cp.get("t", 1)
    assert got is not None
    assert got.state.data.customer == "customer of ann"


async def test_add_required_without_a_step_says_what_to_do(open_as: Reopen) -> None:
    class Missing(StateSchema):
        title: str
        priority: str = "low"
        owner: str = ""
        customer: str
        notes: list[str] = Field(default_factory=list)

    await write_v1(await open_as(TicketV1), "t", 1)
    cp = await open_as(Missing)
    with pytest.raises(StateVersionError, match=r"(?s)customer.*add an upgrade step"):
        await cp.load("t")


class NumericPriority(StateSchema, version=2):
    title: str
    priority: int
    owner: str = ""
    notes: Annotated[list[str], Append] = Field(default_factory=list)

    @upgrade_from(1)
    def priority_as_number(state: dict[str, Any]) -> dict[str, Any]:
        state["priority"] = {"low": 1, "normal": 2, "high": 3}[state["priority"]]
        return state


async def test_type_change_with_a_step(open_as: Reopen) -> None:
    await write_v1(await open_as(TicketV1), "t", 1)
    await write_v1(await open_as(TicketV1), "u", 1, priority="normal")
    cp = await open_as(NumericPriority)
    for thread_id, want in (("t", 3), ("u", 2)):
        latest = await cp.load(thread_id)
        assert latest is not None
        assert latest.state.data.priority == want


# --- versions across saves, deltas and forks -------------------------------------------------


async def test_a_newer_row_is_refused_by_an_older_class(open_as: Reopen) -> None:
    new = await open_as(TicketV3)
    state = TicketV3.model_validate(expected_v3(v1(0).model_dump()))
    await new.save(cp_of(state, "t", 0))
    old = await open_as(TicketV2)
    for read in (old.load("t"), old.get("t", 0)):
        with pytest.raises(StateVersionError) as caught:
            await read
        err = caught.value
        assert (err.thread_id, err.step) == ("t", 0)
        assert (err.stored_version, err.current_version, err.state_type) == (3, 2, "TicketV2")


async def test_chains_from_one_to_three_across_deltas_and_forks(
    open_as: Reopen, backend_name: str
) -> None:
    """Version 1 writes, version 2 continues the thread and forks it, version 3 reads it all."""
    one = await open_as(TicketV1)
    await write_v1(one, "t", 8, big=True)  # large enough for SQLite to store reverse deltas
    await one.fork("t", 3, new_thread_id="f1")
    originals = {step: v1(step, big=True).model_dump() for step in range(8)}

    two = await open_as(TicketV2)
    latest = await two.load("t")
    assert latest is not None
    state = latest.state.data
    # Version-2 rows on top. The first changes a field near the front only, so the newest
    # version-1 row shares its long tail of notes and SQLite stores it as a delta of a v2 row.
    for step in range(8, 11):
        update = {"priority": "low"} if step == 8 else {"notes": [f"v2 note {step} " + "y" * 600]}
        state = TicketV2.apply(state, update)
        await two.save(cp_of(state, "t", step))
    if backend_name == "sqlite":
        assert isinstance(two, SqliteCheckpointer)
        with sqlite3.connect(two.path) as conn:
            stored = conn.execute(
                "SELECT encoding, state_version FROM checkpoints WHERE thread_id = 't' AND step = 7"
            ).fetchone()
        assert stored == (1, 1)
    v2_states = {step: (await two.get("t", step)).state.data.model_dump() for step in range(8, 11)}  # type: ignore[union-attr]
    await two.fork("t", 7, new_thread_id="f2")  # the last version-1 step, now stored as a delta
    await two.fork("t", 9, new_thread_id="f3")  # a version-2 step

    three = await open_as(TicketV3)
    for step in range(8):
        got = await three.get("t", step)
        assert got is not None
        assert got.state.data.model_dump() == expected_v3(originals[step])
    for step in range(8, 11):
        got = await three.get("t", step)
        assert got is not None
        want = v2_states[step]
        assert got.state.data.model_dump() == {
            **want,
            "priority": 3 if step < 8 else 1,
            "customer": "unknown",
        }
    # The streaming reader of whole checkpoints upgrades each row on its own version too.
    streamed = [c async for c in three.iter_states("t")]
    assert [c.step for c in streamed] == list(range(10, -1, -1))
    assert streamed == [await three.get("t", c.step) for c in streamed]
    for fork, at in (("f1", 3), ("f2", 7)):
        latest = await three.load(fork)
        assert latest is not None
        assert latest.step == at
        assert latest.state.data.model_dump() == expected_v3(originals[at])
    f3 = await three.load("f3")
    assert f3 is not None
    assert f3.state.data.model_dump() == {**v2_states[9], "priority": 1, "customer": "unknown"}

    # Reads rewrote nothing: version 1 still reads its own rows, and is refused the newer ones.
    again = await open_as(TicketV1)
    for step in range(8):
        got = await again.get("t", step)
        assert got is not None
        assert got.state.data.model_dump() == originals[step]
    with pytest.raises(StateVersionError):
        await again.load("t")

    # The next save writes the current version: version 2 cannot read it any more.
    f1 = await three.load("f1")
    assert f1 is not None
    await three.save(cp_of(f1.state.data, "f1", 4))
    with pytest.raises(StateVersionError) as caught:
        await two.load("f1")
    assert caught.value.stored_version == 3
    older = await two.get("f1", 3)
    assert older is not None
    assert older.state.data.model_dump() == expected_v2(originals[3])


async def test_json_state_copies_keep_the_version_that_wrote_them(open_as: Reopen) -> None:
    """A tool reading with JsonState and writing back (a copy, an import) keeps each row's version."""
    v3 = await open_as(TicketV3)
    await write_v1(await open_as(TicketV1), "old", 2)
    state = TicketV3.model_validate(expected_v3(v1(0).model_dump()))
    await v3.save(cp_of(state, "old", 2))
    tool = await open_as(JsonState)
    info = await tool.thread_info("old")
    assert info is not None
    rows = [await tool.get("old", step) for step in range(3)]
    assert [r.state.data.stored_version for r in rows if r is not None] == [1, 1, 3]
    assert rows[2] is not None
    same_data = JsonState(**rows[2].state.data.model_dump())
    assert same_data.stored_version == 1
    assert rows[2].state.data == same_data  # equality compares the data only
    copies = [r.model_copy(update={"thread_id": "copy"}) for r in rows if r is not None]
    await tool.restore_thread(info.model_copy(update={"thread_id": "copy"}), copies)
    for step in range(3):
        got = await v3.get("copy", step)
        want = await v3.get("old", step)
        assert got is not None
        assert want is not None
        assert got.state == want.state


def test_json_state_from_stored_checks_the_version() -> None:
    assert JsonState.from_stored({"a": 1}, 4).stored_version == 4
    assert JsonState(a=1).stored_version == 1
    for bad in (0, True, "2"):
        with pytest.raises(InvalidInput):
            JsonState.from_stored({}, bad)  # type: ignore[arg-type]
