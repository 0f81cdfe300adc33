"""A graph with LangGraph's ``DeltaChannel`` (stored as writes plus periodic snapshots)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph.channels.delta", reason="this langgraph has no DeltaChannel")

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from forkpoint.langgraph import ForkpointSaver


def extend(state: list[str] | None, writes: list[list[str]]) -> list[str]:
    out = list(state or [])
    for write in writes:
        out.extend(write)
    return out


class State(TypedDict):
    items: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=3)]


def step(state: State) -> dict[str, Any]:
    return {"items": [f"made {len(state.get('items') or [])}"]}


def graph(saver: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder.compile(checkpointer=saver)


def run(saver: Any) -> tuple[list[Any], list[Any]]:
    g = graph(saver)
    config: Any = {"configurable": {"thread_id": "t"}}
    outs = [g.invoke({"items": [f"in {i}"]}, config) for i in range(10)]
    history = [s.values for s in g.get_state_history(config)]
    return outs, history


def test_a_delta_channel_reads_back_as_on_langgraphs_own_saver(tmp_path: Path) -> None:
    expected = run(InMemorySaver())
    with ForkpointSaver.from_conn_string(tmp_path / "delta.db") as saver:
        assert run(saver) == expected
    assert expected[0][-1]["items"][-1] == "made 19"


class Mixed(TypedDict, total=False):
    items: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=4)]
    messages: Annotated[list[AnyMessage], add_messages]
    count: int


def left(state: Mixed) -> dict[str, Any]:
    return {"items": ["left"], "messages": [AIMessage(f"left {state.get('count', 0)}")]}


def right(state: Mixed) -> dict[str, Any]:
    return {"items": ["right"], "count": state.get("count", 0) + 1}


def mixed(saver: Any) -> Any:
    builder = StateGraph(Mixed)
    builder.add_node("left", left)
    builder.add_node("right", right)
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    builder.add_edge("left", END)
    builder.add_edge("right", END)
    return builder.compile(checkpointer=saver)


async def test_delta_history_in_one_read_equals_langgraphs_walk(tmp_path: Path) -> None:
    """Every checkpoint, parallel writers, a list channel, a channel never stored."""
    async with ForkpointSaver.from_conn_string(tmp_path / "mixed.db") as saver:
        graph = mixed(saver)
        config: Any = {"configurable": {"thread_id": "t"}}
        for i in range(9):
            await graph.ainvoke({"items": [f"in {i}"], "messages": [HumanMessage(f"q{i}")]}, config)
        fork = [s async for s in graph.aget_state_history(config)][5].config
        await graph.aupdate_state(fork, {"items": ["forked"]}, as_node="left")
        channels = ["items", "messages", "count", "never"]
        checked = 0
        async for snapshot in graph.aget_state_history(config):
            want = await BaseCheckpointSaver.aget_delta_channel_history(
                saver, config=snapshot.config, channels=channels
            )
            got = await saver.aget_delta_channel_history(config=snapshot.config, channels=channels)
            assert got == want
            sync = await asyncio.to_thread(
                saver.get_delta_channel_history, config=snapshot.config, channels=channels
            )
            assert sync == want
            checked += 1
        assert checked > 20
        latest = await saver.aget_delta_channel_history(config=config, channels=["items"])
        assert latest == await BaseCheckpointSaver.aget_delta_channel_history(
            saver, config=config, channels=["items"]
        )
        missing: Any = {"configurable": {"thread_id": "nobody", "checkpoint_ns": ""}}
        assert await saver.aget_delta_channel_history(config=missing, channels=["items"]) == {
            "items": {"writes": []}
        }
        assert await saver.aget_delta_channel_history(config=config, channels=[]) == {}
