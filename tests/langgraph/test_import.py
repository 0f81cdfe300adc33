"""import_langgraph: LangGraph SQLite databases copied over, decoded without importing by name."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import ormsgpack
import pytest

pytest.importorskip(
    "langgraph.checkpoint.sqlite", reason="langgraph-checkpoint-sqlite is not installed"
)

from langgraph.checkpoint.sqlite import SqliteSaver

from forkpoint.errors import InvalidInput
from forkpoint.langgraph import ForkpointSaver
from forkpoint.langgraph.importer import import_langgraph
from tests.langgraph.test_graphs import build, normal, scenario_sync

SENTINEL = "tests.reliability.sentinel_payload"


def make_source(path: Path) -> list[Any]:
    """A LangGraph database made by running the real-graph scenario; its full history."""
    with SqliteSaver.from_conn_string(str(path)) as theirs:
        scenario_sync(theirs)
        graph = build().compile(checkpointer=theirs)
        cfg: Any = {"configurable": {"thread_id": "conversation"}}
        return [normal(s) for s in graph.get_state_history(cfg)]


async def test_a_real_graph_thread_imports_and_reads_back_identically(tmp_path: Path) -> None:
    source = tmp_path / "langgraph.sqlite"
    expected = make_source(source)
    seen: list[tuple[int, int]] = []
    async with ForkpointSaver.from_conn_string(str(tmp_path / "fp.db")) as saver:
        graph = build().compile(checkpointer=saver)
        saver.register_graph(graph)
        report = await import_langgraph(source, saver, progress=lambda d, t: seen.append((d, t)))
        cfg: Any = {"configurable": {"thread_id": "conversation"}}
        got = [normal(s) async for s in graph.aget_state_history(cfg)]
        sub = [t async for t in saver.alist(None)]
    assert report.skipped == []
    assert got == expected
    assert report.threads == 1
    assert report.checkpoints == len(sub)  # subgraph namespaces included
    assert report.checkpoints > len(expected)
    assert report.writes > 0
    assert seen[-1] == (report.checkpoints, report.checkpoints)
    assert report.smaller_by > 0


async def test_unknown_and_hostile_records_are_reported_not_run(tmp_path: Path) -> None:
    source = tmp_path / "langgraph.sqlite"
    make_source(source)
    marker = tmp_path / "pwned"
    forged = ormsgpack.packb(
        {
            "v": 1,
            "id": "x",
            "channel_values": {
                "a": ormsgpack.Ext(0, ormsgpack.packb(("os", "system", f"touch {marker}"))),
                "b": ormsgpack.Ext(5, ormsgpack.packb((SENTINEL, "Boom", {}, "model_validate"))),
            },
            "channel_versions": {},
            "versions_seen": {},
        }
    )
    conn = sqlite3.connect(source)
    conn.execute(
        "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, type, checkpoint, metadata)"
        " VALUES ('evil', '', 'x', 'msgpack', ?, '{}')",
        (forged,),
    )
    conn.execute(
        "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, type, checkpoint, metadata)"
        " VALUES ('pickled', '', 'y', 'pickle', ?, '{}')",
        (b"cos\nsystem\n(S'true'\ntR.",),
    )
    conn.commit()
    conn.close()
    sys.modules.pop(SENTINEL, None)
    async with ForkpointSaver.from_conn_string(str(tmp_path / "fp.db")) as saver:
        saver.register_graph(build().compile(checkpointer=saver))
        report = await import_langgraph(source, saver)
        assert await saver.aget_tuple({"configurable": {"thread_id": "evil"}}) is None
    assert not marker.exists()
    assert SENTINEL not in sys.modules
    assert any("os.system is not in the import allowlist" in s for s in report.skipped), (
        report.skipped
    )
    assert any("'pickle'" in s for s in report.skipped)
    assert report.threads == 3  # conversation imported; the two bad ones reported


async def test_a_thread_already_in_the_target_is_left_alone(tmp_path: Path) -> None:
    source = tmp_path / "langgraph.sqlite"
    make_source(source)
    async with ForkpointSaver.from_conn_string(str(tmp_path / "fp.db")) as saver:
        saver.register_graph(build().compile(checkpointer=saver))
        first = await import_langgraph(source, saver)
        again = await import_langgraph(source, saver)
    assert first.checkpoints > 0
    assert again.checkpoints == 0
    assert again.skipped == ["thread 'conversation': already in the target, not copied"]


async def test_a_file_without_langgraph_tables_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    async with ForkpointSaver.from_conn_string(":memory:") as saver:
        with pytest.raises(InvalidInput):
            await import_langgraph(other, saver)
        with pytest.raises(InvalidInput):
            await import_langgraph(tmp_path / "missing.db", saver)
