"""Real LangGraph graphs: everything a user can observe is the same on ForkpointSaver and on
LangGraph's own SQLite savers (async and sync).

The graph has messages, a pydantic model, datetime and bytes in its state, a
fan-out with ``Send``, and a subgraph that stops at its own ``interrupt()``. The
scenario resumes it, lists and filters the history, goes back to an old
checkpoint with ``update_state``, continues on that branch and resumes again.
Ids and timestamps differ between any two runs, so snapshots are compared
without them.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip(
    "langgraph.checkpoint.sqlite", reason="langgraph-checkpoint-sqlite is not installed"
)

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, StateSnapshot, interrupt
from pydantic import BaseModel

from forkpoint.langgraph import ForkpointSaver, UnregisteredType


class Profile(BaseModel):
    name: str
    joined: datetime


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    profile: Profile | None
    blob: bytes
    when: datetime
    results: Annotated[list[str], operator.add]


class ReviewState(TypedDict, total=False):
    results: Annotated[list[str], operator.add]


class WorkItem(TypedDict):
    item: int


def review(state: ReviewState) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "seen": sorted(state.get("results", []))})
    return {"results": [f"review:{answer}"]}


def build() -> StateGraph[Any]:
    sub = StateGraph(ReviewState)
    sub.add_node("ask", review)
    sub.add_edge(START, "ask")
    sub.add_edge("ask", END)

    def greet(state: State) -> dict[str, Any]:
        turn = len(state["messages"])
        return {
            "messages": [AIMessage(f"hello #{turn}", id=f"ai{turn}")],
            "profile": Profile(name="ann", joined=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)),
            "blob": bytes(range(turn + 3)),
            "when": datetime(2026, 5, 6, 7, 8, 9, turn),
        }

    def fan_out(state: State) -> list[Send]:
        return [Send("work", {"item": i}) for i in range(3)]

    def work(item: WorkItem) -> dict[str, Any]:
        return {"results": [f"work:{item['item']}"]}

    builder = StateGraph(State)
    builder.add_node("greet", greet)
    builder.add_node("work", work)  # type: ignore[arg-type]  # a Send target takes its own input
    builder.add_node("review", sub.compile())
    builder.add_edge(START, "greet")
    builder.add_conditional_edges("greet", fan_out, ["work"])
    builder.add_edge("work", "review")
    builder.add_edge("review", END)
    return builder


def normal(snapshot: StateSnapshot) -> Any:
    """A snapshot without ids and times: values, next nodes, source/step, tasks and interrupts."""
    return {
        "values": snapshot.values,
        "next": snapshot.next,
        "meta": {k: (snapshot.metadata or {}).get(k) for k in ("source", "step")},
        "tasks": [
            (
                task.name,
                [i.value for i in task.interrupts],
                None if not isinstance(task.state, StateSnapshot) else normal(task.state),
            )
            for task in snapshot.tasks
        ],
        "interrupts": [i.value for i in snapshot.interrupts],
        "has_parent": snapshot.parent_config is not None,
    }


async def scenario_async(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = build().compile(checkpointer=saver)
    if isinstance(saver, ForkpointSaver):
        saver.register_graph(graph)
    cfg: Any = {"configurable": {"thread_id": "conversation"}}
    seen: list[Any] = []
    first = await graph.ainvoke({"messages": [HumanMessage("hi", id="h1")]}, cfg)
    seen.append({k: v for k, v in first.items() if k != "__interrupt__"})
    seen.append([i.value for i in first["__interrupt__"]])
    seen.append(normal(await graph.aget_state(cfg, subgraphs=True)))
    seen.append(await graph.ainvoke(Command(resume="yes"), cfg))
    history = [s async for s in graph.aget_state_history(cfg)]
    seen.append([normal(s) for s in history])
    seen.append(
        [normal(s) async for s in graph.aget_state_history(cfg, filter={"source": "input"})]
    )
    seen.append(
        [normal(s) async for s in graph.aget_state_history(cfg, filter={"step": 1}, limit=1)]
    )
    # go back to the checkpoint right after greet, edit it, and continue from there
    old = next(s for s in history if s.next == ("work", "work", "work"))
    branch = await graph.aupdate_state(
        old.config, {"messages": [HumanMessage("edited", id="h2")]}, as_node="greet"
    )
    after = await graph.ainvoke(None, branch)
    seen.append({k: v for k, v in after.items() if k != "__interrupt__"})
    seen.append(await graph.ainvoke(Command(resume="no"), cfg))
    seen.append([normal(s) async for s in graph.aget_state_history(cfg)])
    seen.append(normal(await graph.aget_state(old.config)))
    return seen


def scenario_sync(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = build().compile(checkpointer=saver)
    if isinstance(saver, ForkpointSaver):
        saver.register_graph(graph)
    cfg: Any = {"configurable": {"thread_id": "conversation"}}
    seen: list[Any] = []
    first = graph.invoke({"messages": [HumanMessage("hi", id="h1")]}, cfg)
    seen.append([i.value for i in first["__interrupt__"]])
    seen.append(normal(graph.get_state(cfg, subgraphs=True)))
    seen.append(graph.invoke(Command(resume="yes"), cfg))
    history = list(graph.get_state_history(cfg))
    seen.append([normal(s) for s in history])
    old = next(s for s in history if s.next == ("work", "work", "work"))
    branch = graph.update_state(
        old.config, {"messages": [HumanMessage("e", id="h2")]}, as_node="greet"
    )
    graph.invoke(None, branch)
    seen.append(graph.invoke(Command(resume="no"), cfg))
    seen.append([normal(s) for s in graph.get_state_history(cfg, filter={"source": "update"})])
    return seen


async def test_a_real_graph_behaves_identically_on_forkpoint_and_async_sqlite_saver(
    tmp_path: Path,
) -> None:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "theirs.db")) as theirs:
        expected = await scenario_async(theirs)
    async with ForkpointSaver.from_conn_string(str(tmp_path / "ours.db")) as ours:
        got = await scenario_async(ours)
    assert got == expected
    assert expected[3]["results"][:3] == ["work:0", "work:1", "work:2"]
    assert expected[3]["results"][-1] == "review:yes"
    assert len(got[4]) == 5  # input, greet, work, review, done
    assert isinstance(got[0]["profile"], Profile)
    assert isinstance(got[0]["blob"], bytes)
    assert isinstance(got[0]["when"], datetime)


def test_the_sync_api_drives_a_real_graph_identically_to_sqlite_saver(tmp_path: Path) -> None:
    with SqliteSaver.from_conn_string(str(tmp_path / "theirs.db")) as theirs:
        expected = scenario_sync(theirs)
    with ForkpointSaver.from_conn_string(str(tmp_path / "ours.db")) as ours:
        got = scenario_sync(ours)
    assert got == expected
    assert got[4]["results"][-1] == "review:no"


def test_stored_state_is_json_a_sqlite_shell_can_read(tmp_path: Path) -> None:
    path = str(tmp_path / "ours.db")
    with ForkpointSaver.from_conn_string(path) as saver:
        scenario_sync(saver)
    conn = sqlite3.connect(path)
    try:
        texts = {
            row[0]
            for row in conn.execute(
                "SELECT json_extract(value, '$[0].v.content') FROM lg_blobs WHERE channel = 'messages'"
            )
        }
        namespaces = {
            row[0].split(":")[0] for row in conn.execute("SELECT checkpoint_ns FROM lg_checkpoints")
        }
        joined = conn.execute(
            "SELECT json_extract(value, '$.v.joined.v') FROM lg_blobs WHERE channel = 'profile'"
        ).fetchone()
    finally:
        conn.close()
    assert texts == {"hi"}
    assert namespaces == {"", "review"}  # the subgraph has its own namespace
    assert joined == ("2026-01-02T03:04:00+00:00",)


async def test_register_graph_registers_the_schemas_of_the_graph_and_its_subgraphs() -> None:
    async with ForkpointSaver.from_conn_string(":memory:") as saver:
        graph = build().compile(checkpointer=saver)
        cfg: Any = {"configurable": {"thread_id": "t"}}
        with pytest.raises(UnregisteredType, match="Profile"):
            await graph.ainvoke({"messages": [HumanMessage("hi", id="h1")]}, cfg)
        assert saver.register_graph(graph) == ["Profile"]
        await graph.ainvoke({"messages": [HumanMessage("hi", id="h1")]}, cfg)
        tup = await saver.aget_tuple(cfg)
        assert tup is not None
        assert isinstance(tup.checkpoint["channel_values"]["profile"], Profile)


def test_with_allowlist_registers_imported_classes_and_imports_nothing() -> None:
    """LangGraph's strict-mode hook: names are looked up in loaded modules only."""
    sentinel = "tests.reliability.sentinel_payload"
    sys.modules.pop(sentinel, None)
    with ForkpointSaver.from_conn_string(":memory:") as saver:
        same = saver.with_allowlist(
            {(Profile.__module__, "Profile"), (sentinel, "Boom"), ("langchain_core.x", "Y")}
        )
        assert same is saver
        assert saver.registry.entry_for(Profile) is not None
    assert sentinel not in sys.modules


