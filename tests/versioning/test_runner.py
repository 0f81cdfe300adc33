"""The runner resumes a thread saved by version 1 of its state with version 2 of the class."""

from __future__ import annotations

from typing import Any

from forkpoint import Runner
from tests.versioning.conftest import Reopen
from tests.versioning.states import TicketV1, TicketV2


async def test_a_paused_run_resumes_under_the_new_class(open_as: Reopen) -> None:
    async def triage(state: TicketV1) -> dict[str, Any]:
        return {"notes": [f"triaged {state.title}"]}

    async def close_v1(state: TicketV1) -> dict[str, Any]:  # never runs: the deploy comes first
        raise AssertionError("version 1 must not run this")

    old = Runner(
        await open_as(TicketV1),
        nodes={"triage": triage, "close": close_v1},
        entry="triage",
        edges={"triage": "close"},
        interrupt_before=["close"],
    )
    paused = await old.run("T-1", {"title": "printer on fire", "owner": "ann"})
    assert paused.status == "interrupted"

    seen: list[TicketV2] = []

    async def close(state: TicketV2) -> dict[str, Any]:
        seen.append(state)
        return {"notes": [f"closed {state.headline}"]}

    new = Runner(
        await open_as(TicketV2),
        nodes={"triage": triage, "close": close},
        entry="triage",
        edges={"triage": "close"},
    )
    done = await new.resume("T-1")
    assert done.status == "done"
    assert seen[0].headline == "printer on fire"
    assert done.state.model_dump() == {
        "headline": "printer on fire",
        "priority": "low",
        "notes": ["triaged printer on fire", "closed printer on fire"],
    }
