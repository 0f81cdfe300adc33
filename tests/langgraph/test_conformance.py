"""LangGraph's own conformance suite, base and extended capabilities, on a file and in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip(
    "langgraph.checkpoint.conformance", reason="langgraph-checkpoint-conformance is not installed"
)

from langgraph.checkpoint.conformance import checkpointer_test, validate

from forkpoint.langgraph import ForkpointSaver

EXPECTED = {
    "put": 17,
    "put_writes": 10,
    "get_tuple": 10,
    "list": 16,
    "delete_thread": 5,
    "delete_for_runs": 7,
    "copy_thread": 8,
    "prune": 8,
}


@pytest.mark.parametrize("where", ["file", "memory"])
async def test_the_whole_conformance_suite_passes(tmp_path: Path, where: str) -> None:
    """81 of 81: every base and every extended capability is detected and passes."""
    path = str(tmp_path / "lg.db") if where == "file" else ":memory:"

    @checkpointer_test(name=f"ForkpointSaver-{where}")
    async def factory() -> AsyncIterator[ForkpointSaver]:
        async with ForkpointSaver.from_conn_string(path) as saver:
            yield saver

    report = await validate(factory)
    results = report.to_dict()["results"]
    failures = {name: r["failures"] for name, r in results.items() if r.get("failures")}
    assert failures == {}
    assert {name: r["tests_passed"] for name, r in results.items()} == EXPECTED
    assert sum(EXPECTED.values()) == 81
