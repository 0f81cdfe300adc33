"""A LangGraph run in a child process, for the SIGKILL test: ``python -m tests.langgraph.crash_child``.

``start DB DIR``: runs ``prepare`` then a super-step where ``fast`` and ``slow``
run in parallel; ``slow`` waits until ``fast``'s pending write is in the
database, touches ``DIR/reached`` and sleeps (the parent kills the process).
``resume DB DIR``: opens the same database in a new process, continues the
thread with ``invoke(None)`` and prints the final state as JSON. Every node
run appends a line to ``DIR/ran``, so the parent can see what ran twice.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from forkpoint.langgraph import ForkpointSaver


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    data: bytes


def build(db: str, folder: Path, *, crash: bool) -> Any:
    def record(name: str) -> None:
        with (folder / "ran").open("a", encoding="utf-8") as f:
            f.write(name + "\n")

    def prepare(state: State) -> dict[str, Any]:
        record("prepare")
        return {"log": ["prepare"], "data": b"\x00\x01"}

    def fast(state: State) -> dict[str, Any]:
        record("fast")
        return {"log": ["fast"]}

    def slow(state: State) -> dict[str, Any]:
        record("slow")
        if crash:
            while not _fast_write_stored(db):
                time.sleep(0.01)
            (folder / "reached").touch()
            time.sleep(600)  # the parent kills the process here
        return {"log": ["slow"]}

    def finish(state: State) -> dict[str, Any]:
        record("finish")
        return {"log": ["finish"]}

    builder = StateGraph(State)
    for name, fn in (("prepare", prepare), ("fast", fast), ("slow", slow), ("finish", finish)):
        builder.add_node(name, fn)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "fast")
    builder.add_edge("prepare", "slow")
    builder.add_edge(["fast", "slow"], "finish")
    builder.add_edge("finish", END)
    return builder


def _fast_write_stored(db: str) -> bool:
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM lg_writes WHERE channel = 'log' AND value LIKE '%\"fast\"%'"
        ).fetchone()
    return bool(row[0])


def main(mode: str, db: str, folder: str) -> None:
    config: Any = {"configurable": {"thread_id": "crash"}}
    with ForkpointSaver.from_conn_string(db) as saver:
        graph = build(db, Path(folder), crash=mode == "start").compile(checkpointer=saver)
        if mode == "start":
            graph.invoke({"log": []}, config)
        else:
            final = graph.invoke(None, config)
            print(json.dumps({"log": final["log"], "data": final["data"].hex()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
