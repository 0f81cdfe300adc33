"""List channels (messages) are stored element by element: each element once, versions share them."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip(
    "langgraph.checkpoint.sqlite", reason="langgraph-checkpoint-sqlite is not installed"
)

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from forkpoint.langgraph import ForkpointSaver


def config(thread: str, checkpoint_id: str | None = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def checkpoint(messages: list[Any], version: int) -> Checkpoint:
    cp = empty_checkpoint()
    cp["id"] = str(uuid6(clock_seq=-1))
    cp["channel_values"] = {"messages": messages}
    cp["channel_versions"] = {"messages": version}
    return cp


def count(db: str, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def message(i: int) -> Any:
    cls = HumanMessage if i % 2 == 0 else AIMessage
    return cls(f"message {i} " + "x" * 50, id=f"m{i}")


async def grow(saver: ForkpointSaver, thread: str, turns: int, *, start: Any = None) -> list[Any]:
    """A thread whose messages grow by one per checkpoint; the stored configs."""
    parent = start or config(thread)
    messages: list[Any] = []
    stored: list[Any] = []
    for i in range(turns):
        messages = [*messages, message(i)]
        parent = await saver.aput(
            parent, checkpoint(messages, i + 1), {"step": i}, {"messages": i + 1}
        )
        stored.append(parent)
    return stored


@pytest.fixture
async def saver(tmp_path: Path) -> Any:
    async with ForkpointSaver.from_conn_string(str(tmp_path / "lists.db")) as s:
        yield s


@pytest.fixture
async def other(saver: ForkpointSaver) -> Any:
    """A second saver on the same file, remembering lists of its own (another process's)."""
    async with ForkpointSaver.from_conn_string(saver.path) as s:
        yield s


async def assert_fresh_reads(path: str, *expected: tuple[Any, list[Any]]) -> None:
    """A saver with nothing cached reads each ``(config, messages)`` back exactly."""
    async with ForkpointSaver.from_conn_string(path) as fresh:
        for conf, want in expected:
            tup = await fresh.aget_tuple(conf)
            assert tup is not None
            assert tup.checkpoint["channel_values"]["messages"] == want


async def test_each_message_is_stored_once_and_every_version_reads_back(
    saver: ForkpointSaver,
) -> None:
    stored = await grow(saver, "t", 40)
    assert count(saver.path, "SELECT count(*) FROM lg_list_items") == 40  # each message once
    for i, conf in enumerate(stored):
        tup = await saver.aget_tuple(conf)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["messages"] == [message(j) for j in range(i + 1)]
    listed = [t.checkpoint["channel_values"]["messages"] async for t in saver.alist(config("t"))]
    assert [len(m) for m in listed] == list(range(40, 0, -1))


async def test_a_branch_from_an_old_version_starts_its_own_list(saver: ForkpointSaver) -> None:
    stored = await grow(saver, "t", 20)
    old = stored[11]  # 12 messages
    branch = [*(message(j) for j in range(12)), HumanMessage("a different turn", id="b")]
    made = await saver.aput(old, checkpoint(branch, 99), {"step": 12}, {"messages": 99})
    more = [*branch, AIMessage("and on", id="c")]
    made2 = await saver.aput(made, checkpoint(more, 100), {"step": 13}, {"messages": 100})
    for conf, want in (
        (made, branch),
        (made2, more),
        (stored[-1], [message(j) for j in range(20)]),
    ):
        tup = await saver.aget_tuple(conf)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["messages"] == want


async def test_an_element_changed_in_place_is_stored_as_changed(saver: ForkpointSaver) -> None:
    messages = [message(j) for j in range(10)]
    first = await saver.aput(config("t"), checkpoint(messages, 1), {}, {"messages": 1})
    messages[3].content = "edited in place"
    messages.append(message(10))
    second = await saver.aput(first, checkpoint(messages, 2), {}, {"messages": 2})
    a = await saver.aget_tuple(first)
    b = await saver.aget_tuple(second)
    assert a is not None
    assert b is not None
    assert a.checkpoint["channel_values"]["messages"][3].content.startswith("message 3")
    assert b.checkpoint["channel_values"]["messages"][3].content == "edited in place"


async def test_deleting_the_newest_run_then_appending_again_stays_exact(
    saver: ForkpointSaver,
) -> None:
    stored = await grow(saver, "t", 15)
    await saver.aput(
        stored[-1],
        checkpoint([*(message(j) for j in range(15)), message(15)], 16),
        {"step": 15, "run_id": "late"},
        {"messages": 16},
    )
    await saver.adelete_for_runs(["late"])
    assert count(saver.path, "SELECT count(*) FROM lg_list_items") == 15  # the 16th is gone
    other = [*(message(j) for j in range(15)), HumanMessage("instead", id="i")]
    made = await saver.aput(stored[-1], checkpoint(other, 17), {"step": 15}, {"messages": 17})
    tup = await saver.aget_tuple(made)
    assert tup is not None
    assert tup.checkpoint["channel_values"]["messages"] == other
    old = await saver.aget_tuple(stored[-1])
    assert old is not None
    assert old.checkpoint["channel_values"]["messages"] == [message(j) for j in range(15)]


async def test_prune_and_copy_keep_list_values_whole(saver: ForkpointSaver) -> None:
    await grow(saver, "t", 12)
    await saver.acopy_thread("t", "copy")
    await saver.aprune(["t"], strategy="keep_latest")
    for thread in ("t", "copy"):
        tup = await saver.aget_tuple(config(thread))
        assert tup is not None
        assert tup.checkpoint["channel_values"]["messages"] == [message(j) for j in range(12)]
    await saver.aprune(["copy"], strategy="delete")
    assert count(saver.path, "SELECT count(*) FROM lg_list_items WHERE thread_id = 'copy'") == 0


async def test_two_savers_appending_to_one_thread_stay_exact(
    saver: ForkpointSaver, other: ForkpointSaver
) -> None:
    """Each saver remembers the last list it wrote; the other's appends make that stale."""
    parent = config("t")
    messages: list[Any] = []
    for i in range(20):
        messages = [*messages, message(i)]
        writer = saver if i % 3 else other
        parent = await writer.aput(parent, checkpoint(messages, i + 1), {}, {"messages": i + 1})
    for reader in (saver, other):
        history = [t async for t in reader.alist(config("t"))]
        assert [t.checkpoint["channel_values"]["messages"] for t in history] == [
            [message(j) for j in range(n)] for n in range(20, 0, -1)
        ]


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def chat_graph() -> Any:
    def reply(state: Chat) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage("a" * 300, id=f"a{n}")]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder


