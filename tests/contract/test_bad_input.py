"""Bad input gets a typed error before anything is written; what JSON cannot hold is refused.

The in-memory backend stores through the same codec as SQLite, so it refuses
exactly what SQLite could not store unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field

from forkpoint import (
    MAX_THREAD_ID_LENGTH,
    Checkpoint,
    CheckpointNotFound,
    GraphState,
    HistoryCheckpointer,
    InvalidInput,
    SerializationError,
    StateSchema,
    StateTooLarge,
)
from tests.conftest import Counter, Factory, make_cp
from tests.contract._util import snapshot

BAD_THREAD_IDS: list[Any] = [
    "",
    " ",
    "\t\n",
    "a\x00b",
    "a\x1fb",
    "a\x7fb",
    "a\x85b",
    "bad\ud800",
    "x" * (MAX_THREAD_ID_LENGTH + 1),
    None,
    7,
    b"bytes",
    ["t"],
]
BAD_STEPS: list[Any] = [-1, 2**63, 2**64, True, False, 1.0, "1", None]


def _ids(values: list[Any]) -> list[str]:
    return [repr(v)[:20] for v in values]


async def _seeded(cp: HistoryCheckpointer[Counter]) -> list[Any]:
    await cp.save(make_cp("t", 0))
    await cp.save(make_cp("t", 1))
    return await snapshot(cp)


@pytest.mark.parametrize("bad", BAD_THREAD_IDS, ids=_ids(BAD_THREAD_IDS))
async def test_bad_thread_id_in_save_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], bad: Any
) -> None:
    before = await _seeded(checkpointer)
    cp = make_cp("t", 2)
    cp.thread_id = bad  # past the model's own validation, as a careless caller could
    with pytest.raises(InvalidInput):
        await checkpointer.save(cp)
    assert await snapshot(checkpointer) == before


def test_checkpoint_model_refuses_bad_thread_id_at_construction() -> None:
    with pytest.raises(ValueError, match="thread id"):
        make_cp("", 0)


async def test_longest_thread_id_is_accepted(checkpointer: HistoryCheckpointer[Counter]) -> None:
    tid = "x" * MAX_THREAD_ID_LENGTH
    await checkpointer.save(make_cp(tid, 0))
    assert await checkpointer.load(tid) is not None


@pytest.mark.parametrize("bad", BAD_THREAD_IDS, ids=_ids(BAD_THREAD_IDS))
async def test_bad_thread_id_in_every_method_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], bad: Any
) -> None:
    before = await _seeded(checkpointer)
    calls: list[Callable[[], Any]] = [
        lambda: checkpointer.load(bad),
        lambda: checkpointer.get(bad, 0),
        lambda: checkpointer.list_checkpoints(bad),
        lambda: checkpointer.fork(bad, 0),
        lambda: checkpointer.thread_info(bad),
        lambda: checkpointer.list_forks(bad),
        lambda: checkpointer.delete_thread(bad),
        lambda: checkpointer.set_thread_metadata(bad, {}),
    ]
    if bad is not None:  # None means "no id" / "from the start" / "every thread" there
        calls += [
            lambda: checkpointer.fork("t", 0, new_thread_id=bad),
            lambda: checkpointer.list_threads(after=bad),
            lambda: checkpointer.prune(bad, keep_last=1),
        ]
    for call in calls:
        with pytest.raises(InvalidInput):
            await call()
    assert await snapshot(checkpointer) == before


@pytest.mark.parametrize("bad", BAD_STEPS, ids=_ids(BAD_STEPS))
async def test_bad_step_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], bad: Any
) -> None:
    before = await _seeded(checkpointer)
    cp = make_cp("t", 2)
    cp.step = bad
    with pytest.raises(InvalidInput):
        await checkpointer.save(cp)
    fresh = make_cp("fresh", 0)
    fresh.step = bad
    with pytest.raises(InvalidInput):
        await checkpointer.save(fresh)
    with pytest.raises(InvalidInput):
        await checkpointer.get("t", bad)
    with pytest.raises(InvalidInput):
        await checkpointer.fork("t", bad)
    if bad is not None:
        with pytest.raises(InvalidInput):
            await checkpointer.list_checkpoints("t", after=bad)
        with pytest.raises(InvalidInput):
            await checkpointer.list_checkpoints("t", before=bad)
    assert await snapshot(checkpointer) == before


class Other(StateSchema):
    n: int = 0


async def test_state_of_wrong_type_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    before = await _seeded(checkpointer)
    cp = make_cp("t", 2)
    cp.state.data = Other(n=2)  # type: ignore[assignment]
    with pytest.raises(InvalidInput):
        await checkpointer.save(cp)
    cp2 = make_cp("t", 2)
    cp2.state = {"data": {"n": 1}}  # type: ignore[assignment]
    with pytest.raises(InvalidInput):
        await checkpointer.save(cp2)
    with pytest.raises(InvalidInput):
        await checkpointer.save("not a checkpoint")  # type: ignore[arg-type]
    assert await snapshot(checkpointer) == before


@pytest.mark.parametrize(
    "queue",
    [
        [("a", -1)],
        [("a", 2**63)],
        [("a",)],
        [("a", 1, 2)],
        [(1, 1)],
        [("a", True)],
        [("a", 1.0)],
        ["ab"],
        "ab",
        None,
    ],
    ids=["neg", "big", "short", "long", "node-int", "bool", "float", "str-item", "str", "none"],
)
async def test_bad_queue_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], queue: Any
) -> None:
    before = await _seeded(checkpointer)
    cp = make_cp("t", 2)
    cp.queue = queue
    with pytest.raises(InvalidInput):
        await checkpointer.save(cp)
    assert await snapshot(checkpointer) == before


async def test_naive_created_at_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_cp("t", 0, created_at=datetime(2024, 1, 1))
    before = await _seeded(checkpointer)
    cp = make_cp("t", 2)
    cp.created_at = datetime(2024, 1, 1)
    with pytest.raises(InvalidInput):
        await checkpointer.save(cp)
    assert await snapshot(checkpointer) == before


@pytest.mark.parametrize(
    "metadata",
    [
        {"x": math.nan},
        {"x": [1, math.inf]},
        {"x": {1, 2}},
        {"x": (1, 2)},
        {"x": b"b"},
        {"x": object()},
        {1: "int key"},
        {"x": "\udc00"},
        {"x": "a\x00b"},
        {"a\x00b": 1},
        {"x": [{"y": "\x00"}]},
    ],
    ids=[
        "nan",
        "inf",
        "set",
        "tuple",
        "bytes",
        "object",
        "int-key",
        "surrogate",
        "nul-value",
        "nul-key",
        "nul-nested",
    ],
)
async def test_metadata_json_cannot_hold_is_refused(
    checkpointer: HistoryCheckpointer[Counter], metadata: Any
) -> None:
    before = await _seeded(checkpointer)
    cp = make_cp("t", 2)
    cp.metadata = metadata
    with pytest.raises(SerializationError):
        await checkpointer.save(cp)
    with pytest.raises(SerializationError):
        await checkpointer.save(make_cp("t", 2), thread_metadata=metadata)
    with pytest.raises(SerializationError):
        await checkpointer.set_thread_metadata("t", metadata)
    assert await snapshot(checkpointer) == before


@pytest.mark.parametrize("node", ["a\x00b", "\x00", "end\x00"], ids=["inside", "alone", "last"])
async def test_a_node_name_holding_nul_is_refused(
    checkpointer: HistoryCheckpointer[Counter], node: str
) -> None:
    """U+0000 in a node name is a SerializationError on every backend, before anything is written."""
    before = await _seeded(checkpointer)
    with pytest.raises(SerializationError, match="U\\+0000") as saved:
        await checkpointer.save(make_cp("t", 2, node=node))
    assert (saved.value.thread_id, saved.value.step) == ("t", 2)
    with pytest.raises(SerializationError, match="U\\+0000"):
        await checkpointer.save(make_cp("fresh", 0, node=node))
    with pytest.raises(SerializationError, match="U\\+0000"):
        await checkpointer.append("t", Counter(n=2), node=node)
    info = await checkpointer.thread_info("t")
    assert info is not None
    kept = [c for c in [await checkpointer.get("t", 0), await checkpointer.get("t", 1)] if c]
    kept[-1].node = node
    with pytest.raises(SerializationError, match="U\\+0000"):
        await checkpointer.restore_thread(
            info.model_copy(update={"thread_id": "copy"}),
            [c.model_copy(update={"thread_id": "copy"}) for c in kept],
        )
    assert await snapshot(checkpointer) == before


async def test_non_mapping_metadata_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    before = await _seeded(checkpointer)
    with pytest.raises(InvalidInput):
        await checkpointer.save(make_cp("t", 2), thread_metadata=["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await checkpointer.set_thread_metadata("t", "a")  # type: ignore[arg-type]
    assert await snapshot(checkpointer) == before


async def test_set_thread_metadata_of_unknown_thread_is_not_found(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    with pytest.raises(CheckpointNotFound):
        await checkpointer.set_thread_metadata("nobody", {"a": 1})
    assert await checkpointer.list_threads() == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": -1}, InvalidInput),
        ({"limit": 1.5}, InvalidInput),
        ({"limit": True}, InvalidInput),
        ({"filter": ["a"]}, InvalidInput),
        ({"filter": {1: 1}}, InvalidInput),
        ({"filter": {"a": math.nan}}, InvalidInput),
        ({"filter": {"a": [1]}}, InvalidInput),
        ({"filter": {"a": "x\x00"}}, InvalidInput),
        ({"filter": {"a\x00": 1}}, InvalidInput),
        ({"filter": {"n": {"a": "\x00"}}}, InvalidInput),
    ],
)
async def test_bad_listing_arguments_are_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    await _seeded(checkpointer)
    with pytest.raises(error):
        await checkpointer.list_checkpoints("t", **kwargs)
    with pytest.raises(error):
        await checkpointer.list_threads(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"keep_last": 0},
        {"keep_last": -1},
        {"keep_last": 1.0},
        {"older_than": 5},
        {"older_than": timedelta(seconds=-1)},
        {"keep_last": 1, "dry_run": 1},
    ],
)
async def test_bad_prune_arguments_are_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], kwargs: dict[str, Any]
) -> None:
    before = await _seeded(checkpointer)
    with pytest.raises(InvalidInput):
        await checkpointer.prune(**kwargs)
    assert await snapshot(checkpointer) == before


@pytest.mark.parametrize("inactive_for", [None, 5, timedelta(seconds=-1)])
async def test_bad_delete_threads_argument_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], inactive_for: Any
) -> None:
    before = await _seeded(checkpointer)
    with pytest.raises(InvalidInput):
        await checkpointer.delete_threads(inactive_for=inactive_for)
    assert await snapshot(checkpointer) == before


# --- states that SQLite could not store unchanged ------------------------------------------


class Inner(BaseModel):
    f: float = 0.0
    a: Any = None


class Deep(BaseModel):
    inner: Inner = Field(default_factory=Inner)


class Rich(StateSchema):
    x: float = 0.0
    maybe: float | None = None
    floats: list[float] = Field(default_factory=list)
    inner: Inner = Field(default_factory=Inner)
    deep: Deep = Field(default_factory=Deep)
    anything: Any = None
    mapping: dict[str, Any] = Field(default_factory=dict)
    text: str = ""


def _rich_cases() -> dict[str, tuple[Callable[[], Rich], str]]:
    rec: list[Any] = []
    rec.append(rec)
    return {
        "nan": (lambda: Rich(x=math.nan), "x"),
        "inf-optional": (lambda: Rich(maybe=math.inf), "maybe"),
        "neg-inf-in-list": (lambda: Rich(floats=[1.0, -math.inf]), "floats"),
        "nan-in-nested-model": (lambda: Rich(inner=Inner(f=math.nan)), "f"),
        "inf-two-models-deep": (lambda: Rich(deep=Deep(inner=Inner(f=math.inf))), "f"),
        "nan-in-any": (lambda: Rich(anything=[1.0, math.nan]), "anything"),
        "inf-in-dict-of-any": (lambda: Rich(mapping={"k": {"z": math.inf}}), "mapping"),
        "set-in-any": (lambda: Rich(anything={1, 2}), "anything"),
        "tuple-in-any": (lambda: Rich(anything=(1, 2)), "anything"),
        "bytes-in-any": (lambda: Rich(anything=b"raw"), "anything"),
        "model-in-any": (lambda: Rich(anything=Inner()), "anything"),
        "set-in-nested-any": (lambda: Rich(inner=Inner(a={"q": {1}})), "q"),
        "tuple-in-dict-of-any": (lambda: Rich(mapping={"k": (1,)}), "mapping"),
        "object-in-any": (lambda: Rich(anything=object()), "object"),
        "int-key-in-any": (lambda: Rich(anything={1: "x"}), "anything"),
        "lone-surrogate": (lambda: Rich(text="a\ud800"), "surrogate"),
        "lone-surrogate-in-any": (lambda: Rich(anything=["\udfff"]), "surrogate"),
        "recursion": (lambda: Rich(anything=rec), ""),
    }


RICH_CASES = _rich_cases()


@pytest.mark.parametrize("case", sorted(RICH_CASES))
async def test_state_json_cannot_hold_is_refused_naming_the_field(
    make_checkpointer: Factory, case: str
) -> None:
    cp = await make_checkpointer(Rich)
    good = Checkpoint[Rich](
        thread_id="t", state=GraphState[Rich](data=Rich(x=1.5)), step=0, node="n"
    )
    await cp.save(good)
    before = await snapshot(cp)
    build, needle = RICH_CASES[case]
    for tid, step in (("t", 1), ("fresh", 0)):
        bad = Checkpoint[Rich](
            thread_id=tid, state=GraphState[Rich](data=build()), step=step, node="n"
        )
        with pytest.raises(SerializationError) as info:
            await cp.save(bad)
        assert needle in str(info.value)
        assert info.value.thread_id == tid
    assert await snapshot(cp) == before


async def test_plain_json_in_any_fields_round_trips(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer(Rich)
    state = Rich(
        x=-0.0,
        maybe=1e308,
        floats=[0.1, 2.5e-300],
        inner=Inner(f=3.25, a={"k": [1, "two", None, True, 2.5, {"deep": []}]}),
        anything=[{"a": 1}, "s", 2**62, -(2**62)],
        mapping={"NaN": "Infinity", "text": "NaN Infinity -Infinity"},
        text="ünï 😀 \x00 NaN",
    )
    await cp.save(
        Checkpoint[Rich](thread_id="t", state=GraphState[Rich](data=state), step=0, node="n")
    )
    loaded = await cp.load("t")
    assert loaded is not None
    assert loaded.state.data == state


async def test_max_state_bytes_refuses_larger_states(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer(max_state_bytes=200)
    await cp.save(make_cp("t", 0))
    before = await snapshot(cp)
    big = make_cp("t", 1)
    big.state.data.log.extend(["x" * 50] * 10)
    with pytest.raises(StateTooLarge):
        await cp.save(big)
    assert await snapshot(cp) == before
