"""A child process that runs a small graph on many threads of a shared database.

``python -m tests.langgraph.writer_child DB NAME COUNT``: ``COUNT`` threads
``NAME-0`` … each run once; prints ``done`` when every invocation returned.
"""

from __future__ import annotations

import operator
import sys
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from forkpoint.langgraph import ForkpointSaver


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


def main(db: str, name: str, count: str) -> None:
    builder = StateGraph(State)
    for node in ("a", "b", "c"):
        builder.add_node(node, lambda state, node=node: {"log": [node]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    with ForkpointSaver.from_conn_string(db, busy_timeout=60) as saver:
        graph = builder.compile(checkpointer=saver)
        for i in range(int(count)):
            config: Any = {"configurable": {"thread_id": f"{name}-{i}"}}
            assert graph.invoke({"log": []}, config)["log"] == ["a", "b", "c"]
    print("done")


if __name__ == "__main__":
    main(*sys.argv[1:])
