"""Decoding a stored state runs the state class's own code, wherever a backend decodes it.

A backend may decode where it reads (SQLite decodes on its reader thread);
to the caller it is as if the load decoded on its own event loop: the state
class's validators see the caller's context variables, and whatever they
raise reaches the caller unchanged, never typed as a storage error.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import pytest
from pydantic import field_validator

from forkpoint import Checkpoint, GraphState, StateSchema
from tests.conftest import Factory


class Trapped(Exception):
    """Raised by a validator on purpose: not a ValueError, so pydantic does not wrap it."""


TRAP: dict[str, bool] = {"armed": False}
CALLER: ContextVar[str] = ContextVar("forkpoint_test_caller", default="")
SEEN: list[str] = []


class Watched(StateSchema):
    n: int = 0

    @field_validator("n")
    @classmethod
    def _watch(cls, value: int) -> int:
        SEEN.append(CALLER.get())
        if TRAP["armed"]:
            raise Trapped(f"validator refused {value}")
        if value < 0:
            raise OSError("a validator's own OSError is no storage failure")
        return value


def _cp(step: int, n: int) -> Checkpoint[Watched]:
    return Checkpoint[Watched](
        thread_id="t", state=GraphState[Watched](data=Watched(n=n)), step=step, node="node"
    )


async def test_a_validators_own_error_reaches_the_caller_unchanged(
    make_checkpointer: Factory,
) -> None:
    cp = await make_checkpointer(Watched)
    await cp.save(_cp(0, 1))
    TRAP["armed"] = True
    try:
        with pytest.raises(Trapped, match="refused 1"):
            await cp.load("t")
        with pytest.raises(Trapped, match="refused 1"):
            await cp.get("t", 0)
    finally:
        TRAP["armed"] = False
    # Stored past the validator (model_construct), refused by it on the way back: an OSError
    # raised by user code stays an OSError, never a typed storage error.
    await cp.save(
        _cp(1, 0).model_copy(update={"state": GraphState(data=Watched.model_construct(n=-1))})
    )
    with pytest.raises(OSError, match="no storage failure") as raised:
        await cp.load("t")
    assert type(raised.value) is OSError
    loaded = await cp.get("t", 0)
    assert loaded is not None
    assert loaded.state.data.n == 1


async def test_validators_see_the_callers_context(
    make_checkpointer: Factory, backend_name: str
) -> None:
    if backend_name == "sync":
        pytest.skip(reason="forkpoint.sync calls run on its own loop, outside the caller's context")
    cp = await make_checkpointer(Watched)
    await cp.save(_cp(0, 1))
    SEEN.clear()
    token = CALLER.set("the caller")
    try:
        got: Any = await cp.load("t")
        assert got is not None
        assert await cp.get("t", 0) is not None
    finally:
        CALLER.reset(token)
    assert SEEN == ["the caller", "the caller"]
