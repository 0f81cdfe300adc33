"""``forkpoint lg ...`` and ``forkpoint import-langgraph`` on real LangGraph databases.

The oracle for every listing is the saver's own LangGraph API (``list``,
``get_tuple``) or ``sqlite3`` on the file; the CLI itself never decodes a value.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from typer.testing import CliRunner, Result

pytest.importorskip(
    "langgraph.checkpoint.sqlite", reason="langgraph-checkpoint-sqlite is not installed"
)

from forkpoint.cli import app
from forkpoint.langgraph import ForkpointSaver
from tests.cli.conftest import assert_user_error
from tests.langgraph.test_graphs import Profile, scenario_sync
from tests.langgraph.test_import import make_source

THREAD = "conversation"


def run(db: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["--db", str(db), *args], env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A forkpoint database written by a real graph: subgraph namespaces and an update branch."""
    path = tmp_path / "agent.db"
    with ForkpointSaver.from_conn_string(str(path)) as saver:
        scenario_sync(saver)
    return path


def saved(db: Path) -> list[Any]:
    """Every checkpoint tuple the saver lists (newest first), read with the graph's classes."""
    with ForkpointSaver.from_conn_string(str(db), types=[Profile]) as saver:
        return list(saver.list(None))


def count_rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - fixed names


def test_threads_lists_every_namespace_with_its_checkpoint_count(db: Path) -> None:
    listed = json.loads(ok(run(db, "lg", "threads", "--json")))
    expected = Counter(
        (t.config["configurable"]["thread_id"], t.config["configurable"]["checkpoint_ns"])
        for t in saved(db)
    )
    assert {(r["thread_id"], r["checkpoint_ns"]): r["checkpoints"] for r in listed} == expected
    assert any(ns.startswith("review:") for _, ns in expected)  # the subgraph's namespaces
    table = ok(run(db, "lg", "threads"))
    assert "(root)" in table
    for _, ns in expected:
        assert (ns or "(root)") in table  # whole, never cut


def test_history_is_the_savers_list_newest_first_with_step_source_and_parent(db: Path) -> None:
    rows = json.loads(ok(run(db, "lg", "history", THREAD, "--ns", "", "--json")))
    expected = [
        t
        for t in saved(db)
        if t.config["configurable"]["thread_id"] == THREAD
        and t.config["configurable"]["checkpoint_ns"] == ""
    ]
    assert [r["checkpoint_id"] for r in rows] == [
        t.config["configurable"]["checkpoint_id"] for t in expected
    ]
    for row, t in zip(rows, expected, strict=True):
        assert row["step"] == t.metadata["step"]
        assert row["source"] == t.metadata["source"]
        parent = t.parent_config["configurable"]["checkpoint_id"] if t.parent_config else None
        assert row["parent_checkpoint_id"] == parent
    assert {r["source"] for r in rows} >= {"input", "loop", "update"}
    limited = json.loads(ok(run(db, "lg", "history", THREAD, "--limit", "2", "--json")))
    assert len(limited) == 2
    table = ok(run(db, "lg", "history", THREAD))
    for row in rows:
        assert row["checkpoint_id"] in table


