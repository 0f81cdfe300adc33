"""``ForkpointSaver(keep_last=N)``: each put keeps only its namespace's newest N checkpoints."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed")

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from forkpoint.errors import InvalidInput
from forkpoint.langgraph import ForkpointSaver


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def answer(state: Chat) -> dict[str, Any]:
    return {"messages": [AIMessage(f"answer {len(state['messages'])}")]}


def chat() -> Any:
    builder = StateGraph(Chat)
    builder.add_node("reply", answer)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder


def rows(path: str, sql: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_conversation_keeps_its_newest_checkpoints_and_nothing_they_do_not_use(
    tmp_path: Path,
) -> None:
    with ForkpointSaver.from_conn_string(tmp_path / "keep.db", keep_last=4) as saver:
        graph = chat().compile(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": "t"}}
        for i in range(12):
            graph.invoke({"messages": [HumanMessage(f"question {i}", id=f"q{i}")]}, config)
        other: Any = {"configurable": {"thread_id": "other"}}
        graph.invoke({"messages": [HumanMessage("hello", id="h")]}, other)
        history = list(graph.get_state_history(config))
        assert len(history) == 4
        assert [m.content for m in history[0].values["messages"]][-2:] == [
            "question 11",
            "answer 23",
        ]
        assert len(history[0].values["messages"]) == 24
        assert len(list(graph.get_state_history(other))) == 3  # under the limit: untouched
        path = saver.path
        kept = {row[0] for row in rows(path, "SELECT checkpoint_id FROM lg_checkpoints")}
        assert len(kept) == 7
        # no write, value or list element is left that no kept checkpoint uses
        assert rows(
            path,
            "SELECT count(*) FROM lg_writes WHERE checkpoint_id NOT IN "
            "(SELECT checkpoint_id FROM lg_checkpoints)",
        ) == [(0,)]
        used = rows(
            path,
            "SELECT count(*) FROM lg_blobs b WHERE NOT EXISTS (SELECT 1 FROM lg_checkpoints c, "
            "json_each(c.channels) j WHERE c.thread_id = b.thread_id AND "
            "c.checkpoint_ns = b.checkpoint_ns AND j.key = b.channel AND j.value = b.key)",
        )
        assert used == [(0,)]
        assert rows(path, "SELECT count(*) FROM lg_list_items WHERE thread_id = 't'") == [(24,)]
        # and the thread goes on from its latest checkpoint
        out = graph.invoke({"messages": [HumanMessage("more", id="m")]}, config)
        assert len(out["messages"]) == 26


def checkpoint(version: int, value: str) -> Any:
    cp = empty_checkpoint()
    cp["id"] = str(uuid6(clock_seq=-1))
    cp["channel_values"] = {"v": value}
    cp["channel_versions"] = {"v": version}
    return cp


async def test_each_namespace_keeps_its_own_newest(tmp_path: Path) -> None:
    async with ForkpointSaver.from_conn_string(tmp_path / "ns.db", keep_last=2) as saver:
        for ns in ("", "child:1"):
            parent: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ns}}
            for i in range(5):
                parent = await saver.aput(parent, checkpoint(i + 1, f"{ns}{i}"), {}, {"v": i + 1})
        for ns in ("", "child:1"):
            listed = [
                t.checkpoint["channel_values"]["v"]
                async for t in saver.alist(
                    {"configurable": {"thread_id": "t", "checkpoint_ns": ns}}
                )
            ]
            assert listed == [f"{ns}4", f"{ns}3"]


@pytest.mark.parametrize("bad", [0, -1, "3", True, 2.0])
def test_keep_last_must_be_a_positive_int(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidInput, match="keep_last"):
        ForkpointSaver(tmp_path / "bad.db", keep_last=bad)
