"""Fan-out branches run concurrently, each saved on its own; joins wait; order is documented."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Annotated, Any

import pytest
from pydantic import Field

from forkpoint import (
    Checkpoint,
    GraphState,
    HistoryCheckpointer,
    Merge,
    Next,
    NodeFailed,
    Reducer,
    Runner,
    StateSchema,
)
from forkpoint.runner import INPUT_NODE
from tests.conftest import Factory
from tests.runner.graphs import FAN_EDGES, Doc, logging_node


@pytest.fixture
async def cp(make_checkpointer: Factory) -> HistoryCheckpointer[Doc]:
    return await make_checkpointer(Doc)


async def _saved(cp: HistoryCheckpointer[Any], thread_id: str, step: int) -> None:
    """Wait (yielding) until the thread's latest checkpoint is at ``step`` or later."""
    while True:
        latest = await cp.list_checkpoints(thread_id, newest_first=True, limit=1)
        if latest and latest[0].step >= step:
            return
        await asyncio.sleep(0)


def _gauge() -> tuple[list[int], Any]:
    """[running now, most at once] and a context-manager-like pair of callbacks."""
    level = [0, 0]

    async def inside(turns: int) -> None:
        level[0] += 1
        level[1] = max(level[1], level[0])
        for _ in range(turns):
            await asyncio.sleep(0)
        level[0] -= 1

    return level, inside


async def test_branches_run_concurrently_up_to_max_concurrency(
    make_checkpointer: Factory,
) -> None:
    for limit, expected in [(8, 3), (2, 2), (1, 1)]:
        cp = await make_checkpointer(Doc)
        level, inside = _gauge()

        async def fan(state: Doc) -> Next:
            return Next(["r1", "r2", "r3"])

        def reader(name: str, inside: Any = inside) -> Any:
            async def read(state: Doc) -> dict[str, Any]:
                await inside(5)
                return {"log": [name]}

            return read

        runner = Runner(
            cp,
            nodes={"fan": fan, **{n: reader(n) for n in ("r1", "r2", "r3")}},
            entry="fan",
            max_concurrency=limit,
        )
        result = await runner.run(f"t{limit}", Doc())
        assert result.done
        assert sorted(result.state.log) == ["r1", "r2", "r3"]
        assert level[1] == expected, (limit, level)
        assert len(await cp.list_checkpoints(f"t{limit}")) == 5  # input, fan, one per branch


class Tally(StateSchema):
    """Order-independent reducers only: a merged dict of distinct keys and a sum."""

    found: Annotated[dict[str, str], Merge] = Field(default_factory=dict)
    total: Annotated[int, Reducer(lambda a, b: a + b)] = 0
    joined: str = ""


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_the_result_is_the_same_for_every_completion_order(
    make_checkpointer: Factory, order: tuple[int, ...]
) -> None:
    cp = await make_checkpointer(Tally)

    async def fan(state: Tally) -> Next:
        return Next(["b0", "b1", "b2"])

    def branch(i: int) -> Any:
        async def run(state: Tally) -> dict[str, Any]:
            await _saved(cp, "t", 1 + order.index(i))  # the branches before it are saved
            return {"found": {f"b{i}": f"value {i}"}, "total": 10**i}

        return run

    async def join(state: Tally) -> dict[str, Any]:
        return {"joined": ",".join(sorted(state.found))}

    runner = Runner(
        cp,
        nodes={"fan": fan, "b0": branch(0), "b1": branch(1), "b2": branch(2), "join": join},
        entry="fan",
        edges={"b0": "join", "b1": "join", "b2": "join"},
    )
    result = await runner.run("t", Tally())
    # The branches really finished in this order (each saved as its own checkpoint)...
    assert result.executed == ("fan", *(f"b{i}" for i in order), "join")
    # ...and the state does not depend on it.
    assert result.state.model_dump() == {
        "found": {"b0": "value 0", "b1": "value 1", "b2": "value 2"},
        "total": 111,
        "joined": "b0,b1,b2",
    }


