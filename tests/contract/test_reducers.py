"""StateSchema.apply: the seed's reducer, with per-field Append / Merge / Overwrite."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field

from forkpoint import Append, InvalidInput, Merge, Overwrite, Reducer, StateSchema


class Agent(StateSchema):
    step: int = 0
    messages: Annotated[list[str], Append] = Field(default_factory=list)
    scratch: Annotated[dict[str, Any], Merge] = Field(default_factory=dict)
    plan: Annotated[list[str], Overwrite] = Field(default_factory=list)
    best: Annotated[int, Reducer(max)] = 0


def test_append_merge_overwrite_and_default() -> None:
    start = Agent(step=1, messages=["hi"], scratch={"a": 1}, plan=["x"], best=5)
    out = Agent.apply(
        start, {"step": 2, "messages": ["there"], "scratch": {"b": 2}, "plan": ["y"], "best": 3}
    )
    assert out == Agent(
        step=2, messages=["hi", "there"], scratch={"a": 1, "b": 2}, plan=["y"], best=5
    )
    assert Agent.apply(out, {"scratch": {"a": 9}}).scratch == {"a": 9, "b": 2}


def test_apply_leaves_current_unchanged_and_shares_nothing() -> None:
    start = Agent(messages=["a"], scratch={"k": [1]})
    out = Agent.apply(start, {"messages": ["b"]})
    assert start == Agent(messages=["a"], scratch={"k": [1]})
    out.scratch["k"].append(2)
    out.messages.append("c")
    assert start.scratch == {"k": [1]}
    assert start.messages == ["a"]
    same = Agent.apply(start, None)
    assert same == start
    assert same is not start


def test_partial_model_update_uses_only_set_fields() -> None:
    start = Agent(step=4, messages=["a"], best=7)
    out = Agent.apply(start, Agent(messages=["b"]))
    assert (out.step, out.messages, out.best) == (4, ["a", "b"], 7)


def test_unknown_fields_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="nope"):
        Agent.apply(Agent(), {"nope": 1})


def test_update_that_does_not_validate_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        Agent.apply(Agent(), {"step": "not a number"})
    with pytest.raises(InvalidInput):
        Agent.apply(Agent(), {"messages": [1, 2]})


def test_bad_current_or_update_type_is_invalid_input() -> None:
    class Other(StateSchema):
        step: int = 0

    with pytest.raises(InvalidInput):
        Agent.apply(Other(), {"step": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Agent.apply(Agent(), [("step", 1)])  # type: ignore[arg-type]