async def test_a_long_conversation_file_is_a_fraction_of_async_sqlite_saver(tmp_path: Path) -> None:
    """100 turns: LangGraph's file holds every message once per checkpoint, forkpoint's once."""
    results = {}
    for name, opener in (
        ("theirs", AsyncSqliteSaver.from_conn_string),
        ("ours", ForkpointSaver.from_conn_string),
    ):
        path = str(tmp_path / f"{name}.db")
        async with opener(path) as saver:
            graph = chat_graph().compile(checkpointer=saver)
            cfg: Any = {"configurable": {"thread_id": "chat"}}
            for turn in range(100):
                out = await graph.ainvoke(
                    {"messages": [HumanMessage("h" * 300, id=f"h{turn}")]}, cfg
                )
            results[name] = (out["messages"], os.path.getsize(path))
    assert results["ours"][0] == results["theirs"][0]
    assert results["ours"][1] * 10 < results["theirs"][1]


async def test_re_appending_after_the_list_was_trimmed_starts_a_new_list(
    saver: ForkpointSaver,
) -> None:
    """The saver remembers 16 items; after the trim the list ends at 15, so it cannot append."""
    stored = await grow(saver, "t", 15)
    sixteen = [*(message(j) for j in range(15)), message(15)]
    meta: Any = {"step": 15, "run_id": "late"}
    await saver.aput(stored[-1], checkpoint(sixteen, 16), meta, {"messages": 16})
    await saver.adelete_for_runs(["late"])
    seventeen = [*sixteen, message(16)]
    made = await saver.aput(stored[-1], checkpoint(seventeen, 17), {"step": 16}, {"messages": 17})
    tup = await saver.aget_tuple(made)
    assert tup is not None
    assert tup.checkpoint["channel_values"]["messages"] == seventeen


async def test_concurrent_branches_from_one_version_do_not_share_an_end(
    saver: ForkpointSaver,
) -> None:
    stored = await grow(saver, "t", 10)
    base = [message(j) for j in range(10)]
    branches = [[*base, HumanMessage(f"branch {b}", id=f"b{b}")] for b in range(3)]
    made = await asyncio.gather(
        *(
            saver.aput(stored[-1], checkpoint(value, 20 + b), {"step": 10}, {"messages": 20 + b})
            for b, value in enumerate(branches)
        )
    )
    for conf, want in zip(made, branches, strict=True):
        tup = await saver.aget_tuple(conf)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["messages"] == want


