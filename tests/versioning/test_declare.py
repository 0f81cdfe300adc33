"""A state class's version and upgrade chain are checked when the class statement runs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ConfigDict, ValidationError

from forkpoint import InvalidInput, JsonState, StateSchema, upgrade_from
from tests.versioning.states import TicketV1, TicketV2, TicketV3


def _same(state: dict[str, Any]) -> dict[str, Any]:
    return state


def test_versions_and_steps_are_declared_on_the_class() -> None:
    assert TicketV1.state_version == 1
    assert TicketV2.state_version == 2
    assert TicketV3.state_version == 3
    assert sorted(TicketV3._upgrade_steps) == [1, 2]
    assert StateSchema.state_version == 1
    # The steps stay plain functions of the stored object, testable on their own.
    assert TicketV2.title_becomes_headline({"title": "t", "owner": "o", "notes": []}) == {
        "headline": "t",
        "notes": [],
    }


def test_a_missing_step_is_an_error_when_the_class_is_defined() -> None:
    with pytest.raises(InvalidInput, match=r"no upgrade step from version\(s\) 2, 3"):

        class Gappy(StateSchema, version=4):
            @upgrade_from(1)
            def one(state: dict[str, Any]) -> dict[str, Any]:
                return state


def test_a_version_without_any_step_is_refused() -> None:
    with pytest.raises(
        InvalidInput, match=r"version 2 but has no upgrade step from version\(s\) 1"
    ):

        class Bumped(StateSchema, version=2):
            x: int = 0


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "2"])
def test_a_version_must_be_an_int_from_one(bad: object) -> None:
    with pytest.raises(InvalidInput, match="must be an int ≥ 1"):

        class Bad(StateSchema, version=bad):
            x: int = 0


def test_a_step_at_or_past_the_version_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"steps from version\(s\) 2"):

        class Ahead(StateSchema, version=2):
            @upgrade_from(1)
            def one(state: dict[str, Any]) -> dict[str, Any]:
                return state

            @upgrade_from(2)
            def two(state: dict[str, Any]) -> dict[str, Any]:
                return state


def test_steps_without_a_version_are_refused() -> None:
    """Forgetting ``version=`` would otherwise leave the steps unused."""
    with pytest.raises(InvalidInput, match="no version"):

        class Forgot(StateSchema):
            @upgrade_from(1)
            def one(state: dict[str, Any]) -> dict[str, Any]:
                return state


def test_two_steps_from_one_version_are_refused() -> None:
    with pytest.raises(InvalidInput, match="two upgrade steps from version 1"):

        class Twice(StateSchema, version=2):
            @upgrade_from(1)
            def one(state: dict[str, Any]) -> dict[str, Any]:
                return state

            @upgrade_from(1)
            def again(state: dict[str, Any]) -> dict[str, Any]:
                return state


@pytest.mark.parametrize("bad", [0, True, None, "1"])
def test_upgrade_from_checks_its_version(bad: object) -> None:
    with pytest.raises(InvalidInput):
        upgrade_from(bad)  # type: ignore[arg-type]


def test_upgrade_from_refuses_what_is_no_function() -> None:
    with pytest.raises(InvalidInput, match="plain function"):
        upgrade_from(1)(classmethod(_same))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="plain function"):
        upgrade_from(1)(42)  # type: ignore[arg-type]


def test_a_subclass_inherits_version_and_steps_and_may_extend_them() -> None:
    class Same(TicketV2):
        pass

    assert Same.state_version == 2
    assert Same._upgrade_steps == TicketV2._upgrade_steps

    class Next(TicketV2, version=3):
        @upgrade_from(2)
        def two(state: dict[str, Any]) -> dict[str, Any]:
            return state

    assert sorted(Next._upgrade_steps) == [1, 2]
    assert Next._upgrade_steps[1] is TicketV2._upgrade_steps[1]


def test_unknown_keys_are_refused_when_constructing_unless_the_class_opts_in() -> None:
    with pytest.raises(ValidationError, match="extra_forbidden"):
        TicketV2(headline="h", title="typo")  # type: ignore[call-arg]

    class Lenient(StateSchema):
        model_config = ConfigDict(extra="ignore")
        x: int = 0

    assert Lenient(x=1, y=2) == Lenient(x=1)
    assert JsonState(a=1).model_dump() == {"a": 1}