def test_show_prints_channel_values_as_stored_json_without_the_graphs_classes(
    db: Path, tmp_path: Path
) -> None:
    # a fresh process whose path cannot import the graph's module (``tests``)
    env = {**os.environ, "FORKPOINT_DB": str(db), "PYTHONPATH": ""}
    shown = subprocess.run(
        [sys.executable, "-m", "forkpoint.cli", "lg", "show", THREAD],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    got = json.loads(shown.stdout)
    latest = next(t for t in saved(db) if t.config["configurable"]["checkpoint_ns"] == "")
    assert got["checkpoint_id"] == latest.config["configurable"]["checkpoint_id"]
    assert set(got["channel_values"]) == set(latest.checkpoint["channel_values"])
    profile = latest.checkpoint["channel_values"]["profile"]
    assert got["channel_values"]["profile"]["__fp__"] == "Profile"
    assert got["channel_values"]["profile"]["v"]["name"] == profile.name
    messages = latest.checkpoint["channel_values"]["messages"]
    assert [m["v"]["content"] for m in got["channel_values"]["messages"]] == [
        m.content for m in messages
    ]
    older = saved(db)[-1]
    old_id = older.config["configurable"]["checkpoint_id"]
    old_ns = older.config["configurable"]["checkpoint_ns"]
    by_id = json.loads(ok(run(db, "lg", "show", THREAD, old_id, "--ns", old_ns)))
    assert by_id["checkpoint_id"] == old_id


def test_show_and_history_name_an_unknown_thread_or_checkpoint_in_one_line(db: Path) -> None:
    assert_user_error(run(db, "lg", "history", "nope"), "no LangGraph thread 'nope'")
    assert_user_error(run(db, "lg", "show", "nope"), "no LangGraph thread 'nope'")
    assert_user_error(run(db, "lg", "show", THREAD, "not-an-id"), "no checkpoint 'not-an-id'")


def test_tree_shows_every_checkpoint_once_and_the_update_branch_indented(db: Path) -> None:
    lines = ok(run(db, "lg", "tree", THREAD)).splitlines()
    tuples = [t for t in saved(db) if t.config["configurable"]["thread_id"] == THREAD]
    ids = [t.config["configurable"]["checkpoint_id"] for t in tuples]
    printed = [line.split()[0] for line in lines if line.startswith("    ")]
    assert sorted(printed) == sorted(ids)
    children = Counter(
        (
            t.config["configurable"]["checkpoint_ns"],
            t.parent_config["configurable"]["checkpoint_id"],
        )
        for t in tuples
        if t.parent_config
    )
    (_, fork), _ = next((k, n) for k, n in children.items() if n > 1 and k[0] == "")
    indent = {line.split()[0]: len(line) - len(line.lstrip()) for line in lines}
    branches = [
        t.config["configurable"]["checkpoint_id"]
        for t in tuples
        if t.parent_config and t.parent_config["configurable"]["checkpoint_id"] == fork
    ]
    assert all(indent[b] > indent[fork] for b in branches)


def test_stats_counts_each_tables_rows(db: Path) -> None:
    report = json.loads(ok(run(db, "lg", "stats", "--json")))
    for table in report["tables"]:
        assert table["rows"] == count_rows(db, table["table"])
    assert report["threads"] == 1
    assert report["file_bytes"] == db.stat().st_size
    assert "lg_checkpoints" in ok(run(db, "lg", "stats"))


def test_prune_asks_first_then_keeps_each_namespaces_latest(db: Path) -> None:
    before = count_rows(db, "lg_checkpoints")
    namespaces = len(json.loads(ok(run(db, "lg", "threads", "--json"))))
    assert_user_error(run(db, "lg", "prune", THREAD), "give --yes")
    assert count_rows(db, "lg_checkpoints") == before  # refused: nothing changed
    assert_user_error(run(db, "lg", "prune", "nope", "--yes"), "no LangGraph thread 'nope'")
    done = json.loads(ok(run(db, "lg", "prune", THREAD, "--yes", "--json")))
    assert done["checkpoints_removed"] == before - namespaces
    assert count_rows(db, "lg_checkpoints") == namespaces
    assert "removed 0 checkpoints" in ok(run(db, "lg", "prune", "--all", "--yes"))
    vacuumed = json.loads(ok(run(db, "lg", "vacuum", "--json")))
    assert vacuumed["after_bytes"] <= vacuumed["before_bytes"]
    assert vacuumed["after_bytes"] == db.stat().st_size


def test_prune_older_than_needs_a_unit_and_deletes_only_idle_threads(db: Path) -> None:
    assert run(db, "lg", "prune").exit_code == 2
    assert_user_error(run(db, "lg", "prune", "--older-than", "5", "--yes"), "needs a unit")
    kept = json.loads(ok(run(db, "lg", "prune", "--older-than", "1d", "--yes", "--json")))
    assert kept["threads_deleted"] == []
    assert count_rows(db, "lg_checkpoints") > 0
    gone = json.loads(ok(run(db, "lg", "prune", "--older-than", "0s", "--yes", "--json")))
    assert gone["threads_deleted"] == [THREAD]
    assert count_rows(db, "lg_checkpoints") == 0


def test_lg_commands_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    for args in (("threads",), ("vacuum",), ("prune", "--all", "--yes")):
        assert_user_error(run(missing, "lg", *args), "no forkpoint database")
    assert not missing.exists()


def source_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0])


