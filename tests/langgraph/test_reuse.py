"""What the saver reuses between calls never makes a stored or read value stale.

A put re-encodes only the list elements it cannot vouch for (``reuse.py``:
snapshots), and ``get_tuple`` hands out copies of objects it decoded earlier
from the same texts. Every test here records, at each put, the full encoding
of what LangGraph handed over, then reads every checkpoint back through a
fresh saver (no caches) and through the working one: the texts must match
exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed")

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel, PrivateAttr

from forkpoint.langgraph import ForkpointSaver, TypeRegistry
from forkpoint.langgraph import registry as registry_module
from forkpoint.langgraph.builtin_types import default_registry
from forkpoint.langgraph.reuse import clone, snapshot, unchanged

# --- a saver that records what it was asked to store -----------------------------------------


class Recording(ForkpointSaver):
    """Records each put's full encoding (no reuse) before storing it."""

    expected: dict[tuple[str, str, str], dict[str, str]]

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        self._record(config, checkpoint)
        return super().put(config, checkpoint, metadata, new_versions)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        self._record(config, checkpoint)
        return await super().aput(config, checkpoint, metadata, new_versions)

    def _record(self, config: Any, checkpoint: Any) -> None:
        if not hasattr(self, "expected"):
            self.expected = {}
        conf = config["configurable"]
        where = (str(conf["thread_id"]), conf.get("checkpoint_ns", ""), checkpoint["id"])
        self.expected[where] = {
            channel: self.registry.dumps(value, channel=channel)
            for channel, value in checkpoint["channel_values"].items()
        }


def _texts(saver: ForkpointSaver, values: dict[str, Any]) -> dict[str, str]:
    return {channel: saver.registry.dumps(value) for channel, value in values.items()}


