"""StateReader: stored text of any version becomes the current class, or a typed error; no key is lost."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypedDict

from forkpoint import JsonState, SerializationError, StateSchema, StateVersionError, upgrade_from
from forkpoint.versioning import StateReader, upgrade_state
from tests.versioning.states import TicketV1, TicketV2, TicketV3, expected_v2, expected_v3

V1 = {"title": "printer on fire", "priority": "high", "owner": "ann", "notes": ["smoke"]}


def read(cls: type[StateSchema], data: object, version: int) -> Any:
    return StateReader(cls).read(json.dumps(data), version, thread_id="t", step=7)


def test_a_current_row_reads_as_stored() -> None:
    state = read(TicketV3, expected_v3(V1), 3)
    assert state == TicketV3.model_validate(expected_v3(V1))


def test_the_chain_runs_from_the_stored_version() -> None:
    assert read(TicketV2, V1, 1).model_dump() == expected_v2(V1)
    assert read(TicketV3, V1, 1).model_dump() == expected_v3(V1)
    assert read(TicketV3, expected_v2(V1), 2).model_dump() == expected_v3(V1)


def test_a_newer_row_is_a_typed_error_naming_everything() -> None:
    with pytest.raises(StateVersionError) as caught:
        read(TicketV2, expected_v3(V1), 3)
    err = caught.value
    assert isinstance(err, SerializationError)
    assert (err.thread_id, err.step) == ("t", 7)
    assert (err.state_type, err.stored_version, err.current_version) == ("TicketV2", 3, 2)
    assert "version 3 of TicketV2, newer than this class (version 2)" in str(err)
    assert "thread 't'" in str(err)
    assert "step 7" in str(err)


def test_unknown_keys_are_named_and_an_upgrade_step_suggested() -> None:
    """A rename without a step: the old key is refused, never silently replaced by a default."""

    class Renamed(StateSchema):
        headline: str = ""
        priority: str = "low"
        owner: str = ""
        notes: list[str] = Field(default_factory=list)

    with pytest.raises(StateVersionError) as caught:
        read(Renamed, V1, 1)
    assert caught.value.unknown_keys == ("title",)
    assert "@upgrade_from(1)" in str(caught.value)
    assert "extra='ignore'" in str(caught.value)


def test_extra_ignore_is_the_explicit_way_to_drop_unknown_keys() -> None:
    class Dropping(StateSchema):
        model_config = ConfigDict(extra="ignore")
        title: str

    assert read(Dropping, V1, 1) == Dropping(title="printer on fire")


def test_unknown_keys_left_by_an_upgrade_are_refused_too() -> None:
    class Sloppy(StateSchema, version=2):
        headline: str
        priority: str
        notes: list[str]

        @upgrade_from(1)
        def keeps_owner(state: dict[str, Any]) -> dict[str, Any]:
            state["headline"] = state.pop("title")
            return state

    with pytest.raises(StateVersionError) as caught:
        read(Sloppy, V1, 1)
    assert caught.value.unknown_keys == ("owner",)
    assert "after upgrading it from version 1" in str(caught.value)


class Inner(BaseModel):
    a: int = 0


class InnerIgnoring(BaseModel):
    model_config = ConfigDict(extra="ignore")
    a: int = 0


@dataclasses.dataclass
class InnerData:
    a: int = 0


class InnerDict(TypedDict):
    a: int


class Nested(StateSchema):
    inner: Inner = Inner()
    ignoring: InnerIgnoring = InnerIgnoring()
    data: InnerData = dataclasses.field(default_factory=InnerData)
    typed: InnerDict | None = None
    many: list[Inner] = Field(default_factory=list)


@pytest.mark.parametrize(
    ("stored", "key"),
    [
        ({"inner": {"a": 1, "b": 2}}, "inner.b"),
        ({"data": {"a": 1, "b": 2}}, "data.b"),
        ({"typed": {"a": 1, "b": 2}}, "typed.b"),
        ({"many": [{"a": 1}, {"a": 2, "zz": 0}]}, "many.1.zz"),
    ],
)
def test_nested_models_that_chose_nothing_do_not_drop_stored_keys(
    stored: dict[str, Any], key: str
) -> None:
    """pydantic's own default for a nested model is to drop unknown keys; reading refuses them."""
    with pytest.raises(StateVersionError) as caught:
        read(Nested, stored, 1)
    assert caught.value.unknown_keys == (key,)