@pytest.mark.parametrize("tenth", [90, 9], ids=["another-10th", "the-same-10th"])
async def test_a_stale_saver_does_not_append_to_a_list_another_cut_and_regrew(
    saver: ForkpointSaver, other: ForkpointSaver, tenth: int
) -> None:
    """One saver remembers a list ending at 10; the other cuts it to 8 and appends another 9th
    and a 10th: with the same 10th, the length and the last element are what the stale
    saver saw, the 9th is not."""
    parent = config("t")
    mine: list[Any] = []
    for i in range(10):
        mine = [*mine, message(i)]
        run: Any = {"run_id": "late"} if i >= 8 else {}
        parent = await saver.aput(parent, checkpoint(mine, i + 1), run, {"messages": i + 1})
    await other.adelete_for_runs(["late"])
    assert count(saver.path, "SELECT count(*) FROM lg_list_items") == 8
    kept = await other.aget_tuple(config("t"))
    assert kept is not None
    theirs = [*kept.checkpoint["channel_values"]["messages"], message(80), message(tenth)]
    regrown = await other.aput(kept.config, checkpoint(theirs, 20), {}, {"messages": 20})
    assert count(saver.path, "SELECT count(*) FROM lg_list_items") == 10
    mine = [*mine, message(10)]
    made = await saver.aput(parent, checkpoint(mine, 30), {}, {"messages": 30})
    for reader in (saver, other):
        tup = await reader.aget_tuple(made)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["messages"] == mine
    await assert_fresh_reads(saver.path, (made, mine), (regrown, theirs))


async def test_a_version_used_again_never_takes_over_a_list_others_extend(
    saver: ForkpointSaver,
) -> None:
    """The list is named after the value that started it, and outlives it.

    Its first checkpoint deleted, the list lives on in the one that extended
    it; a later checkpoint using that first version again (callers may choose
    versions) must start a list of its own, not rewrite that one.
    """
    first = [message(j) for j in range(8)]
    one = await saver.aput(config("t"), checkpoint(first, 1), {"run_id": "r1"}, {"messages": 1})
    second = [*first, message(8)]
    two = await saver.aput(one, checkpoint(second, 2), {"run_id": "r2"}, {"messages": 2})
    await saver.adelete_for_runs(["r1"])
    other = [HumanMessage(f"other {j}", id=f"o{j}") for j in range(8)]
    again = await saver.aput(config("t"), checkpoint(other, 1), {}, {"messages": 1})
    await assert_fresh_reads(saver.path, (two, second), (again, other))


async def test_a_stale_saver_does_not_append_to_a_list_reborn_in_a_deleted_thread(
    saver: ForkpointSaver, other: ForkpointSaver
) -> None:
    """The other saver deletes the thread and writes it again with the same versions: a new
    list of the same length and last element must not be the list the stale saver saw."""
    mine = [message(j) for j in range(10)]
    parent = await saver.aput(config("t"), checkpoint(mine, 1), {}, {"messages": 1})
    await other.adelete_thread("t")
    theirs = [*(HumanMessage(f"other {j}", id=f"o{j}") for j in range(9)), message(9)]
    reborn = await other.aput(config("t"), checkpoint(theirs, 1), {}, {"messages": 1})
    mine = [*mine, message(10)]
    made = await saver.aput(parent, checkpoint(mine, 2), {}, {"messages": 2})
    await assert_fresh_reads(saver.path, (made, mine), (reborn, theirs))


async def test_a_stale_saver_does_not_append_to_a_list_copied_in_from_another_thread(
    saver: ForkpointSaver, other: ForkpointSaver
) -> None:
    """A copy and its source extend one list differently (another 11th, the same 12th); the
    copy is then deleted and copied again: a list ending as the stale saver saw it, under
    the id it saw, with another 11th element."""
    base = [message(j) for j in range(10)]
    source = await saver.aput(config("s"), checkpoint(base, 1), {}, {"messages": 1})
    await saver.acopy_thread("s", "t")
    x, y, z = HumanMessage("x", id="x"), HumanMessage("y", id="y"), message(12)
    await saver.aput(source, checkpoint([*base, x, z], 2), {}, {"messages": 2})
    copied = await other.aget_tuple(config("t"))
    assert copied is not None
    mine = [*copied.checkpoint["channel_values"]["messages"], y, z]
    parent = await other.aput(copied.config, checkpoint(mine, 2), {}, {"messages": 2})
    await saver.adelete_thread("t")
    await saver.acopy_thread("s", "t")
    mine = [*mine, message(13)]
    made = await other.aput(parent, checkpoint(mine, 3), {}, {"messages": 3})
    await assert_fresh_reads(saver.path, (made, mine))


async def test_a_checkpoint_put_again_under_its_id_leaves_nothing_of_its_old_self(
    saver: ForkpointSaver,
) -> None:
    first = await saver.aput(config("t"), checkpoint([message(0)], 1), {}, {"messages": 1})
    again: Checkpoint = checkpoint([], 2)
    again["id"] = first["configurable"]["checkpoint_id"]
    for n in range(5):  # the same id, five different values
        again["channel_values"] = {"messages": [message(100 * n + j) for j in range(10)]}
        stored = await saver.aput(config("t"), again, {}, {"messages": 2})
    assert stored == first
    assert count(saver.path, "SELECT count(*) FROM lg_checkpoints") == 1
    assert count(saver.path, "SELECT count(*) FROM lg_blobs") == 1
    assert count(saver.path, "SELECT count(*) FROM lg_list_items") == 10
    await assert_fresh_reads(saver.path, (first, [message(400 + j) for j in range(10)]))
