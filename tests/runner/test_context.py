"""The node context, run metadata, ctx.interrupt, wrong-shape updates and renamed nodes."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field

from forkpoint import (
    Append,
    Checkpoint,
    GraphState,
    HistoryCheckpointer,
    InvalidInput,
    InvalidNodeResult,
    InvalidUpdate,
    Merge,
    NodeContext,
    NodeFailed,
    RetryPolicy,
    Runner,
    StateSchema,
    UnknownNodes,
)
from forkpoint.runner import INTERRUPT_NODE, UPDATE_NODE
from tests.conftest import Factory
from tests.runner.graphs import Doc, linear, list_recorder, logging_node


@pytest.fixture
async def cp(make_checkpointer: Factory) -> HistoryCheckpointer[Doc]:
    return await make_checkpointer(Doc)


# --- the context -------------------------------------------------------------------------


async def test_a_two_parameter_node_gets_the_context_and_one_parameter_nodes_still_work(
    cp: HistoryCheckpointer[Doc],
) -> None:
    seen: list[NodeContext] = []

    async def a(state: Doc) -> dict[str, Any]:
        return {"log": ["a"]}

    async def b(state: Doc, ctx: NodeContext) -> dict[str, Any]:
        seen.append(ctx)
        return {"log": [f"b in {ctx.thread_id} at {ctx.step}"]}

    class Callable:
        async def __call__(self, state: Doc, ctx: NodeContext) -> dict[str, Any]:
            seen.append(ctx)
            return {}

    runner = Runner(
        cp, nodes={"a": a, "b": b, "c": Callable()}, entry="a", edges={"a": "b", "b": "c"}
    )
    result = await runner.run("t", Doc(), metadata={"run_id": "r-1", "user": {"id": 7}})
    assert result.state.log == ["a", "b in t at 1"]
    assert [(c.thread_id, c.step, c.node, c.path_id, c.attempt) for c in seen] == [
        ("t", 1, "b", 0, 1),
        ("t", 2, "c", 0, 1),
    ]
    assert dict(seen[0].metadata) == {"run_id": "r-1", "user": {"id": 7}}
    with pytest.raises(TypeError):
        seen[0].metadata["x"] = 1  # type: ignore[index]


async def test_run_and_resume_tag_checkpoints_and_the_thread(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runner = linear(cp, list_recorder([]), interrupt_after=["a"])
    await runner.run("t", Doc(), metadata={"run": 1}, thread_metadata={"workflow": "linear"})
    await runner.resume("t", metadata={"run": 2}, thread_metadata={"workflow": "linear", "v": 2})
    assert [m.step for m in await cp.list_checkpoints("t", filter={"run": 1})] == [0, 1]
    assert [m.step for m in await cp.list_checkpoints("t", filter={"run": 2})] == [2, 3]
    assert [t.thread_id for t in await cp.list_threads(filter={"v": 2})] == ["t"]
    info = await cp.thread_info("t")
    assert info is not None
    assert info.metadata == {"workflow": "linear", "v": 2}


@pytest.mark.parametrize(
    "kw",
    [
        {"metadata": {"interrupt": "before"}},
        {"metadata": {"wave": 1}},
        {"metadata": {"x": object()}},
        {"metadata": ["x"]},
        {"thread_metadata": {"x": {1, 2}}},
    ],
)
async def test_bad_metadata_is_refused_before_anything_is_written(
    cp: HistoryCheckpointer[Doc], kw: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput):
        await linear(cp, list_recorder([])).run("t", Doc(), **kw)
    assert await cp.thread_info("t") is None


# --- ctx.interrupt -----------------------------------------------------------------------


def _asking(cp: HistoryCheckpointer[Doc], runs: list[str], **kw: Any) -> Runner[Doc]:
    async def review(state: Doc, ctx: NodeContext) -> dict[str, Any]:
        runs.append("review")
        decision = ctx.interrupt({"question": "publish?", "draft": list(state.log)})
        title = ctx.interrupt("title?") if decision == "yes" else None
        return {"decision": str(decision), "topic": str(title or "")}

    return Runner(
        cp,
        nodes={
            "draft": logging_node("draft", runs.append),
            "review": review,
            "publish": logging_node("publish", runs.append),
        },
        entry="draft",
        edges={"draft": "review", "review": "publish"},
        **kw,
    )


async def test_a_node_asks_a_human_and_gets_the_answer_when_resumed(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    runner = _asking(cp, runs)
    paused = await runner.run("t", Doc())
    assert (paused.status, paused.interrupt) == ("interrupted", "node")
    assert paused.payload == {"question": "publish?", "draft": ["draft"]}
    assert paused.waiting == ("review", 0)
    assert paused.next_node == "review"
    assert (paused.step, paused.node, paused.queue) == (2, INTERRUPT_NODE, (("review", 0),))
    stored = await cp.load("t")
    assert stored is not None
    assert stored.metadata == {
        "interrupt": "node",
        "payload": {"question": "publish?", "draft": ["draft"]},
        "waiting": ["review", 0],
    }
    assert stored.state.data.log == ["draft"]

    second = await runner.resume("t", answer="yes")  # the node runs again; asks its 2nd question
    assert (second.interrupt, second.payload) == ("node", "title?")
    edited = await cp.get("t", 3)
    assert edited is not None
    assert (edited.node, edited.metadata) == (UPDATE_NODE, {"answers": [["review", 0, ["yes"]]]})
    latest = await cp.load("t")
    assert latest is not None
    assert latest.metadata["answers"] == [["review", 0, ["yes"]]]  # carried with the pause

    done = await runner.resume("t", answer="SQLite it is")
    assert done.done
    assert (done.state.decision, done.state.topic) == ("yes", "SQLite it is")
    assert runs == ["draft", "review", "review", "review", "publish"]
    final = await cp.load("t")
    assert final is not None
    assert "answers" not in final.metadata


async def test_answers_survive_a_failure_before_the_node_finishes(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    await _asking(cp, runs).run("t", Doc())

    async def broken(state: Doc, ctx: NodeContext) -> None:
        assert ctx.interrupt("publish?") == "no"  # the answer reaches the node...
        raise RuntimeError("...which then dies, as a killed process would")

    failing = Runner(
        cp, nodes={"draft": broken, "review": broken, "publish": broken}, entry="draft"
    )
    with pytest.raises(NodeFailed):
        await failing.resume("t", answer="no")
    latest = await cp.load("t")
    assert latest is not None
    assert (latest.node, latest.metadata) == (UPDATE_NODE, {"answers": [["review", 0, ["no"]]]})
    result = await _asking(cp, runs).resume("t")  # no answer given: the stored one is used
    assert result.done
    assert result.state.decision == "no"


async def test_an_answer_when_nobody_asked_is_refused(cp: HistoryCheckpointer[Doc]) -> None:
    runner = linear(cp, list_recorder([]), interrupt_before=["b"])
    await runner.run("t", Doc())
    with pytest.raises(InvalidInput, match="waiting"):
        await runner.resume("t", answer="hello")
    latest = await cp.load("t")
    assert latest is not None
    assert latest.step == 1


async def test_a_bad_update_or_answer_writes_nothing(cp: HistoryCheckpointer[Doc]) -> None:
    runs: list[str] = []
    await _asking(cp, runs).run("t", Doc())
    before = await cp.list_checkpoints("t")
    bad: list[dict[str, Any]] = [
        {"update": {"nope": 1}, "thread_metadata": {"v": 2}},
        {"answer": object(), "thread_metadata": {"v": 2}},
        {"update": {"topic": 3}, "answer": "yes"},
    ]
    for kw in bad:
        with pytest.raises(InvalidInput):
            await _asking(cp, runs).resume("t", **kw)
    assert await cp.list_checkpoints("t") == before
    info = await cp.thread_info("t")
    assert info is not None
    assert info.metadata == {}
    assert runs == ["draft", "review"]


async def test_an_interrupt_payload_must_be_json(cp: HistoryCheckpointer[Doc]) -> None:
    async def ask(state: Doc, ctx: NodeContext) -> None:
        ctx.interrupt(object())  # type: ignore[arg-type]

    with pytest.raises(Exception) as info:  # noqa: PT011 - checked below
        await Runner(cp, nodes={"ask": ask}, entry="ask").run("t", Doc())
    assert isinstance(info.value.__cause__, InvalidInput)


async def test_static_interrupts_still_pause_with_their_marks(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runner = linear(cp, list_recorder([]), interrupt_before=["c"], interrupt_after=["a"])
    first = await runner.run("t", Doc())
    assert (first.interrupt, first.node, first.next_node) == ("after", "a", "b")
    second = await runner.resume("t")
    assert (second.interrupt, second.node, second.next_node) == ("before", "b", "c")
    assert (await runner.resume("t")).done


# --- reducers ----------------------------------------------------------------------------


class Chat(StateSchema):
    messages: Annotated[list[str], Append] = Field(default_factory=list)
    seen: Annotated[dict[str, int], Merge] = Field(default_factory=dict)


async def test_a_string_for_an_append_field_is_refused_naming_the_field(
    make_checkpointer: Factory,
) -> None:
    cp = await make_checkpointer(Chat)

    async def say(state: Chat) -> dict[str, Any]:
        return {"messages": "hello"}

    with pytest.raises(InvalidNodeResult, match="'messages'") as info:
        await Runner(cp, nodes={"say": say}, entry="say").run("t", Chat())
    cause = info.value.__cause__
    assert isinstance(cause, InvalidUpdate)
    assert cause.field == "messages"
    latest = await cp.load("t")
    assert latest is not None
    assert (latest.step, latest.state.data.messages) == (0, [])


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": b"hi"}, "messages"),
        ({"messages": {"a": 1}}, "messages"),
        ({"messages": {"a", "b"}}, "messages"),
        ({"messages": 3}, "messages"),
        ({"seen": [("a", 1)]}, "seen"),
        ({"seen": "ab"}, "seen"),
    ],
)
def test_built_in_reducers_refuse_wrong_shapes(update: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidUpdate) as info:
        Chat.apply(Chat(), update)
    assert info.value.field == field
    assert repr(field) in str(info.value)


def test_built_in_reducers_take_right_shapes() -> None:
    state = Chat.apply(Chat(messages=["a"]), {"messages": ("b", "c"), "seen": {"x": 1}})
    assert state.messages == ["a", "b", "c"]
    assert Chat.apply(state, {"seen": {"y": 2}}).seen == {"x": 1, "y": 2}


# --- renamed nodes -----------------------------------------------------------------------


async def _stored_queue(cp: HistoryCheckpointer[Doc], queue: list[tuple[str, int]]) -> None:
    await cp.save(
        Checkpoint(thread_id="t", state=GraphState(data=Doc()), step=0, node="x", queue=queue)
    )


async def test_a_queue_naming_missing_nodes_is_refused_before_any_node_runs(
    cp: HistoryCheckpointer[Doc],
) -> None:
    await _stored_queue(cp, [("fetch", 1), ("a", 0), ("parse", 2)])
    runs: list[str] = []
    with pytest.raises(UnknownNodes) as info:
        await linear(cp, list_recorder(runs)).resume("t")
    assert info.value.nodes == ("fetch", "parse")
    assert "renamed_nodes" in str(info.value)
    assert runs == []
    assert len(await cp.list_checkpoints("t")) == 1


async def test_renamed_nodes_map_stored_names(cp: HistoryCheckpointer[Doc]) -> None:
    await _stored_queue(cp, [("first", 0)])
    runs: list[str] = []
    result = await linear(cp, list_recorder(runs), renamed_nodes={"first": "a"}).resume("t")
    assert result.done
    assert runs == ["a", "b", "c"]


async def test_an_interrupt_is_never_retried_or_swallowed(cp: HistoryCheckpointer[Doc]) -> None:
    calls = [0]

    async def ask(state: Doc, ctx: NodeContext) -> dict[str, Any]:
        calls[0] += 1
        try:
            answer = ctx.interrupt("ok?")
        except Exception:  # noqa: BLE001 - a node's broad except must not catch the pause
            return {"decision": "swallowed"}
        return {"decision": str(answer)}

    runner = Runner(
        cp, nodes={"ask": ask}, entry="ask", retry=RetryPolicy(max_attempts=5, initial_delay=0)
    )
    paused = await runner.run("t", Doc())
    assert (paused.interrupt, calls) == ("node", [1])
    assert (await runner.resume("t", answer="fine")).state.decision == "fine"
