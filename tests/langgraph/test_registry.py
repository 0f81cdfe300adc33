"""The type registry: exact round trips, refusals on save, escaping, and hostile rows."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import pathlib
import sqlite3
import sys
import uuid
from collections import deque
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, TypedDict
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed")

from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.graph.message import add_messages
from langgraph.types import Command, Interrupt, Overwrite, Send
from pydantic import BaseModel, ConfigDict, Field, field_validator

from forkpoint.errors import InvalidInput, SerializationError
from forkpoint.langgraph import (
    MAX_DEPTH,
    TAG,
    TypeRegistry,
    UndecodableValue,
    UnregisteredType,
    ValueCodecError,
    default_registry,
)

SENTINEL = "tests.reliability.sentinel_payload"


class Order(BaseModel):
    model_config = ConfigDict(extra="allow")

    sku: str
    qty: int = Field(ge=0)
    placed: datetime | None = None
    tags: set[str] = Field(default_factory=set)
    note: str = "none"
    alias_field: int = Field(default=0, alias="aliasField")

    @field_validator("sku")
    @classmethod
    def upper(cls, value: str) -> str:
        return value.upper()


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Basket(BaseModel):
    items: list[Order]
    colour: Colour | None = None


class State(TypedDict):
    messages: Annotated[list[Any], add_messages]
    basket: Basket
    where: Point | None


def registry() -> TypeRegistry:
    reg = default_registry()
    reg.register_schema(State)
    return reg


def round_trip(value: Any, reg: TypeRegistry | None = None) -> Any:
    reg = reg or registry()
    text = reg.dumps(value, channel="c")
    json.loads(text)  # always plain JSON
    return reg.loads(text, channel="c")


BUILTINS: list[Any] = [
    datetime(2026, 1, 2, 3, 4, 5, 6),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=1),
    datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=5, minutes=30), "IST")),
    date(2026, 2, 3),
    time(4, 5, 6, 7),
    timedelta(days=-3, seconds=5, microseconds=7),
    timezone(timedelta(hours=-2), "X"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.14159265358979323846264338327950288"),
    b"\x00\xffbytes",
    bytearray(b"abc"),
    (1, "two", (3.0, None)),
    {1, 2, 3},
    frozenset({"a", "b"}),
    deque([1, 2, 3], maxlen=5),
    pathlib.PurePosixPath("/a/b"),
    pathlib.Path("rel/x.txt"),
    {1: "int key", (2, 3): "tuple key"},
    {"nested": [{"deep": [1, 2.5, True, None, "\ud800 lone surrogate"]}]},
    HumanMessage("hi", id="h1", name="ann"),
    AIMessage(
        "",
        id="a1",
        tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "call1"}],
        usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
    ),
    AIMessageChunk(content="partial", id="c1"),
    SystemMessage([{"type": "text", "text": "be brief"}]),
    ToolMessage("42", tool_call_id="call1", artifact={"raw": b"\x01"}),
    RemoveMessage(id="h1"),
    Document(page_content="doc", metadata={"source": "a.txt", "when": date(2026, 1, 1)}, id="d"),
    Interrupt("approve?", "int-id"),
    Send("node", {"arg": (1, 2)}),
    Command(resume={"int-id": "yes"}, goto=[Send("x", 1), "y"], update={"k": 1}),
    Overwrite([1, 2]),
]


@pytest.mark.parametrize("value", BUILTINS, ids=lambda v: type(v).__name__)
def test_every_builtin_comes_back_equal_and_of_the_same_type(value: Any) -> None:
    back = round_trip(value)
    assert type(back) is type(value)
    if isinstance(value, Send | Interrupt | Overwrite | Command):
        assert repr(back) == repr(value)
    else:
        assert back == value
    if isinstance(value, datetime):
        assert back.tzinfo == value.tzinfo
        assert back.fold == value.fold


def test_floats_that_json_cannot_spell_round_trip() -> None:
    back = round_trip([math.nan, math.inf, -math.inf, -0.0, 1e308])
    assert math.isnan(back[0])
    assert back[1:3] == [math.inf, -math.inf]
    assert math.copysign(1, back[3]) == -1
    assert back[4] == 1e308


def test_registered_models_dataclasses_and_enums_round_trip_with_their_types() -> None:
    order = Order(
        sku="abc",
        qty=2,
        placed=datetime(2026, 1, 1, tzinfo=UTC),
        tags={"x"},
        aliasField=7,
        extra_field=b"e",
    )
    value = {"basket": Basket(items=[order], colour=Colour.BLUE), "where": Point(1, 2)}
    back = round_trip(value)
    assert back == value
    assert type(back["basket"].items[0]) is Order
    assert back["basket"].items[0].model_extra == {"extra_field": b"e"}
    assert type(back["where"]) is Point
    assert back["basket"].colour is Colour.BLUE


def test_stored_text_is_readable_with_json_extract() -> None:
    reg = registry()
    text = reg.dumps(
        {"messages": [HumanMessage("hello there", id="1")], "n": 3, "when": date(2026, 1, 2)}
    )
    conn = sqlite3.connect(":memory:")
    row = conn.execute(
        "SELECT json_extract(?, '$.messages[0].v.content'), json_extract(?, '$.messages[0].__fp__'),"
        " json_extract(?, '$.n'), json_extract(?, '$.when.v')",
        (text, text, text, text),
    ).fetchone()
    conn.close()
    assert row == ("hello there", "lc.HumanMessage", 3, "2026-01-02")


def test_defaults_are_left_out_of_the_stored_model() -> None:
    stored = json.loads(registry().dumps(Order(sku="a", qty=1)))
    assert stored == {TAG: "Order", "v": {"sku": "A", "qty": 1, "tags": {TAG: "set", "v": []}}}


# --- refused on save ---------------------------------------------------------------------------


class Unknown:
    pass


class Unregistered(BaseModel):
    a: int = 1


class MyHuman(HumanMessage):
    pass


@pytest.mark.parametrize(
    ("value", "where", "type_name"),
    [
        ({"a": [1, {"b": Unknown()}]}, "$.a[1].b", "Unknown"),
        ([Unregistered()], "$[0]", "Unregistered"),
        ({"msgs": [HumanMessage("x"), MyHuman(content="y")]}, "$.msgs[1]", "MyHuman"),
        ({"odd key": object()}, '$["odd key"]', "object"),
        ({"t": (1, Unknown())}, "$.t[1]", "Unknown"),
        (Basket(items=[Order(sku="a", qty=1, extra=Unknown())]), "$.items[0].extra", "Unknown"),
    ],
)
def test_an_unregistered_type_is_refused_naming_channel_and_path(
    value: Any, where: str, type_name: str
) -> None:
    with pytest.raises(UnregisteredType) as caught:
        registry().dumps(value, channel="state")
    assert caught.value.channel == "state"
    assert caught.value.where == where
    assert type_name in str(caught.value)
    assert "'state'" in str(caught.value)
    assert isinstance(caught.value, SerializationError)


def test_too_deep_and_circular_values_are_refused_on_save() -> None:
    deep: list[Any] = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ValueCodecError, match="deeper"):
        registry().dumps(deep)
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(ValueCodecError, match="circular"):
        registry().dumps({"x": loop}, channel="c")
    shallow: list[Any] = []
    for _ in range(MAX_DEPTH - 5):
        shallow = [shallow]
    assert round_trip(shallow) == shallow


def test_exceptions_are_stored_as_their_repr_and_read_back_as_text() -> None:
    assert round_trip({"err": ValueError("boom")}) == {"err": "ValueError('boom')"}


# --- user data that looks like the format -------------------------------------------------------


@pytest.mark.parametrize(
    "user_dict",
    [
        {TAG: "datetime", "v": "2026-01-01T00:00:00"},
        {TAG: "dict", "v": {TAG: "x"}},
        {TAG: 1},
        {"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {"command": "id"}},
        {"v": 1, TAG: {TAG: "bytes", "v": "AA=="}},
    ],
)
def test_a_user_dict_carrying_the_tag_key_round_trips_as_that_dict(
    user_dict: dict[str, Any],
) -> None:
    back = round_trip({"data": [user_dict]})
    assert back == {"data": [user_dict]}
    assert type(back["data"][0]) is dict


# --- hostile rows -------------------------------------------------------------------------------

HOSTILE = [
    ('{"__fp__": "os.system", "v": "touch /tmp/pwned"}', "not in the saver's type registry"),
    (f'{{"__fp__": "{SENTINEL}.Boom", "v": {{}}}}', "not in the saver's type registry"),
    ('{"__fp__": "datetime", "v": "2026-01-01", "extra": 1}', "malformed"),
    ('{"__fp__": 5, "v": 1}', "malformed"),
    ('{"__fp__": "datetime"}', "malformed"),
    ('{"__fp__": "datetime", "v": 17}', "does not validate"),
    ('{"__fp__": "bytes", "v": "**not base64**"}', "does not validate"),
    ('{"__fp__": "float", "v": "1e9999"}', "unknown float"),
    ('{"__fp__": "map", "v": [[[1], 2]]}', "not hashable"),
    ('{"__fp__": "dict", "v": [1]}', "escaped dict"),
    (
        '{"__fp__": "lc.AIMessage", "v": {"lc": 1, "type": "constructor", '
        f'"id": ["{SENTINEL}", "Boom"], "kwargs": {{}}}}}}',
        "does not validate",
    ),
    ('{"__fp__": "Order", "v": {"sku": "a", "qty": -1}}', "does not validate"),
    ('{"__fp__": "Point", "v": {"x": 1, "y": 2, "z": 3}}', "does not validate"),
    ('{"__fp__": "lg.Send", "v": {"node": 3}}', "does not validate"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), "deeper"),
    ('{"a": NaN}', "not valid JSON"),
    ("not json", "not valid JSON"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE)
def test_a_hostile_row_is_a_typed_error_and_runs_nothing(text: str, message: str) -> None:
    sys.modules.pop(SENTINEL, None)
    with pytest.raises(UndecodableValue, match=message) as caught:
        registry().loads(text, channel="messages")
    assert caught.value.channel == "messages"
    assert SENTINEL not in sys.modules


def test_a_plain_lc_constructor_payload_is_data_not_a_call() -> None:
    payload = {"lc": 1, "type": "constructor", "id": [*SENTINEL.split("."), "Boom"], "kwargs": {}}
    sys.modules.pop(SENTINEL, None)
    assert registry().loads(json.dumps(payload)) == payload
    assert SENTINEL not in sys.modules


def test_the_error_path_points_inside_the_value() -> None:
    text = '{"a": [0, {"b": {"__fp__": "nope", "v": 1}}]}'
    with pytest.raises(UndecodableValue) as caught:
        registry().loads(text, channel="c")
    assert caught.value.where == "$.a[1].b"


# --- registering ----------------------------------------------------------------------------------


def test_register_schema_finds_models_dataclasses_and_enums_through_annotations() -> None:
    reg = default_registry()
    names = reg.register_schema(State)
    assert sorted(names) == ["Basket", "Colour", "Order", "Point"]
    assert reg.register_schema(State) == []  # already known


def test_register_refuses_name_clashes_and_non_classes() -> None:
    reg = default_registry()
    reg.register(Order)

    class Other(BaseModel):
        pass

    with pytest.raises(InvalidInput, match="already taken"):
        reg.register(Other, name="Order")
    with pytest.raises(InvalidInput, match="reserved"):
        reg.register(Other, name="dict")
    with pytest.raises(InvalidInput, match="needs a class"):
        reg.register(Order(sku="a", qty=1))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not a pydantic model"):
        reg.register(Unknown)
    with pytest.raises(InvalidInput, match="already registered"):
        reg.register(Order, name="Order2")
    assert reg.register(Other, name="Other2") == "Other2"
    assert round_trip(Other(), reg) == Other()


def test_a_copied_registry_is_independent() -> None:
    base = default_registry()
    copy = base.copy()
    copy.register(Order)
    assert "Order" in copy.names()
    assert "Order" not in base.names()
    with pytest.raises(UnregisteredType):
        base.dumps(Order(sku="a", qty=1))