def test_a_nested_model_that_chose_ignore_drops_as_it_asked() -> None:
    state = read(Nested, {"ignoring": {"a": 1, "b": 2}, "inner": {"a": 3}}, 1)
    assert state.ignoring == InnerIgnoring(a=1)
    assert state.inner == Inner(a=3)
    assert type(state.inner) is Inner


def test_a_class_needing_no_rewrite_reads_with_its_own_validator() -> None:
    """The hot path costs what it did before versions: pydantic's own validator, unchanged."""
    assert StateReader(TicketV3)._validator is TicketV3.__pydantic_validator__
    assert StateReader(Nested)._validator is not Nested.__pydantic_validator__


def test_a_failing_step_is_a_typed_error_naming_it() -> None:
    broken = {**V1, "priority": "urgent"}  # not in the step's table
    with pytest.raises(
        StateVersionError, match=r"upgrade step 2 → 3 .*priority_becomes_a_number"
    ) as caught:
        read(TicketV3, broken, 1)
    assert caught.value.failed_step == 2
    assert isinstance(caught.value.__cause__, KeyError)


def test_a_step_must_return_a_json_object() -> None:
    class ReturnsList(StateSchema, version=2):
        x: int = 0

        @upgrade_from(1)
        def wrong(state: dict[str, Any]) -> dict[str, Any]:
            return [state]  # type: ignore[return-value]

    class ReturnsSet(StateSchema, version=2):
        x: Any = None

        @upgrade_from(1)
        def wrong(state: dict[str, Any]) -> dict[str, Any]:
            return {"x": {1, 2}}

    with pytest.raises(StateVersionError, match="returned list, not a JSON object"):
        read(ReturnsList, {}, 1)
    with pytest.raises(StateVersionError, match="JSON cannot hold"):
        read(ReturnsSet, {}, 1)


def test_a_stored_state_that_is_no_object_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError) as caught:
        read(TicketV2, ["not", "an", "object"], 1)
    assert not isinstance(caught.value, StateVersionError)
    with pytest.raises(SerializationError):
        StateReader(TicketV2).read("{not json", 1)


@pytest.mark.parametrize("bad", [0, -1, True, None])
def test_a_stored_version_that_is_no_version_is_refused(bad: Any) -> None:
    with pytest.raises(SerializationError, match="not a version"):
        upgrade_state(TicketV2, dict(V1), bad)


def test_a_type_change_without_a_step_says_to_add_one() -> None:
    class Typed(StateSchema):
        title: str
        priority: int = 1
        owner: str = ""
        notes: list[str] = Field(default_factory=list)

    with pytest.raises(StateVersionError, match="raise its version and add an upgrade step"):
        read(Typed, V1, 1)


def test_json_state_reads_every_version_as_stored() -> None:
    assert read(JsonState, V1, 1).model_dump() == V1
    assert read(JsonState, V1, 99).model_dump() == V1


def test_steps_see_the_stored_object_only() -> None:
    """The step's input is a fresh parse: changing it never changes the stored text."""
    text = json.dumps(V1)
    StateReader(TicketV3).read(text, 1)
    assert json.loads(text) == V1
    assert TicketV1.model_validate(V1).title == "printer on fire"


class Tree(BaseModel):
    name: str
    children: list[Tree] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool = True


class Shaped(StateSchema):
    tree: Tree
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]


def test_the_reading_validator_keeps_recursion_unions_and_validators() -> None:
    """Reading rebuilds the validator (nested models forbid unknown keys); it must agree with pydantic's."""
    good = {
        "tree": {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]},
        "pet": {"kind": "dog"},
    }
    state = read(Shaped, good, 1)
    assert state == Shaped.model_validate(good)
    assert state.tree.children[0].children[0].name == "C"
    assert type(state.pet) is Dog
    bad = {
        "tree": {"name": "a", "children": [{"name": "b", "x": 1}]},
        "pet": {"kind": "cat", "y": 2},
    }
    with pytest.raises(StateVersionError) as caught:
        read(Shaped, bad, 1)
    assert caught.value.unknown_keys == ("tree.children.0.x", "pet.cat.y")