def test_import_langgraph_copies_threads_and_reports_the_size_ratio(tmp_path: Path) -> None:
    source = tmp_path / "langgraph.sqlite"
    make_source(source)
    target = tmp_path / "new.db"
    env = {"FORKPOINT_PROGRESS": "always"}
    result = run(
        target,
        "import-langgraph",
        str(source),
        "--type",
        "tests.langgraph.test_graphs:Profile",
        "--json",
        env=env,
    )
    report = json.loads(ok(result))
    assert "importing" in result.stderr  # the progress bar
    assert report["skipped"] == []
    assert report["threads"] == 1
    assert report["checkpoints"] == source_count(source) == len(saved(target))
    assert report["writes"] > 0
    assert report["source_bytes"] == source.stat().st_size
    assert report["target_bytes"] == target.stat().st_size
    assert report["smaller_by"] == round(source.stat().st_size / target.stat().st_size, 2)
    again = run(
        target, "import-langgraph", str(source), "--type", "tests.langgraph.test_graphs:Profile"
    )
    assert again.exit_code == 1  # the thread is there already: reported, not copied twice
    assert "already in the target" in again.stdout
    assert len(saved(target)) == report["checkpoints"]


def test_import_langgraph_reports_what_it_cannot_decode_and_runs_none_of_it(
    tmp_path: Path,
) -> None:
    source = tmp_path / "langgraph.sqlite"
    make_source(source)
    marker = tmp_path / "pwned"
    forged = ormsgpack.packb(
        {
            "v": 1,
            "id": "x",
            "channel_values": {
                "a": ormsgpack.Ext(0, ormsgpack.packb(("os", "system", f"touch {marker}")))
            },
            "channel_versions": {},
            "versions_seen": {},
        }
    )
    with sqlite3.connect(source) as conn:
        conn.execute(
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, type, checkpoint, "
            "metadata) VALUES ('evil', '', 'x', 'msgpack', ?, '{}')",
            (forged,),
        )
    result = run(tmp_path / "new.db", "import-langgraph", str(source))
    assert result.exit_code == 1
    assert not marker.exists()
    lines = result.stdout.splitlines()
    assert lines[0].startswith("imported 2 threads")
    assert "old/new = " in lines[1]
    skipped = [line for line in lines if line.startswith("not imported: ")]
    assert any(
        "'evil'" in line and "os.system is not in the import allowlist" in line for line in skipped
    )
    assert any("Profile is not in the import allowlist" in line for line in skipped)


def test_import_langgraph_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    target = tmp_path / "new.db"
    assert_user_error(
        run(target, "import-langgraph", str(tmp_path / "none.db")), "no LangGraph database"
    )
    source = tmp_path / "langgraph.sqlite"
    make_source(source)
    same = run(source, "import-langgraph", str(source))
    assert same.exit_code == 2
    assert "another file" in same.stderr
    bad_type = run(target, "import-langgraph", str(source), "--type", "no_such_module:X")
    assert bad_type.exit_code == 2
    assert "cannot import 'no_such_module'" in bad_type.stderr
    assert not target.exists()
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    assert_user_error(run(target, "import-langgraph", str(other)), "no LangGraph checkpoints")
