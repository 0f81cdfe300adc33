"""Programs a kill test runs in a child process (``python -m tests.runner.children MODE ...``).

Every node execution is appended to a file as ``thread:node`` (fsynced), so the
parent can count exactly which nodes ran, in the child and after recovery.
Each mode prints a marker line once the child is where it should be killed,
then blocks forever.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from forkpoint import HistoryCheckpointer, Next, NodeContext, Runner, SqliteCheckpointer
from tests.runner.graphs import FAN_EDGES, Doc, Recorder, file_recorder

BRANCH_NODES = ("plan", "search", "read_1", "read_2", "read_3", "draft", "publish")


def counting_node(name: str, record: Recorder) -> Any:
    """A node recording ``thread:name`` and appending ``name`` to the log."""

    async def node(state: Doc, ctx: NodeContext) -> dict[str, Any]:
        record(f"{ctx.thread_id}:{name}")
        return {"log": [name]}

    return node


def branches(cp: HistoryCheckpointer[Doc], record: Recorder, read_2: Any = None) -> Runner[Doc]:
    """plan → search ⇒ (read_1, read_2, read_3) → draft → publish, branches concurrent."""

    async def search(state: Doc, ctx: NodeContext) -> Next:
        record(f"{ctx.thread_id}:search")
        return Next(["read_1", "read_2", "read_3"], update={"log": ["search"]})

    nodes = {n: counting_node(n, record) for n in BRANCH_NODES}
    nodes["search"] = search
    if read_2 is not None:
        nodes["read_2"] = read_2
    return Runner(
        cp,
        nodes=nodes,
        entry="plan",
        edges=FAN_EDGES,
        max_concurrency=3,
    )


def linear3(
    cp: HistoryCheckpointer[Doc], record: Recorder, b: Any = None, **kw: Any
) -> Runner[Doc]:
    """a → b → c, recording ``thread:node``."""
    nodes = {n: counting_node(n, record) for n in ("a", "b", "c")}
    if b is not None:
        nodes["b"] = b
    return Runner(cp, nodes=nodes, entry="a", edges={"a": "b", "b": "c"}, **kw)


async def _branches_child(db: str, runs: str, marker: str) -> None:
    """read_1 and read_3 finish and are saved; read_2 then says so and blocks."""
    record = file_recorder(runs)
    async with SqliteCheckpointer.open(db, Doc) as cp:

        async def read_2(state: Doc, ctx: NodeContext) -> dict[str, Any]:
            record(f"{ctx.thread_id}:read_2")
            # ASYNC110: the runner has no hook to signal a save; poll the database.
            while (await cp.list_checkpoints("k", newest_first=True, limit=1))[0].step < 4:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # until both sibling branches are saved
            print(marker, flush=True)
            await asyncio.Event().wait()  # killed here
            return {}

        await branches(cp, record, read_2).run("k", {"topic": "branches"})


async def _threads_child(db: str, runs: str, marker: str, count: str) -> None:
    """``count`` threads run at once; each blocks in b; the marker once all are in b."""
    record = file_recorder(runs)
    inside: list[str] = []
    every = asyncio.Event()

    async def b(state: Doc, ctx: NodeContext) -> dict[str, Any]:
        record(f"{ctx.thread_id}:b")
        inside.append(ctx.thread_id)
        if len(inside) == int(count):
            print(marker, flush=True)
        await every.wait()  # never set: killed here
        return {}

    async with SqliteCheckpointer.open(db, Doc) as cp:
        runner = linear3(cp, record, b)
        await asyncio.gather(*(runner.run(f"t{i}", {"topic": "x"}) for i in range(int(count))))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "branches":
        asyncio.run(_branches_child(*args))
    else:
        asyncio.run(_threads_child(*args))
