"""``ForkpointSaver.from_checkpointer``: a LangGraph saver sharing an open checkpointer's engine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.base", reason="the langgraph extra is not installed")

from forkpoint import Checkpoint, GraphState, InMemoryCheckpointer, JsonState, SqliteCheckpointer
from forkpoint.errors import CheckpointerClosed, InvalidInput
from forkpoint.langgraph import ForkpointSaver, SyncCallOnEventLoop
from tests.langgraph.test_graphs import Profile, scenario_async, scenario_sync

CFG: Any = {"configurable": {"thread_id": "conversation"}}


def native(thread: str) -> Checkpoint[JsonState]:
    return Checkpoint[JsonState](
        thread_id=thread,
        state=GraphState[JsonState](data=JsonState(note="mine")),
        step=0,
        node="__input__",
        queue=[],
        created_at=datetime.now(UTC),
    )


async def test_a_graph_on_a_shared_engine_behaves_as_on_its_own_saver(tmp_path: Path) -> None:
    async with ForkpointSaver.from_conn_string(str(tmp_path / "alone.db")) as alone:
        expected = await scenario_async(alone)
    async with SqliteCheckpointer.open(tmp_path / "shared.db", JsonState) as cp:
        saver = ForkpointSaver.from_checkpointer(cp)
        assert saver.path == cp.path
        got = await scenario_async(saver)
        await cp.save(native("app"))  # forkpoint's own API on the same engine, meanwhile
        ids = [t.config["configurable"]["checkpoint_id"] async for t in saver.alist(CFG)]
        # sync calls work from another thread while the loop runs, and refuse the loop's own
        assert await asyncio.to_thread(saver.get_tuple, CFG) is not None
        with pytest.raises(SyncCallOnEventLoop):
            saver.get_tuple(CFG)
        await saver.aclose()
        assert (await cp.load("app")) is not None  # closing the saver leaves the checkpointer open
        with pytest.raises(CheckpointerClosed):
            await saver.aget_tuple(CFG)
    assert got == expected
    async with ForkpointSaver.from_conn_string(
        str(tmp_path / "shared.db"), types=[Profile]
    ) as reopened:
        assert [t.config["configurable"]["checkpoint_id"] async for t in reopened.alist(CFG)] == ids


async def test_the_sync_api_drives_a_graph_from_a_worker_thread(tmp_path: Path) -> None:
    async with SqliteCheckpointer.open(tmp_path / "shared.db", JsonState) as cp:
        saver = ForkpointSaver.from_checkpointer(cp)
        seen = await asyncio.to_thread(scenario_sync, saver)
        assert seen[-1]  # the filtered history of the update branch
        assert len([t async for t in saver.alist(CFG)]) > 3


async def test_closing_the_checkpointer_ends_the_saver(tmp_path: Path) -> None:
    async with SqliteCheckpointer.open(tmp_path / "shared.db", JsonState) as cp:
        saver = ForkpointSaver.from_checkpointer(cp)
    with pytest.raises(CheckpointerClosed):
        await saver.aget_tuple(CFG)
    with pytest.raises(CheckpointerClosed):
        ForkpointSaver.from_checkpointer(cp)


def test_a_saver_whose_loop_has_ended_refuses_instead_of_hanging(tmp_path: Path) -> None:
    """Reads and writes need no loop; what runs on the checkpointer's loop refuses at once."""

    async def make() -> tuple[SqliteCheckpointer[JsonState], ForkpointSaver]:
        cp = await SqliteCheckpointer.open(tmp_path / "shared.db", JsonState)
        return cp, ForkpointSaver.from_checkpointer(cp)

    cp, saver = asyncio.run(make())
    assert saver.get_tuple(CFG) is None
    with pytest.raises(CheckpointerClosed, match="no longer running"):
        saver.vacuum()
    asyncio.run(cp.close())
    with pytest.raises(CheckpointerClosed, match="the checkpointer is closed"):
        saver.get_tuple(CFG)


async def test_bad_arguments_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="SqliteCheckpointer"):
        ForkpointSaver.from_checkpointer(InMemoryCheckpointer(JsonState))  # type: ignore[arg-type]


def test_outside_an_event_loop_it_says_where_to_call_it(tmp_path: Path) -> None:
    async def opened() -> SqliteCheckpointer[JsonState]:
        return await SqliteCheckpointer.open(tmp_path / "shared.db", JsonState)

    cp = asyncio.run(opened())
    with pytest.raises(InvalidInput, match="inside the event loop"):
        ForkpointSaver.from_checkpointer(cp)