async def test_the_join_waits_for_every_branch_and_runs_once(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []

    async def slow_read_1(state: Doc) -> dict[str, Any]:
        runs.append("read_1")
        await _saved(cp, "t", 4)  # finishes after read_2 and read_3 are saved
        return {"log": ["read_1"]}

    async def read_3(state: Doc) -> dict[str, Any]:
        await _saved(cp, "t", 3)
        runs.append("read_3")
        return {"log": ["read_3"]}

    graph_nodes = {
        "plan": logging_node("plan", runs.append),
        "search": _search(runs),
        "read_1": slow_read_1,
        "read_2": logging_node("read_2", runs.append),
        "read_3": read_3,
        "draft": logging_node("draft", runs.append),
        "publish": logging_node("publish", runs.append),
    }
    runner = Runner(
        cp,
        nodes=graph_nodes,
        entry="plan",
        edges=FAN_EDGES,
    )
    result = await runner.run("t", Doc())
    assert result.executed == ("plan", "search", "read_2", "read_3", "read_1", "draft", "publish")
    assert Counter(runs)["draft"] == 1
    history = []
    for meta in await cp.list_checkpoints("t"):
        full = await cp.get("t", meta.step)
        assert full is not None
        history.append((full.node, full.queue, full.metadata.get("wave")))
    assert history == [
        (INPUT_NODE, [("plan", 0)], None),
        ("plan", [("search", 0)], None),
        ("search", [("read_1", 1), ("read_2", 2), ("read_3", 3)], 3),
        ("read_2", [("read_1", 1), ("read_3", 3), ("draft", 2)], 2),
        ("read_3", [("read_1", 1), ("draft", 2)], 1),
        ("read_1", [("draft", 2)], None),
        ("draft", [("publish", 2)], None),
        ("publish", [], None),
    ]
    # draft saw every note, in the order the branches finished
    assert result.state.log == ["plan", "search", "read_2", "read_3", "read_1", "draft", "publish"]


def _search(runs: list[str]) -> Any:
    async def search(state: Doc) -> Next:
        runs.append("search")
        return Next(["read_1", "read_2", "read_3"], update={"log": ["search"]})

    return search


async def test_a_queue_without_a_wave_is_resumed_first_in_first_out(
    cp: HistoryCheckpointer[Doc],
) -> None:
    """A queue saved by a sequential runner: the join must not start beside the reads."""
    runs: list[str] = []
    await cp.save(
        Checkpoint(
            thread_id="t",
            state=GraphState(data=Doc(log=["read_1"])),
            step=3,
            node="read_1",
            queue=[("read_2", 2), ("read_3", 3), ("draft", 1)],
        )
    )
    level, inside = _gauge()

    def node(name: str) -> Any:
        async def run(state: Doc) -> dict[str, Any]:
            runs.append(name)
            await inside(3)
            return {"log": [name]}

        return run

    runner = Runner(
        cp,
        nodes={n: node(n) for n in ("read_2", "read_3", "draft")},
        entry="read_2",
        edges={"read_2": "draft", "read_3": "draft"},
    )
    result = await runner.resume("t")
    assert runs == ["read_2", "read_3", "draft"]
    assert level[1] == 1
    assert result.state.log == ["read_1", "read_2", "read_3", "draft"]


async def test_a_failing_branch_lets_the_others_finish_and_resume_reruns_only_it(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    broken = [True]

    async def fan(state: Doc) -> Next:
        return Next(["ok_1", "bad", "ok_2"])

    async def bad(state: Doc) -> dict[str, Any]:
        runs.append("bad")
        if broken[0]:
            raise ValueError("bad branch")
        return {"log": ["bad"]}

    async def slow(state: Doc) -> dict[str, Any]:
        for _ in range(5):
            await asyncio.sleep(0)
        runs.append("ok_2")
        return {"log": ["ok_2"]}

    runner = Runner(
        cp,
        nodes={"fan": fan, "ok_1": logging_node("ok_1", runs.append), "bad": bad, "ok_2": slow},
        entry="fan",
    )
    with pytest.raises(NodeFailed, match="bad branch"):
        await runner.run("t", Doc())
    latest = await cp.load("t")
    assert latest is not None
    assert latest.queue == [("bad", 2)]
    assert sorted(latest.state.data.log) == ["ok_1", "ok_2"]
    broken[0] = False
    result = await runner.resume("t")
    assert result.executed == ("bad",)
    assert Counter(runs) == {"ok_1": 1, "ok_2": 1, "bad": 2}


async def test_an_interrupt_in_one_branch_waits_for_the_others(
    cp: HistoryCheckpointer[Doc],
) -> None:
    async def fan(state: Doc) -> Next:
        return Next(["ask", "work"])

    async def ask(state: Doc, ctx: Any) -> dict[str, Any]:
        return {"decision": str(ctx.interrupt("ok?"))}

    async def work(state: Doc) -> dict[str, Any]:
        for _ in range(5):
            await asyncio.sleep(0)
        return {"log": ["work"]}

    runner = Runner(cp, nodes={"fan": fan, "ask": ask, "work": work}, entry="fan")
    paused = await runner.run("t", Doc())
    assert (paused.interrupt, paused.waiting, paused.payload) == ("node", ("ask", 1), "ok?")
    assert paused.executed == ("fan", "work")
    assert paused.state.log == ["work"]
    done = await runner.resume("t", answer="fine")
    assert done.done
    assert (done.state.decision, done.executed) == ("fine", ("ask",))


async def test_a_static_pause_inside_a_wave_lets_the_running_branches_finish(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []

    async def fan(state: Doc) -> Next:
        return Next(["work", "approve", "more"])

    runner = Runner(
        cp,
        nodes={
            "fan": fan,
            **{n: logging_node(n, runs.append) for n in ("work", "approve", "more")},
        },
        entry="fan",
        interrupt_before=["approve"],
    )
    paused = await runner.run("t", Doc())
    assert (paused.status, paused.interrupt, paused.next_node) == (
        "interrupted",
        "before",
        "approve",
    )
    assert runs == ["work"]  # "more" waits behind the pause: nothing starts after it
    assert paused.queue == (("approve", 2), ("more", 3))
    info = await cp.thread_info("t")
    assert info is not None
    assert info.status == "interrupted"
    done = await runner.resume("t")
    assert done.done
    assert sorted(done.executed) == ["approve", "more"]
    assert sorted(runs) == ["approve", "more", "work"]
