"""The three versions of ``Ticket`` the versioning tests share.

Version 1 wrote ``tests/fixtures/ticket_v1.db`` (``make_ticket_v1.txt``).
Version 2 renames ``title`` to ``headline`` and removes ``owner``; version 3
turns ``priority`` from a word into a number and adds the required
``customer``. ``expected_v3`` is the same upgrade written independently of
the steps, so a test compares two derivations, not the steps with themselves.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from forkpoint import Append, StateSchema, upgrade_from

PRIORITY = {"low": 1, "normal": 2, "high": 3}


class TicketV1(StateSchema):
    title: str
    priority: str = "low"
    owner: str = ""
    notes: Annotated[list[str], Append] = Field(default_factory=list)


class TicketV2(StateSchema, version=2):
    headline: str
    priority: str = "low"
    notes: Annotated[list[str], Append] = Field(default_factory=list)

    @upgrade_from(1)
    def title_becomes_headline(state: dict[str, Any]) -> dict[str, Any]:
        state["headline"] = state.pop("title")
        del state["owner"]  # removed on purpose: the step says so
        return state


class TicketV3(StateSchema, version=3):
    headline: str
    priority: int = 1
    customer: str
    notes: Annotated[list[str], Append] = Field(default_factory=list)

    @upgrade_from(1)
    def title_becomes_headline(state: dict[str, Any]) -> dict[str, Any]:
        return TicketV2.title_becomes_headline(state)

    @upgrade_from(2)
    def priority_becomes_a_number(state: dict[str, Any]) -> dict[str, Any]:
        state["priority"] = PRIORITY[state["priority"]]
        state["customer"] = "unknown"
        return state


def expected_v2(v1: dict[str, Any]) -> dict[str, Any]:
    """What a version-1 state dump must read as under version 2."""
    return {"headline": v1["title"], "priority": v1["priority"], "notes": v1["notes"]}


def expected_v3(v1: dict[str, Any]) -> dict[str, Any]:
    """What a version-1 state dump must read as under version 3."""
    return {
        "headline": v1["title"],
        "priority": PRIORITY[v1["priority"]],
        "customer": "unknown",
        "notes": v1["notes"],
    }
