"""Promises the mutation audit found unguarded: state copies, END routes, async-only nodes."""

from __future__ import annotations

from typing import Any, cast

import pytest

from forkpoint import HistoryCheckpointer, InvalidGraph, Next, Runner
from forkpoint.runner import END, INPUT_NODE, RouterFn
from tests.conftest import Factory
from tests.runner.graphs import Doc, logging_node


@pytest.fixture
async def cp(make_checkpointer: Factory) -> HistoryCheckpointer[Doc]:
    return await make_checkpointer(Doc)


async def _states(cp: HistoryCheckpointer[Doc], thread: str) -> list[Doc]:
    out = []
    for meta in await cp.list_checkpoints(thread):
        full = await cp.get(thread, meta.step)
        assert full is not None
        out.append(full.state.data)
    return out


async def _queues(cp: HistoryCheckpointer[Doc], thread: str) -> list[list[tuple[str, int]]]:
    out = []
    for meta in await cp.list_checkpoints(thread):
        full = await cp.get(thread, meta.step)
        assert full is not None
        out.append([(n, p) for n, p in full.queue])
    return out


# --- a node or router gets a copy: mutating it in place changes nothing ---------------------


async def test_a_node_mutating_its_input_changes_nothing(cp: HistoryCheckpointer[Doc]) -> None:
    seen: list[Doc] = []

    async def a(state: Doc) -> dict[str, Any]:
        state.n = 99
        state.topic = "mutated"
        state.log.append("sneaky")
        return {"log": ["a"]}

    async def b(state: Doc) -> dict[str, Any]:
        seen.append(state.model_copy(deep=True))
        state.log.clear()
        return {"log": ["b"]}

    runner = Runner(cp, nodes={"a": a, "b": b}, entry="a", edges={"a": "b"}, interrupt_before=["b"])
    paused = await runner.run("t", {"topic": "x"})
    assert paused.state == Doc(topic="x", log=["a"])
    assert await _states(cp, "t") == [Doc(topic="x"), Doc(topic="x", log=["a"])]

    done = await runner.resume("t")  # the resumed node sees the stored state, unmutated
    assert seen == [Doc(topic="x", log=["a"])]
    assert done.state == Doc(topic="x", log=["a", "b"])
    assert await _states(cp, "t") == [
        Doc(topic="x"),
        Doc(topic="x", log=["a"]),
        Doc(topic="x", log=["a", "b"]),
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_router_mutating_its_input_changes_nothing(
    cp: HistoryCheckpointer[Doc], kind: str
) -> None:
    runs: list[str] = []

    def mutate(state: Doc) -> str:
        state.n = 99
        state.log.append("router")
        return "b"

    async def async_mutate(state: Doc) -> str:
        return mutate(state)

    route: RouterFn = mutate if kind == "sync" else async_mutate
    runner = Runner(
        cp,
        nodes={"a": logging_node("a", runs.append), "b": logging_node("b", runs.append)},
        entry="a",
        routers={"a": route},
        interrupt_before=["b"],
    )
    paused = await runner.run("t", Doc())
    assert paused.state == Doc(log=["a"])
    assert await _states(cp, "t") == [Doc(), Doc(log=["a"])]
    done = await runner.resume("t")
    assert done.state == Doc(log=["a", "b"])
    assert runs == ["a", "b"]


# --- END, and lists of nodes, from routers, edges and Next -----------------------------------


async def test_a_router_returning_end_ends_the_loop(cp: HistoryCheckpointer[Doc]) -> None:
    async def inc(state: Doc) -> dict[str, Any]:
        return {"n": state.n + 1}

    def route(state: Doc) -> str:
        return "inc" if state.n < 2 else END

    runner = Runner(cp, nodes={"inc": inc}, entry="inc", routers={"inc": route})
    result = await runner.run("t", Doc())
    assert result.done
    assert result.executed == ("inc", "inc")
    assert (result.state.n, result.queue) == (2, ())
    assert await _queues(cp, "t") == [[("inc", 0)], [("inc", 0)], []]


@pytest.mark.parametrize(
    ("route", "executed", "queue_after_a"),
    [
        (END, ("a",), []),
        (None, ("a",), []),
        ([END], ("a",), []),
        ([], ("a",), []),
        (["b", END], ("a", "b"), [("b", 0)]),  # one successor: it keeps the path id
        (["b", "c"], ("a", "b", "c"), [("b", 1), ("c", 2)]),  # a fan-out: fresh ids
        ([END, "c", END, "b"], ("a", "c", "b"), [("c", 1), ("b", 2)]),
        (["b", "b"], ("a", "b"), [("b", 0)]),
    ],
)
async def test_what_a_router_returns_decides_what_follows(
    cp: HistoryCheckpointer[Doc],
    route: object,
    executed: tuple[str, ...],
    queue_after_a: list[tuple[str, int]],
) -> None:
    runs: list[str] = []
    runner = Runner(
        cp,
        nodes={n: logging_node(n, runs.append) for n in ("a", "b", "c")},
        entry="a",
        routers={"a": lambda _s: route},
    )
    result = await runner.run("t", Doc())
    assert result.done
    assert result.executed == executed
    assert runs == list(executed)
    assert (await _queues(cp, "t"))[1] == queue_after_a


@pytest.mark.parametrize(
    ("edge", "executed"),
    [
        (END, ("a",)),
        ([END], ("a",)),
        (["b", END], ("a", "b")),
        (["b", "c"], ("a", "b", "c")),
    ],
)
async def test_an_edge_to_end_ends_the_path(
    cp: HistoryCheckpointer[Doc], edge: str | list[str], executed: tuple[str, ...]
) -> None:
    runs: list[str] = []
    runner = Runner(
        cp,
        nodes={n: logging_node(n, runs.append) for n in ("a", "b", "c")},
        entry="a",
        edges={"a": edge},
    )
    result = await runner.run("t", Doc())
    assert result.done
    assert result.executed == executed
    assert result.state.log == list(executed)


@pytest.mark.parametrize("nodes", [END, [END], []])
async def test_next_end_ends_the_path_and_overrides_the_edge(
    cp: HistoryCheckpointer[Doc], nodes: str | list[str]
) -> None:
    runs: list[str] = []

    async def a(state: Doc) -> Next:
        runs.append("a")
        return Next(nodes, update={"log": ["a"]})

    runner = Runner(
        cp, nodes={"a": a, "b": logging_node("b", runs.append)}, entry="a", edges={"a": "b"}
    )
    result = await runner.run("t", Doc())
    assert result.done
    assert result.executed == ("a",)
    assert result.state.log == ["a"]
    assert runs == ["a"]


# --- a node must be async: a plain function is refused before it can ever run ---------------


class _Nodes:
    def __init__(self, runs: list[str]) -> None:
        self.runs = runs

    def sync_method(self, state: Doc) -> dict[str, Any]:
        self.runs.append("sync_method")
        return {"n": 1}

    async def async_method(self, state: Doc) -> dict[str, Any]:
        self.runs.append("async_method")
        return {"log": ["async_method"]}


class _AsyncCallable:
    def __init__(self, runs: list[str]) -> None:
        self.runs = runs

    async def __call__(self, state: Doc) -> dict[str, Any]:
        self.runs.append("async_callable")
        return {"log": ["async_callable"]}


@pytest.mark.parametrize("kind", ["def", "lambda", "method"])
async def test_a_sync_node_function_is_refused_by_the_constructor(
    cp: HistoryCheckpointer[Doc], kind: str
) -> None:
    runs: list[str] = []

    def sync_node(state: Doc) -> dict[str, Any]:
        runs.append("sync_node")
        return {"n": 1}

    node = {
        "def": sync_node,
        "lambda": lambda state: sync_node(state),
        "method": _Nodes(runs).sync_method,
    }[kind]
    with pytest.raises(InvalidGraph, match="node 'b' is not async"):
        Runner(cp, nodes={"a": logging_node("a", runs.append), "b": cast(Any, node)}, entry="a")
    assert runs == []
    assert await cp.list_threads() == []


async def test_async_methods_and_async_callable_objects_are_nodes(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    runner = Runner(
        cp,
        nodes={"m": _Nodes(runs).async_method, "c": _AsyncCallable(runs)},
        entry="m",
        edges={"m": "c"},
    )
    result = await runner.run("t", Doc())
    assert result.executed == ("m", "c")
    assert runs == ["async_method", "async_callable"]
    assert result.state.log == ["async_method", "async_callable"]
    assert [m.node for m in await cp.list_checkpoints("t")] == [INPUT_NODE, "m", "c"]
