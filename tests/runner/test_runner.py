"""The runner's semantics, on every backend: checkpoints per node, resume, interrupts, fork."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import pytest

from forkpoint import (
    CheckpointNotFound,
    HistoryCheckpointer,
    InvalidGraph,
    InvalidInput,
    InvalidNodeResult,
    Next,
    NodeFailed,
    Runner,
    StepConflict,
    ThreadAlreadyStarted,
    ThreadFinished,
)
from forkpoint.runner import INPUT_NODE, UPDATE_NODE
from tests.conftest import Factory
from tests.runner.graphs import Doc, linear, list_recorder, logging_node, research


async def _history(cp: HistoryCheckpointer[Doc], thread: str) -> list[tuple[int, str, list[Any]]]:
    out = []
    for meta in await cp.list_checkpoints(thread):
        full = await cp.get(thread, meta.step)
        assert full is not None
        out.append((full.step, full.node, list(full.queue)))
    return out


@pytest.fixture
async def cp(make_checkpointer: Factory) -> HistoryCheckpointer[Doc]:
    return await make_checkpointer(Doc)


async def test_run_saves_one_checkpoint_per_node(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []
    result = await linear(cp, list_recorder(runs)).run("t", {"topic": "x"})
    assert result.status == "done"
    assert result.done
    assert result.executed == ("a", "b", "c")
    assert result.state.log == ["a", "b", "c"]
    assert (result.step, result.node, result.queue) == (3, "c", ())
    assert await _history(cp, "t") == [
        (0, INPUT_NODE, [("a", 0)]),
        (1, "a", [("b", 0)]),
        (2, "b", [("c", 0)]),
        (3, "c", []),
    ]
    assert runs == ["a", "b", "c"]
    step2 = await cp.get("t", 2)
    assert step2 is not None
    assert step2.state.data.log == ["a", "b"]


async def test_fan_out_gives_paths_and_the_join_runs_once(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []
    result = await research(cp, list_recorder(runs)).run("t", {"topic": "x"})
    assert result.done
    assert runs == ["plan", "search", "read_1", "read_2", "read_3", "draft", "publish"]
    assert await _history(cp, "t") == [
        (0, INPUT_NODE, [("plan", 0)]),
        (1, "plan", [("search", 0)]),
        (2, "search", [("read_1", 1), ("read_2", 2), ("read_3", 3)]),
        (3, "read_1", [("read_2", 2), ("read_3", 3), ("draft", 1)]),
        (4, "read_2", [("read_3", 3), ("draft", 1)]),
        (5, "read_3", [("draft", 1)]),
        (6, "draft", [("publish", 1)]),
        (7, "publish", []),
    ]


async def test_router_loops_until_it_says_end(cp: HistoryCheckpointer[Doc]) -> None:
    async def inc(state: Doc) -> dict[str, Any]:
        return {"n": state.n + 1}

    async def done(state: Doc) -> dict[str, Any]:
        return {"log": [f"done at {state.n}"]}

    async def route(state: Doc) -> str:
        return "inc" if state.n < 3 else "done"

    runner = Runner(cp, nodes={"inc": inc, "done": done}, entry="inc", routers={"inc": route})
    result = await runner.run("t", Doc())
    assert result.executed == ("inc", "inc", "inc", "done")
    assert result.state.log == ["done at 3"]


async def test_next_overrides_the_static_edge(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []

    async def a(state: Doc) -> Next:
        runs.append("a")
        return Next("c", update={"log": ["a"]})

    runner = Runner(
        cp,
        nodes={"a": a, "b": logging_node("b", runs.append), "c": logging_node("c", runs.append)},
        entry="a",
        edges={"a": "b"},
    )
    assert (await runner.run("t", Doc())).executed == ("a", "c")
    assert runs == ["a", "c"]


async def test_finished_thread_says_so_and_writes_nothing(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []
    runner = linear(cp, list_recorder(runs))
    await runner.run("t", Doc())
    with pytest.raises(ThreadFinished) as info:
        await runner.resume("t")
    assert info.value.thread_id == "t"
    with pytest.raises(ThreadFinished):
        await runner.resume("t", update={"topic": "again"})
    with pytest.raises(ThreadAlreadyStarted):
        await runner.run("t", Doc())
    assert runs == ["a", "b", "c"]
    assert len(await cp.list_checkpoints("t")) == 4


async def test_resume_of_an_unknown_thread(cp: HistoryCheckpointer[Doc]) -> None:
    with pytest.raises(CheckpointNotFound):
        await linear(cp, list_recorder([])).resume("nobody")
    assert await cp.list_threads() == []


async def test_resume_after_a_node_failure_reruns_only_that_node(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    fail = [True]

    async def b(state: Doc) -> dict[str, Any]:
        runs.append("b")
        if fail[0]:
            raise RuntimeError("flaky")
        return {"log": ["b"]}

    runner = Runner(
        cp,
        nodes={"a": logging_node("a", runs.append), "b": b, "c": logging_node("c", runs.append)},
        entry="a",
        edges={"a": "b", "b": "c"},
    )
    with pytest.raises(NodeFailed, match="flaky") as info:
        await runner.run("t", Doc())
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.cause is info.value.__cause__
    assert (info.value.node, info.value.attempts) == ("b", 1)
    latest = await cp.load("t")
    assert latest is not None
    assert (latest.step, latest.node, latest.queue) == (1, "a", [("b", 0)])
    fail[0] = False
    result = await runner.resume("t")
    assert result.executed == ("b", "c")
    assert Counter(runs) == {"a": 1, "b": 2, "c": 1}
    assert result.state.log == ["a", "b", "c"]


async def test_interrupt_before_pauses_and_an_update_keeps_the_queue(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    runner = research(cp, list_recorder(runs), interrupt_before=["publish"])
    paused = await runner.run("t", {"topic": "x"})
    assert paused.status == "interrupted"
    assert paused.interrupt == "before"
    assert paused.next_node == "publish"
    assert "publish" not in runs
    latest = await cp.load("t")
    assert latest is not None
    assert latest.metadata == {"interrupt": "before"}
    assert latest.queue == [("publish", 1)]

    done = await runner.resume("t", update={"decision": "approve"})
    assert done.done
    assert done.executed == ("publish",)
    edited = await cp.get("t", paused.step + 1)
    assert edited is not None
    assert edited.node == UPDATE_NODE
    assert edited.queue == [("publish", 1)]  # the human's edit did not drop the pending work
    assert edited.state.data.decision == "approve"
    assert done.state.decision == "approve"
    assert runs.count("publish") == 1


async def test_interrupt_after_and_before_the_entry(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []
    runner = linear(cp, list_recorder(runs), interrupt_after=["a"], interrupt_before=["a"])
    first = await runner.run("t", Doc())
    assert (first.status, first.interrupt, first.step, first.executed) == (
        "interrupted",
        "before",
        0,
        (),
    )
    assert runs == []
    second = await runner.resume("t")
    assert (second.interrupt, second.node, second.executed) == ("after", "a", ("a",))
    third = await runner.resume("t")
    assert third.done
    assert runs == ["a", "b", "c"]


async def test_fork_and_resume_reruns_from_there_and_leaves_the_original(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    runner = linear(cp, list_recorder(runs))
    await runner.run("t", {"topic": "first"})
    before = [(await cp.get("t", s)) for s in range(4)]
    fork_id = await runner.fork("t", 1, new_thread_id="t-fork")
    assert fork_id == "t-fork"
    result = await runner.resume(fork_id, update={"topic": "second"})
    assert result.executed == ("b", "c")
    assert result.state.topic == "second"
    assert result.state.log == ["a", "b", "c"]
    assert [n for _s, n, _q in await _history(cp, fork_id)] == [
        INPUT_NODE,
        "a",
        UPDATE_NODE,
        "b",
        "c",
    ]
    after = [(await cp.get("t", s)) for s in range(4)]
    assert after == before
    assert len(await cp.list_checkpoints("t")) == 4
    info = await cp.thread_info(fork_id)
    assert info is not None
    assert (info.parent_thread_id, info.parent_step) == ("t", 1)


async def test_two_runners_on_one_thread_the_second_gets_step_conflict(
    make_checkpointer: Factory, backend_name: str
) -> None:
    # For SQLite two checkpointers on one file, as two processes would have; an in-memory
    # store is private to its instance, so there both runners share it.
    cp1 = await make_checkpointer(Doc)
    cp2 = cp1 if backend_name == "memory" else await make_checkpointer(Doc)
    runs: list[str] = []
    entered = asyncio.Event()
    inside = 0
    release = asyncio.Event()

    async def b(state: Doc) -> dict[str, Any]:
        nonlocal inside
        runs.append("b")
        inside += 1
        if inside == 2:
            entered.set()
        await release.wait()
        return {"log": ["b"]}

    def make(cp: HistoryCheckpointer[Doc]) -> Runner[Doc]:
        return Runner(
            cp,
            nodes={
                "a": logging_node("a", runs.append),
                "b": b,
                "c": logging_node("c", runs.append),
            },
            entry="a",
            edges={"a": "b", "b": "c"},
            interrupt_after=["a"],
        )

    one, two = make(cp1), make(cp2)
    await one.run("t", Doc())  # pauses after a: both runners will resume from step 1
    tasks = [asyncio.create_task(one.resume("t")), asyncio.create_task(two.resume("t"))]
    waiter = asyncio.create_task(entered.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    assert entered.is_set(), [t.result() for t in tasks if t.done()]  # both inside b
    release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    conflicts = [o for o in outcomes if isinstance(o, StepConflict)]
    finished = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(conflicts) == 1, outcomes
    assert len(finished) == 1, outcomes
    assert conflicts[0].step == 2
    assert runs.count("c") == 1  # the loser stopped at its first save
    assert [n for _s, n, _q in await _history(cp1, "t")] == [INPUT_NODE, "a", "b", "c"]
    latest = await cp1.load("t")
    assert latest is not None
    assert latest.state.data.log == ["a", "b", "c"]


async def test_run_validates_its_input(cp: HistoryCheckpointer[Doc]) -> None:
    runner = linear(cp, list_recorder([]))
    with pytest.raises(InvalidInput):
        await runner.run("t", {"n": "not a number"})
    with pytest.raises(InvalidInput):
        await runner.run("", Doc())
    with pytest.raises(InvalidInput):
        await runner.run("t", 42)  # type: ignore[arg-type]
    assert await cp.list_threads() == []


async def _noop(state: Doc) -> None:
    return None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": {}, "entry": "a"}, "at least one node"),
        ({"nodes": {"a": _noop}, "entry": "zz"}, "entry node 'zz'"),
        ({"nodes": {"a": _noop}, "entry": "a", "edges": {"a": "zz"}}, "unknown node 'zz'"),
        ({"nodes": {"a": _noop}, "entry": "a", "edges": {"zz": "a"}}, "unknown node 'zz'"),
        ({"nodes": {"a": _noop}, "entry": "a", "routers": {"zz": _noop}}, "unknown node 'zz'"),
        (
            {"nodes": {"a": _noop}, "entry": "a", "edges": {"a": "a"}, "routers": {"a": _noop}},
            "both an edge and a router",
        ),
        ({"nodes": {"a": _noop}, "entry": "a", "interrupt_before": ["zz"]}, "unknown node 'zz'"),
        ({"nodes": {"a": _noop}, "entry": "a", "interrupt_after": ["zz"]}, "unknown node 'zz'"),
        ({"nodes": {"__input__": _noop}, "entry": "__input__"}, "reserved"),
        ({"nodes": {"a": "not callable"}, "entry": "a"}, "not callable"),
    ],
)
async def test_a_wrong_definition_is_refused(
    cp: HistoryCheckpointer[Doc], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidGraph, match=message):
        Runner(cp, **kwargs)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (42, "returned int"),
        (Next("nowhere"), "unknown node 'nowhere'"),
        ({"no_such_field": 1}, "does not apply"),
        ({"n": "not a number"}, "does not apply"),
    ],
)
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # StateSchema.apply's dump
async def test_a_bad_node_result_saves_nothing(
    cp: HistoryCheckpointer[Doc], output: object, message: str
) -> None:
    async def bad(state: Doc) -> object:
        return output

    runner = Runner(cp, nodes={"a": _noop, "bad": bad}, entry="a", edges={"a": "bad"})
    with pytest.raises(InvalidNodeResult, match=message):
        await runner.run("t", Doc())
    assert [m.node for m in await cp.list_checkpoints("t")] == [INPUT_NODE, "a"]


async def test_a_router_naming_an_unknown_node(cp: HistoryCheckpointer[Doc]) -> None:
    runner = Runner(cp, nodes={"a": _noop}, entry="a", routers={"a": lambda _s: "zz"})
    with pytest.raises(InvalidNodeResult, match="unknown node 'zz'"):
        await runner.run("t", Doc())


async def test_a_sync_node_is_refused(cp: HistoryCheckpointer[Doc]) -> None:
    # A plain `def` is refused by the constructor (test_copies_and_routes); a callable
    # object may have an async __call__, so a sync one is only caught when called.
    class SyncNode:
        def __call__(self, state: Doc) -> dict[str, int]:
            return {"n": 1}

    runner = Runner(cp, nodes={"a": cast(Any, SyncNode())}, entry="a")
    with pytest.raises(InvalidNodeResult, match="not async"):
        await runner.run("t", Doc())
    assert [m.node for m in await cp.list_checkpoints("t")] == [INPUT_NODE]


async def test_resume_with_a_runner_that_lacks_a_queued_node(cp: HistoryCheckpointer[Doc]) -> None:
    await linear(cp, list_recorder([]), interrupt_before=["b"]).run("t", Doc())
    other = Runner(cp, nodes={"a": _noop}, entry="a")
    with pytest.raises(InvalidGraph, match="'b'"):
        await other.resume("t")
    assert len(await cp.list_checkpoints("t")) == 2


async def test_after_and_before_at_the_same_moment_pause_once(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []
    runner = linear(cp, list_recorder(runs), interrupt_after=["a"], interrupt_before=["b"])
    paused = await runner.run("t", Doc())
    assert (paused.interrupt, paused.node, paused.next_node) == ("after", "a", "b")
    done = await runner.resume("t")
    assert done.done
    assert done.executed == ("b", "c")
    assert runs == ["a", "b", "c"]
