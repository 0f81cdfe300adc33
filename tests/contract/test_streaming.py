"""Listings read from rows (queue, latest node, status) and the streaming iterators, on every backend."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field

from forkpoint import (
    INTERRUPT_KEY,
    Append,
    Checkpoint,
    CheckpointerClosed,
    GraphState,
    HistoryCheckpointer,
    InvalidInput,
    StateSchema,
)
from tests.conftest import Counter, Factory, make_cp


class Chat(StateSchema):
    """A state that grows by one message per step: SQLite stores old steps as deltas."""

    messages: Annotated[list[str], Append] = Field(default_factory=list)


def chat_cp(thread_id: str, step: int, state: Chat) -> Checkpoint[Chat]:
    return Checkpoint[Chat](
        thread_id=thread_id, state=GraphState[Chat](data=state), step=step, node=f"n{step}"
    )


def grow(steps: int) -> list[Chat]:
    out, state = [], Chat()
    for step in range(steps):
        state = Chat.apply(state, {"messages": [f"message {step}: " + "x" * 300]})
        out.append(state)
    return out


async def _collect(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


# --- what listings carry, read from rows -------------------------------------------------------


async def test_listings_carry_the_queue(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await checkpointer.save(make_cp("t", 0, queue=[("a", 0), ("b", 1)]))
    await checkpointer.save(make_cp("t", 1))
    listed = await checkpointer.list_checkpoints("t")
    assert [m.queue for m in listed] == [[("a", 0), ("b", 1)], []]
    streamed = await _collect(checkpointer.iter_checkpoints("t"))
    assert [m.queue for m in streamed] == [[("a", 0), ("b", 1)], []]


async def test_thread_status_and_latest_node(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await checkpointer.save(make_cp("done", 0, node="last"))
    await checkpointer.save(make_cp("running", 0, node="first", queue=[("next", 0)]))
    await checkpointer.save(
        make_cp("paused", 0, node="ask", queue=[("tool", 0)], metadata={INTERRUPT_KEY: "before"})
    )
    # The marker counts on the latest checkpoint only: an older paused step does not.
    await checkpointer.save(
        make_cp("resumed", 0, queue=[("x", 0)], metadata={"interrupt": "after"})
    )
    await checkpointer.save(make_cp("resumed", 1, node="x", queue=[("y", 0)]))
    # An empty queue is done, whatever the metadata says.
    await checkpointer.save(make_cp("finished", 0, node="end", metadata={"interrupt": "after"}))
    infos = {i.thread_id: i for i in await checkpointer.list_threads()}
    assert {t: (i.latest_node, i.status) for t, i in infos.items()} == {
        "done": ("last", "done"),
        "running": ("first", "running"),
        "paused": ("ask", "interrupted"),
        "resumed": ("x", "running"),
        "finished": ("end", "done"),
    }
    one = await checkpointer.thread_info("paused")
    assert one is not None
    assert (one.latest_node, one.status) == ("ask", "interrupted")
    fork = await checkpointer.fork("running", 0, new_thread_id="f")
    forks = await checkpointer.list_forks("running")
    assert [(i.thread_id, i.latest_node, i.status) for i in forks] == [(fork, "first", "running")]


# --- iter_threads / iter_checkpoints -----------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 3, 7, 256])
async def test_iter_threads_yields_every_thread_once_in_order(
    checkpointer: HistoryCheckpointer[Counter], page_size: int
) -> None:
    for i in range(7):
        await checkpointer.save(make_cp(f"t{i}", 0), thread_metadata={"even": i % 2 == 0})
    got = await _collect(checkpointer.iter_threads(page_size=page_size))
    assert [i.thread_id for i in got] == [f"t{i}" for i in range(7)]
    assert got == await checkpointer.list_threads()
    even = await _collect(checkpointer.iter_threads(filter={"even": True}, page_size=page_size))
    assert [i.thread_id for i in even] == ["t0", "t2", "t4", "t6"]


@pytest.mark.parametrize("page_size", [1, 4, 10, 256])
@pytest.mark.parametrize("newest_first", [False, True])
async def test_iter_checkpoints_pages_through_a_thread(
    checkpointer: HistoryCheckpointer[Counter], page_size: int, newest_first: bool
) -> None:
    for step in range(0, 20, 2):
        await checkpointer.save(make_cp("t", step, metadata={"k": step % 4}))
    await checkpointer.save(make_cp("other", 0))
    got = await _collect(
        checkpointer.iter_checkpoints("t", newest_first=newest_first, page_size=page_size)
    )
    expected = list(range(0, 20, 2))
    assert [m.step for m in got] == (expected[::-1] if newest_first else expected)
    assert got == await checkpointer.list_checkpoints("t", newest_first=newest_first)
    matching = await _collect(
        checkpointer.iter_checkpoints("t", filter={"k": 0}, page_size=page_size)
    )
    assert [m.step for m in matching] == [0, 4, 8, 12, 16]
    assert await _collect(checkpointer.iter_checkpoints("nope")) == []


async def test_iterators_check_arguments_when_called(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(InvalidInput):
            checkpointer.iter_threads(page_size=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            checkpointer.iter_checkpoints("t", page_size=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        checkpointer.iter_checkpoints("")
    with pytest.raises(InvalidInput):
        checkpointer.iter_threads(filter={"k": object()})
    with pytest.raises(InvalidInput):
        checkpointer.iter_states("t", before=-1)
    with pytest.raises(InvalidInput):
        checkpointer.iter_states(7)  # type: ignore[arg-type]


async def test_iterators_after_close_raise_closed(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer()
    for i in range(3):
        await cp.save(make_cp(f"t{i}", 0))
    threads = cp.iter_threads(page_size=1)
    assert (await anext(threads)).thread_id == "t0"
    await cp.close()
    with pytest.raises(CheckpointerClosed):
        await anext(threads)
    with pytest.raises(CheckpointerClosed):
        cp.iter_states("t0")


# --- iter_states ------------------------------------------------------------------------------


async def test_iter_states_returns_every_step_newest_first(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer(Chat)
    states = grow(40)
    for step, state in enumerate(states):
        await cp.save(chat_cp("t", step * 2, state))
    got = await _collect(cp.iter_states("t"))
    assert [c.step for c in got] == [s * 2 for s in reversed(range(40))]
    assert [c.state.data for c in got] == states[::-1]
    for c in got[::7]:  # exactly what get() returns, every field
        assert c == await cp.get("t", c.step)
    below = await _collect(cp.iter_states("t", before=31))  # 31 is no step: starts at 30
    assert [c.step for c in below] == [s * 2 for s in reversed(range(16))]
    assert [c.state.data for c in below] == states[:16][::-1]
    assert await _collect(cp.iter_states("t", before=0)) == []
    assert await _collect(cp.iter_states("nope")) == []


async def test_iter_states_of_a_pruned_and_forked_thread(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer(Chat)
    states = grow(30)
    for step, state in enumerate(states):
        await cp.save(chat_cp("t", step, state))
    await cp.prune("t", keep_last=12)
    fork = await cp.fork("t", 25, new_thread_id="f")
    assert [c.state.data for c in await _collect(cp.iter_states("t"))] == states[18:][::-1]
    assert [c.state.data for c in await _collect(cp.iter_states(fork))] == states[18:26][::-1]