def assert_read_back(recording: Recording, *, skip_threads: frozenset[str] = frozenset()) -> None:
    """Every recorded checkpoint reads back exactly, through a fresh saver and the working one."""
    with ForkpointSaver.from_conn_string(recording.path, registry=recording.registry) as fresh:
        for (thread, ns, checkpoint_id), want in recording.expected.items():
            if thread in skip_threads:
                continue
            conf: Any = {
                "configurable": {
                    "thread_id": thread,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            }
            for saver in (fresh, recording):
                got = saver.get_tuple(conf)
                assert got is not None, (thread, checkpoint_id)
                assert _texts(saver, got.checkpoint["channel_values"]) == want, checkpoint_id
            listed = {
                t.checkpoint["id"]: t for t in fresh.list({"configurable": conf["configurable"]})
            }
            assert _texts(fresh, listed[checkpoint_id].checkpoint["channel_values"]) == want


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[Recording]:
    saver = Recording(tmp_path / "reuse.db")
    saver.expected = {}
    try:
        yield saver
    finally:
        saver.close()


# --- graphs ------------------------------------------------------------------------------------


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def chat(reply: Any) -> Any:
    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder


def answer(state: Chat) -> dict[str, Any]:
    return {"messages": [AIMessage(f"answer {len(state['messages'])}")]}


def conf(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def ask(graph: Any, text: str, config: Any) -> dict[str, Any]:
    """One turn, its puts each done before the next step, its question with an id.

    LangGraph edits objects it handed to a put: ``add_messages`` gives a new
    message an id in place, a node may edit a message in place. With
    ``durability="async"`` it goes on while a put runs, so what a put records
    and what it stores could differ by such an edit made in between.
    """
    question = HumanMessage(text, id=str(uuid.uuid4()))
    return dict(graph.invoke({"messages": [question]}, config, durability="sync"))


def talk(graph: Any, thread: str, turns: int, start: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(start, start + turns):
        out = ask(graph, f"question {i}", conf(thread))
    return out


# --- edits the caches must see -----------------------------------------------------------------


def test_a_message_edited_in_place_by_a_node_is_stored_edited(recording: Recording) -> None:
    def edit(state: Chat) -> dict[str, Any]:
        if len(state["messages"]) > 12:
            state["messages"][3].content = "edited in place"  # no update returned for it
            state["messages"][5].additional_kwargs["note"] = "nested edit"
            state["messages"][7].response_metadata["n"] = 1
        if len(state["messages"]) > 16:
            state["messages"][7].response_metadata["n"] = True  # equal to 1, stored differently
        return answer(state)

    graph = chat(edit).compile(checkpointer=recording)
    out = talk(graph, "t", 12)
    messages = out["messages"]
    assert messages[3].content == "edited in place"
    assert recording.get_tuple(conf("t")) is not None
    latest = recording.get_tuple(conf("t"))
    assert latest is not None
    stored = latest.checkpoint["channel_values"]["messages"]
    assert stored[3].content == "edited in place"
    assert stored[5].additional_kwargs == {"note": "nested edit"}
    assert stored[7].response_metadata["n"] is True
    assert_read_back(recording)


def test_get_tuple_hands_out_fresh_objects_every_time(recording: Recording) -> None:
    graph = chat(answer).compile(checkpointer=recording)
    talk(graph, "t", 10)
    first = recording.get_tuple(conf("t"))
    assert first is not None
    messages = first.checkpoint["channel_values"]["messages"]
    messages[0].content = "scribbled on a read value"
    messages[1].additional_kwargs["x"] = 1
    second = recording.get_tuple(conf("t"))
    assert second is not None
    again = second.checkpoint["channel_values"]["messages"]
    assert again[0].content == "question 0"
    assert again[1].additional_kwargs == {}
    assert all(a is not b for a, b in zip(messages, again, strict=True))
    assert_read_back(recording)


def test_a_value_read_then_edited_and_stored_directly_is_stored_edited(
    recording: Recording,
) -> None:
    graph = chat(answer).compile(checkpointer=recording)
    talk(graph, "t", 6)
    latest = recording.get_tuple(conf("t"))
    assert latest is not None
    cp: Checkpoint = latest.checkpoint
    cp["channel_values"]["messages"][2].content = "edited after reading"
    cp["id"] = str(uuid6(clock_seq=-1))
    versions = dict(cp["channel_versions"])
    versions["messages"] = recording.get_next_version(str(versions["messages"]), None)
    cp["channel_versions"] = versions
    recording.put(latest.config, cp, {"step": 99}, {"messages": versions["messages"]})
    stored = recording.get_tuple(conf("t"))
    assert stored is not None
    assert stored.checkpoint["channel_values"]["messages"][2].content == "edited after reading"
    assert_read_back(recording)


def test_an_edit_landing_while_an_element_is_encoded_is_stored_at_the_next_put(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LangGraph may edit a value it handed to a put, on another thread: an edit that lands
    just after an element's text was made must not be taken for the stored text later."""
    messages = [HumanMessage(f"question {i}", id=f"q{i}") for i in range(12)]
    original = TypeRegistry.dumps_item

    def edited_once_encoded(self: TypeRegistry, item: Any, *args: Any, **kw: Any) -> str:
        text = original(self, item, *args, **kw)
        if item is messages[2] and item.content == "question 2":
            item.content = "edited meanwhile"  # the other thread's edit, just after the text
        return text

    monkeypatch.setattr(TypeRegistry, "dumps_item", edited_once_encoded)
    saver = ForkpointSaver(tmp_path / "edits.db")
    parent: Any = conf("t")
    for version in (1, 2):
        cp: Checkpoint = {
            **empty_checkpoint(),
            "id": str(uuid6(clock_seq=-1)),
            "channel_values": {"messages": list(messages)},
            "channel_versions": {"messages": version},
        }
        parent = saver.put(parent, cp, {"step": version}, {"messages": version})
    saver.close()
    with ForkpointSaver.from_conn_string(saver.path) as fresh:
        first, second = (t.checkpoint["channel_values"]["messages"] for t in fresh.list(conf("t")))
    assert first[2].content == "edited meanwhile"  # the second put: the edit
    assert second[2].content == "question 2"  # the first: the text made before it


def test_update_state_replacing_and_removing_messages_by_id(recording: Recording) -> None:
    graph = chat(answer).compile(checkpointer=recording)
    out = talk(graph, "t", 8)
    target = out["messages"][4]
    graph.update_state(conf("t"), {"messages": [HumanMessage("replaced", id=target.id)]})
    graph.update_state(conf("t"), {"messages": [RemoveMessage(id=out["messages"][0].id)]})
    out = talk(graph, "t", 3, start=100)
    assert out["messages"][3].content == "replaced"
    assert out["messages"][0].content == "answer 1"
    assert_read_back(recording)


def test_a_branch_from_an_old_checkpoint_and_back(recording: Recording) -> None:
    graph = chat(answer).compile(checkpointer=recording)
    talk(graph, "t", 10)
    history = list(graph.get_state_history(conf("t")))
    old = history[12].config  # a checkpoint from a few turns back
    forked = graph.update_state(old, {"messages": [HumanMessage("a branch")]})
    graph.invoke(None, forked, durability="sync")
    ask(graph, "on the branch", conf("t"))
    # back on a checkpoint of the main line: its list ends past what the branch knows
    ask(graph, "main line again", history[0].config)
    assert_read_back(recording)


def test_two_savers_taking_turns_on_one_thread(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    one, two = Recording(path), Recording(path)
    one.expected, two.expected = {}, {}
    try:
        graphs = [chat(answer).compile(checkpointer=one), chat(answer).compile(checkpointer=two)]
        for i in range(12):
            ask(graphs[i % 3 == 0], f"q{i}", conf("t"))
        one.expected.update(two.expected)
        assert_read_back(one)
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize("how", ["delete_thread", "prune", "copy_thread", "delete_for_runs"])
def test_the_caches_after_deleting_pruning_and_copying(recording: Recording, how: str) -> None:
    graph = chat(answer).compile(checkpointer=recording)
    talk(graph, "t", 9)
    gone: frozenset[str] = frozenset()
    if how == "delete_thread":
        recording.delete_thread("t")
        recording.expected.clear()
    elif how == "prune":
        recording.prune(["t"], strategy="keep_latest")
        latest = recording.get_tuple(conf("t"))
        assert latest is not None
        keep = ("t", "", latest.checkpoint["id"])
        recording.expected = {keep: recording.expected[keep]}
    elif how == "copy_thread":
        recording.copy_thread("t", "copy")
        talk(graph, "copy", 4, start=50)
    else:
        recording.delete_for_runs([])  # nothing to delete: the caches are dropped anyway
    talk(graph, "t", 5, start=200)
    if how == "copy_thread":
        assert len(graph.get_state(conf("copy")).values["messages"]) == 26
        gone = frozenset({"copy"})  # its first checkpoints were copied, not put
    assert_read_back(recording, skip_threads=gone)


# --- what the caches save (counted, not timed) -------------------------------------------------


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """From now on, how many list elements are encoded and decoded."""
    calls = {"dumps_item": 0, "load_item": 0}
    for name in calls:
        original = getattr(registry_module.TypeRegistry, name)

        def counted(
            self: TypeRegistry, *args: Any, _name: str = name, _f: Any = original, **kw: Any
        ) -> Any:
            calls[_name] += 1
            return _f(self, *args, **kw)

        monkeypatch.setattr(registry_module.TypeRegistry, name, counted)
    return calls


def test_a_turn_encodes_only_its_new_messages_and_history_decodes_each_once(
    recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = chat(answer).compile(checkpointer=recording)
    talk(graph, "t", 20)
    calls = _counting(monkeypatch)
    talk(graph, "t", 1, start=20)
    assert calls == {"dumps_item": 2, "load_item": 2}  # the question and the answer only
    calls.update(dumps_item=0, load_item=0)
    history = list(graph.get_state_history(conf("t")))
    assert len(history) == 63
    assert calls["load_item"] == 42  # each stored message once, for 63 snapshots
    assert_read_back(recording)


def test_a_list_shifted_by_a_removal_is_matched_where_its_elements_moved(
    recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Elements are matched by position first; a list one off finds them by identity or text."""
    graph = chat(answer).compile(checkpointer=recording)
    out = talk(graph, "t", 20)
    before = recording.get_tuple(conf("t"))
    assert before is not None
    calls = _counting(monkeypatch)
    graph.update_state(conf("t"), {"messages": [RemoveMessage(id=out["messages"][0].id)]})
    assert calls == {"dumps_item": 0, "load_item": 0}  # 39 messages, each one place earlier
    again = recording.get_tuple(before.config)  # the list before the removal, one place later
    assert again is not None
    assert len(again.checkpoint["channel_values"]["messages"]) == 40
    assert calls == {"dumps_item": 0, "load_item": 1}  # only the removed message is decoded
    assert_read_back(recording)


# --- reuse.py on its own -----------------------------------------------------------------------


class Note(BaseModel):
    text: str
    tags: list[str] = []
    meta: dict[str, Any] = {}


class Secret(BaseModel):
    text: str
    _cache: dict[str, Any] = PrivateAttr(default_factory=dict)


@dataclass
class Point:
    x: int


def registry() -> TypeRegistry:
    reg = default_registry()
    for cls in (Note, Secret, Point):
        reg.register(cls)
    return reg


@pytest.mark.parametrize(
    ("edit", "still"),
    [
        (lambda n: setattr(n, "text", "other"), False),
        (lambda n: setattr(n, "text", "".join(["sam", "e"])), False),  # equal, another object
        (lambda n: n.tags.append("x"), False),
        (lambda n: n.tags.__setitem__(0, "b"), False),
        (lambda n: n.meta.__setitem__("k", 2), False),
        (lambda n: n.meta.__setitem__("n", True), False),  # 1 == True, but stored differently
        (lambda n: n.meta.__setitem__("f", -0.0), False),  # 0.0 == -0.0, stored differently
        (lambda n: n.meta["inner"].append(None), False),
        (lambda n: n.meta.pop("n"), False),
        (lambda n: setattr(n, "meta", {**n.meta}), True),  # a new dict, same keys and leaves
        (lambda n: setattr(n, "tags", list(n.tags)), True),
    ],
)
def test_unchanged_sees_every_edit(edit: Any, still: bool) -> None:
    reg = registry()
    note = Note(text="same", tags=["a"], meta={"n": 1, "f": 0.0, "inner": []})
    recorded = snapshot(reg, note)
    assert recorded is not None
    assert unchanged(reg, note, recorded)
    before = reg.dumps(note)
    edit(note)
    assert unchanged(reg, note, recorded) is still
    if still:  # only ever said of a value that encodes exactly as before
        assert reg.dumps(note) == before


def test_values_without_a_snapshot_or_a_copy() -> None:
    reg = registry()
    for value in (Point(1), {1: "a"}, {"s": {1, 2}}, [Point(2)], float):
        assert snapshot(reg, value) is None
    assert snapshot(reg, [1, "a", None, 2.5, (1, 2), {"k": [True]}]) is not None
    assert clone(reg, Secret(text="x")) == (False, None)  # private attributes are not copied
    assert clone(reg, Point(1)) == (False, None)


def test_a_clone_is_equal_independent_and_shares_only_immutable_leaves() -> None:
    reg = registry()
    text = reg.dumps(Note(text="t", tags=["a"], meta={"k": {"deep": [1, 2]}}))
    twin = reg.loads(text)
    ok, copy = clone(reg, twin)
    assert ok
    assert copy == twin
    assert reg.dumps(copy) == text
    deep = twin.model_copy(deep=True)  # what rebuild() must equal in every observable way
    assert copy == deep
    assert copy.model_fields_set == deep.model_fields_set == twin.model_fields_set
    assert copy.model_fields_set is not twin.model_fields_set
    assert copy.__pydantic_extra__ == deep.__pydantic_extra__
    assert copy.model_dump() == deep.model_dump()
    assert copy.model_dump_json() == deep.model_dump_json()
    assert repr(copy) == repr(deep)
    message = reg.loads(reg.dumps(AIMessage("hi", id="m", additional_kwargs={"k": [1]})))
    ok, copied = clone(reg, message)
    assert ok
    assert copied == message.model_copy(deep=True)
    assert copied.__pydantic_extra__ == message.__pydantic_extra__ == {}
    assert copied.__pydantic_extra__ is not message.__pydantic_extra__
    copy.tags.append("b")
    copy.meta["k"]["deep"].append(3)
    assert reg.dumps(twin) == text
    recorded = snapshot(reg, twin)
    assert recorded is not None
    _, second = clone(reg, twin)
    assert unchanged(reg, second, recorded)  # a fresh copy matches its twin's snapshot
    assert not unchanged(reg, copy, recorded)
