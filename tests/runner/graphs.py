"""Workflows the runner tests share; importable by a child process (``python -m``).

Every node appends its name to ``runs`` (an in-memory list, or a file when
``RUNS_FILE`` is set) so a test can count executions exactly.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from forkpoint import Append, HistoryCheckpointer, Next, Runner, SqliteCheckpointer, StateSchema


class Doc(StateSchema):
    """Test state: a topic, a log every node appends to, and a counter routers read."""

    topic: str = ""
    log: Annotated[list[str], Append] = Field(default_factory=list)
    n: int = 0
    decision: str = ""


Recorder = Callable[[str], None]


def list_recorder(runs: list[str]) -> Recorder:
    return runs.append


def file_recorder(path: str) -> Recorder:
    def record(name: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())

    return record


def logging_node(name: str, record: Recorder) -> Callable[[Doc], Any]:
    async def node(state: Doc) -> dict[str, Any]:
        record(name)
        return {"log": [name]}

    return node


def linear(cp: HistoryCheckpointer[Doc], record: Recorder, **kw: Any) -> Runner[Doc]:
    """a → b → c."""
    return Runner(
        cp,
        nodes={n: logging_node(n, record) for n in ("a", "b", "c")},
        entry="a",
        edges={"a": "b", "b": "c"},
        **kw,
    )


FAN_EDGES = {
    "plan": "search",
    "read_1": "draft",
    "read_2": "draft",
    "read_3": "draft",
    "draft": "publish",
}
"""The research graph's fixed edges: ``search`` fans out to the three readers, which join at ``draft``."""


def research(cp: HistoryCheckpointer[Doc], record: Recorder, **kw: Any) -> Runner[Doc]:
    """plan → search ⇒ (read_1, read_2, read_3) → draft → publish."""

    async def search(state: Doc) -> Next:
        record("search")
        return Next(["read_1", "read_2", "read_3"], update={"log": ["search"]})

    nodes = {n: logging_node(n, record) for n in ("plan", "read_1", "read_2", "read_3", "draft")}
    nodes["search"] = search
    nodes["publish"] = logging_node("publish", record)
    return Runner(
        cp,
        nodes=nodes,
        entry="plan",
        edges=FAN_EDGES,
        **kw,
    )


async def _child(db: str, runs: str, marker: str) -> None:
    """Run `linear` on thread 'k'; node b records itself, says so, then blocks forever."""
    record = file_recorder(runs)

    async def b(state: Doc) -> dict[str, Any]:
        record("b")
        print(marker, flush=True)
        await asyncio.sleep(3600)  # killed long before this returns
        return {"log": ["b"]}

    async with SqliteCheckpointer.open(db, Doc) as cp:
        runner = Runner(
            cp,
            nodes={"a": logging_node("a", record), "b": b, "c": logging_node("c", record)},
            entry="a",
            edges={"a": "b", "b": "c"},
        )
        await runner.run("k", {"topic": "killed"})


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], sys.argv[2], sys.argv[3]))