async def test_a_value_outside_the_registry_stops_the_graph_with_a_named_error() -> None:
    class Secret:
        pass

    class Loose(TypedDict, total=False):
        data: Any

    builder = StateGraph(Loose)
    builder.add_node("make", lambda state: {"data": {"inner": [Secret()]}})
    builder.add_edge(START, "make")
    builder.add_edge("make", END)
    async with ForkpointSaver.from_conn_string(":memory:") as saver:
        graph = builder.compile(checkpointer=saver)
        cfg: Any = {"configurable": {"thread_id": "t"}}
        with pytest.raises(UnregisteredType) as caught:
            await graph.ainvoke({"data": 1}, cfg)
        assert caught.value.channel == "data"
        assert caught.value.where == "$.inner[0]"
        state = await graph.aget_state(cfg)
        assert state.values == {"data": 1}  # the last good checkpoint is intact


async def test_graph_invoke_on_the_event_loop_thread_fails_fast_instead_of_hanging() -> None:
    """The #7857 shape: sync graph calls inside async code get a typed error, not a hang."""
    from forkpoint.langgraph import SyncCallOnEventLoop

    async with ForkpointSaver.from_conn_string(":memory:") as saver:
        graph = build().compile(checkpointer=saver)
        saver.register_graph(graph)
        cfg: Any = {"configurable": {"thread_id": "t"}}
        with pytest.raises(SyncCallOnEventLoop):
            graph.invoke({"messages": [HumanMessage("hi", id="h1")]}, cfg)
        # from a worker thread the same call works while the loop keeps running
        result = await asyncio.to_thread(
            graph.invoke, {"messages": [HumanMessage("hi", id="h1")]}, cfg
        )
        assert [i.value["question"] for i in result["__interrupt__"]] == ["approve?"]
