"""Every `forkpoint` command: tables, --json, and one-line errors for user mistakes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from forkpoint import Checkpoint, GraphState, JsonState, SqliteCheckpointer, ThreadInfo
from forkpoint.cli._args import parse_duration
from forkpoint.codec import format_time
from forkpoint.jsondiff import diff_values
from forkpoint.runner import Runner
from tests.cli.conftest import Invoke, Note, assert_user_error, note_cp, parse_jsonl


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return str(result.stdout)


def as_json(result: Any) -> Any:
    return json.loads(ok(result))


# --- threads, history, show ---------------------------------------------------------------------


def test_threads_lists_lineage_and_counts(cli: Invoke) -> None:
    rows = {r["thread_id"]: r for r in as_json(cli("threads", "--json"))}
    assert sorted(rows) == ["alt", "main", "solo"]
    assert (rows["main"]["checkpoint_count"], rows["main"]["latest_step"]) == (5, 4)
    assert (rows["main"]["forks"], rows["main"]["latest_node"]) == (1, "d")
    assert (rows["alt"]["parent_thread_id"], rows["alt"]["parent_step"]) == ("main", 2)
    assert rows["alt"]["checkpoint_count"] == 4
    assert rows["main"]["metadata"] == {"owner": "ana", "nested": {"deep": [1, 2]}}
    table = ok(cli("threads"))
    assert "main @ 2" in table
    for thread in ("alt", "main", "solo"):
        assert thread in table


def test_history(cli: Invoke) -> None:
    rows = as_json(cli("history", "main", "--json"))
    assert [(r["step"], r["node"]) for r in rows] == [
        (0, "__input__"),
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "d"),
    ]
    assert rows[1]["queue"] == [["b", 0]]
    assert rows[4]["queue"] == []
    assert rows[1]["metadata"] == {"step_note": "s1"}
    assert rows[0]["created_at"] == "2026-01-02T03:04:05.678901Z"
    newest = as_json(cli("history", "main", "--last", "2", "--json"))
    assert [r["step"] for r in newest] == [3, 4]
    table = ok(cli("history", "main"))
    assert "step_note=s3" in table
    assert "c/0" in table


def test_show_latest_and_a_step(cli: Invoke) -> None:
    latest = as_json(cli("show", "main", "--json"))
    assert (latest["step"], latest["node"], latest["queue"]) == (4, "d", [])
    assert latest["state"] == {
        "title": "Final",
        "tags": ["x", "y", "z"],
        "meta": {"k": 2, "v": 0},
        "score": 0.0,
    }
    two = as_json(cli("show", "main", "2", "--json"))
    assert two["state"]["title"] == "Draft ✓"
    text = ok(cli("show", "main", "2"))
    assert "Draft ✓" in text
    assert "queue: c/0" in text


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("show", "nobody"), ("no thread 'nobody'",)),
        (("show", "main", "99"), ("no checkpoint at step 99", "latest at step 4")),
        (("show", "main", "x"), ("step must be a whole number",)),
        (("show", "main", "-1"), ("step must be a whole number",)),
        (("history", "nobody"), ("no thread 'nobody'",)),
        (("diff", "main", "0", "99"), ("no checkpoint at step 99",)),
        (("diff", "main", "0", "1", "--other-thread", "nobody"), ("no thread 'nobody'",)),
        (("tree", "nobody"), ("no thread 'nobody'",)),
        (("fork", "main", "99"), ("no checkpoint at step 99",)),
        (("fork", "main", "1", "--new-id", "solo"), ("'solo' already exists",)),
        (("delete", "nobody"), ("no thread 'nobody'",)),
        (("export", "nobody"), ("no thread 'nobody'",)),
        (("prune",), ("--keep-last",)),
        (("prune", "--keep-last", "0"), ("at least 1",)),
        (("prune", "--older-than", "soon"), ("duration",)),
        (("prune", "nobody", "--keep-last", "1"), ("no thread 'nobody'",)),
    ],
)
def test_user_mistakes_are_one_line(
    cli: Invoke, args: tuple[str, ...], needles: tuple[str]
) -> None:
    assert_user_error(cli(*args), *needles)


WHOLE_SECOND = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)  # microsecond 0: spellings differ


async def _restore_whole_second_thread(path: Path) -> None:
    cp_ = Checkpoint[Note](
        thread_id="round",
        state=GraphState[Note](data=Note(title="r")),
        step=0,
        node="__input__",
        created_at=WHOLE_SECOND,
    )
    info = ThreadInfo(
        thread_id="round",
        created_at=WHOLE_SECOND,
        updated_at=WHOLE_SECOND,
        latest_step=0,
        checkpoint_count=1,
    )
    async with SqliteCheckpointer.open(path, Note) as cp:
        await cp.restore_thread(info, [cp_])


def test_json_output_spells_every_time_with_format_time(cli: Invoke, db: Path) -> None:
    asyncio.run(_restore_whole_second_thread(db))
    spelled = format_time(WHOLE_SECOND)
    assert spelled == "2026-03-04T05:06:07.000000Z"
    assert as_json(cli("show", "round", "0", "--json"))["created_at"] == spelled
    assert as_json(cli("history", "round", "--json"))[0]["created_at"] == spelled
    thread = next(t for t in as_json(cli("threads", "--json")) if t["thread_id"] == "round")
    assert (thread["created_at"], thread["updated_at"]) == (spelled, spelled)
    thread_record, checkpoint = parse_jsonl(ok(cli("export", "round")))[1:]
    assert (thread_record["created_at"], thread_record["updated_at"]) == (spelled, spelled)
    assert checkpoint["created_at"] == spelled


def _big_states(steps: int) -> list[dict[str, Any]]:
    """Note states that grow by ~600 characters a step: past 2048 chars, older rows are deltas."""
    tags = [f"tag {step}: " + "x" * 600 for step in range(steps)]
    return [
        {"title": "big", "tags": tags[: step + 1], "meta": {"k": 1}, "score": float(step)}
        for step in range(steps)
    ]


async def _save_big_thread(path: Path, states: list[dict[str, Any]]) -> None:
    async with SqliteCheckpointer.open(path, Note) as cp:
        for step, state in enumerate(states):
            queue = [("n", 0)] if step < len(states) - 1 else []
            await cp.save(note_cp("big", step, "n" if step else "__input__", queue, **state))


def test_show_and_export_give_the_full_state_of_a_delta_stored_step(cli: Invoke, db: Path) -> None:
    states = _big_states(8)
    asyncio.run(_save_big_thread(db, states))
    with sqlite3.connect(db) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT encoding FROM checkpoints WHERE thread_id = 'big' ORDER BY step"
            )
        ]
    conn.close()
    assert kinds[5] == 1, kinds  # step 5 is stored as a reverse delta, not in full
    assert kinds[-1] == 0, kinds
    shown = as_json(cli("show", "big", "5", "--json"))
    assert shown["state"] == states[5]
    exported = [r for r in parse_jsonl(ok(cli("export", "big"))) if r.get("kind") == "checkpoint"]
    assert [r["state"] for r in exported] == states


# --- diff ---------------------------------------------------------------------------------------


def test_diff_field_by_field(cli: Invoke) -> None:
    report = as_json(cli("diff", "main", "1", "4", "--json"))
    assert report["from"] == {"thread_id": "main", "step": 1, "node": "a"}
    assert report["to"] == {"thread_id": "main", "step": 4, "node": "d"}
    assert report["changes"] == [
        {"field": "title", "change": "changed", "before": "draft", "after": "Final"},
        {"field": "tags", "change": "appended", "before": None, "after": ["y", "z"]},
        {"field": "meta.k", "change": "added", "before": None, "after": 2},
        {"field": "meta.v", "change": "added", "before": None, "after": 0},
    ]
    table = ok(cli("diff", "main", "1", "4"))
    assert "appended" in table
    assert "meta.k" in table
    assert "no change" in ok(cli("diff", "main", "2", "2"))


def test_diff_across_two_threads(cli: Invoke) -> None:
    report = as_json(cli("diff", "main", "3", "3", "--other-thread", "alt", "--json"))
    assert report["to"]["thread_id"] == "alt"
    fields = {c["field"]: c for c in report["changes"]}
    assert fields["title"]["after"] == "Other"
    assert fields["score"] == {"field": "score", "change": "changed", "before": 0.0, "after": 0.5}
    assert fields["meta.k"]["change"] == "removed"


def test_diff_values_rules() -> None:
    assert diff_values({"a": [1]}, {"a": [2, 1]}) == [
        {"field": "a", "change": "changed", "before": [1], "after": [2, 1]}
    ]
    assert diff_values({"a": 1}, {"a": True})[0]["change"] == "changed"  # JSON types differ
    assert diff_values({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 1}}}) == []
    assert diff_values(1, 2) == [{"field": "(state)", "change": "changed", "before": 1, "after": 2}]


# --- tree, fork, delete -------------------------------------------------------------------------


def test_tree(cli: Invoke) -> None:
    forest = as_json(cli("tree", "--json"))
    assert [t["thread_id"] for t in forest] == ["main", "solo"]
    main = forest[0]
    assert main["status"] == "done"
    assert [(c["thread_id"], c["parent_step"], c["status"]) for c in main["children"]] == [
        ("alt", 2, "running")
    ]
    assert main["children"][0]["latest_node"] == "c"
    text = ok(cli("tree"))
    assert "forked at step 2" in text
    assert "└── alt" in text
    sub = as_json(cli("tree", "alt", "--json"))
    assert [t["thread_id"] for t in sub] == ["alt"]


async def _run_until_paused(path: Path) -> None:
    async def step_a(state: Note) -> dict[str, Any]:
        return {"title": "after a"}

    async def step_b(state: Note) -> dict[str, Any]:
        return {"title": "after b"}

    async with SqliteCheckpointer.open(path, Note) as cp:
        runner = Runner(
            cp,
            nodes={"a": step_a, "b": step_b},
            entry="a",
            edges={"a": "b"},
            interrupt_before=["b"],
        )
        result = await runner.run("paused", Note())
        assert (result.status, result.next_node) == ("interrupted", "b")


def test_tree_shows_a_thread_paused_by_an_interrupt(cli: Invoke, db: Path) -> None:
    asyncio.run(_run_until_paused(db))
    forest = {t["thread_id"]: t for t in as_json(cli("tree", "--json"))}
    assert (forest["paused"]["status"], forest["paused"]["latest_node"]) == ("interrupted", "a")
    text = ok(cli("tree", "paused"))
    assert "paused after a" in text
    assert "pending" not in text
    assert "pending after c" in ok(cli("tree", "alt"))


def test_fork_then_tree_and_delete_of_the_parent(cli: Invoke) -> None:
    made = as_json(cli("fork", "main", "1", "--new-id", "again", "--json"))
    assert made == {"thread_id": "again", "parent_thread_id": "main", "parent_step": 1}
    generated = ok(cli("fork", "alt", "3"))
    assert generated.startswith("forked alt at step 3 into ")
    history = as_json(cli("history", "again", "--json"))
    assert [r["step"] for r in history] == [0, 1]

    assert ok(cli("delete", "main", "--yes")).startswith("deleted thread main (5 checkpoints)")
    assert_user_error(cli("show", "main"), "no thread 'main'")
    forest = as_json(cli("tree", "--json"))
    # The forks outlive their parent and become roots; lineage stays readable.
    assert {t["thread_id"]: t["parent_thread_id"] for t in forest} == {
        "again": "main",
        "alt": "main",
        "solo": None,
    }
    assert "forked from deleted main @ 2" in ok(cli("tree"))
    assert as_json(cli("show", "again", "--json"))["state"]["tags"] == ["x"]


def test_delete_json(cli: Invoke) -> None:
    assert as_json(cli("delete", "solo", "--yes", "--json")) == {
        "deleted": "solo",
        "checkpoints": 1,
    }
    assert [t["thread_id"] for t in as_json(cli("threads", "--json"))] == ["alt", "main"]


# --- export and import --------------------------------------------------------------------------


async def _snapshot(path: Path) -> dict[str, Any]:
    """Everything readable about every thread: records, listings, checkpoints, raw state."""
    out: dict[str, Any] = {}
    async with SqliteCheckpointer.open(path, JsonState, read_only=True) as cp:
        for info in await cp.list_threads():
            metas = await cp.list_checkpoints(info.thread_id)
            full = [await cp.get(info.thread_id, m.step) for m in metas]
            raw = [await cp.get_raw(info.thread_id, m.step) for m in metas]
            out[info.thread_id] = (
                info,
                metas,
                [c.model_dump() if c is not None else None for c in full],
                raw,
            )
    return out


def test_export_import_round_trip_is_exact(cli: Invoke, db: Path, tmp_path: Path) -> None:
    dump = ok(cli("export"))
    records = parse_jsonl(dump)
    assert records[0] == {"format": "forkpoint-export", "version": 2}
    assert [r["kind"] for r in records[1:]].count("checkpoint") == 10
    target = tmp_path / "copy.db"
    export_file = tmp_path / "all.jsonl"
    export_file.write_text(dump, encoding="utf-8")
    assert not target.exists()
    summary = as_json(cli("import", str(export_file), "--db", str(target), "--json"))
    assert summary == {"threads": 3, "checkpoints": 10}
    assert asyncio.run(_snapshot(target)) == asyncio.run(_snapshot(db))
    # and the copy reads back as the application's own state class
    assert asyncio.run(_latest_title(target, "main")) == "Final"


async def _latest_title(path: Path, thread: str) -> str:
    async with SqliteCheckpointer.open(path, Note, read_only=True) as cp:
        latest = await cp.load(thread)
        assert latest is not None
        return latest.state.data.title


def test_export_one_thread_to_a_file_and_import_refuses_existing(
    cli: Invoke, tmp_path: Path
) -> None:
    out = tmp_path / "alt.jsonl"
    result = cli("export", "alt", "-o", str(out))
    assert ok(result) == ""
    assert "exported 4 checkpoints" in result.stderr
    records = parse_jsonl(out.read_text(encoding="utf-8"))
    assert {r.get("thread_id") for r in records[1:]} == {"alt"}
    assert_user_error(cli("import", str(out)), "'alt'", "already exists", "nothing was imported")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("\n  \n", "empty"),
        ("not json\n", "not JSON"),
        ('{"format": "something-else"}\n', "not a forkpoint export"),
        ('{"format": "forkpoint-export", "version": 99}\n', "version 99"),
        ('{"format": "forkpoint-export", "version": 1}\n{"kind": "checkpoint"}\n', ":2:"),
        ('{"format": "forkpoint-export", "version": 1}\n{"kind": "x"}\n', "unknown record kind"),
    ],
)
def test_import_of_a_bad_file(cli: Invoke, tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    target = tmp_path / "fresh.db"
    assert_user_error(cli("import", str(bad), "--db", str(target)), needle)


def test_an_export_starting_with_blank_lines_imports(cli: Invoke, db: Path, tmp_path: Path) -> None:
    padded = tmp_path / "padded.jsonl"
    padded.write_text("\n  \n" + ok(cli("export")), encoding="utf-8")
    target = tmp_path / "copy.db"
    summary = as_json(cli("import", str(padded), "--db", str(target), "--json"))
    assert summary == {"threads": 3, "checkpoints": 10}
    assert asyncio.run(_snapshot(target)) == asyncio.run(_snapshot(db))


def test_import_refuses_when_only_a_later_thread_exists(cli: Invoke, tmp_path: Path) -> None:
    everything = tmp_path / "all.jsonl"
    everything.write_text(ok(cli("export")), encoding="utf-8")
    order = [
        r["thread_id"] for r in parse_jsonl(everything.read_text()) if r.get("kind") == "thread"
    ]
    assert order == ["alt", "main", "solo"]
    only_main = tmp_path / "main.jsonl"
    assert ok(cli("export", "main", "-o", str(only_main))) == ""
    target = tmp_path / "target.db"
    ok(cli("import", str(only_main), "--db", str(target)))
    before = asyncio.run(_snapshot(target))
    assert_user_error(
        cli("import", str(everything), "--db", str(target)),
        "'main'",
        "already exists",
        "nothing was imported",
    )
    assert asyncio.run(_snapshot(target)) == before  # alt (before main) was not written


def test_import_writes_nothing_when_a_later_thread_is_incomplete(
    cli: Invoke, tmp_path: Path
) -> None:
    records = parse_jsonl(ok(cli("export")))
    # main's thread record stays, its checkpoints are cut: alt (first) is whole
    kept = [r for r in records if not (r.get("kind") == "checkpoint" and r["thread_id"] == "main")]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    target = tmp_path / "target.db"
    assert_user_error(
        cli("import", str(broken), "--db", str(target)), "'main'", "at least one checkpoint"
    )
    assert not target.exists()


def test_import_of_a_missing_file(cli: Invoke, tmp_path: Path) -> None:
    assert_user_error(cli("import", str(tmp_path / "nope.jsonl")), "no export file")


def test_progress_bar_goes_to_stderr_and_stdout_stays_jsonl(cli: Invoke) -> None:
    result = cli("export", env={"FORKPOINT_PROGRESS": "always"})
    records = parse_jsonl(ok(result))
    assert len(records) == 1 + 3 + 10
    assert "exporting" in result.stderr


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("import", "importing"),
        ("check", "checking"),
        ("prune", "pruning"),
        ("vacuum", "vacuuming"),
    ],
)
def test_forkpoint_progress_always_shows_progress_on_stderr(
    cli: Invoke, tmp_path: Path, command: str, shown: str
) -> None:
    dump = tmp_path / "all.jsonl"
    dump.write_text(ok(cli("export")), encoding="utf-8")
    args = {
        "import": ("import", str(dump), "--db", str(tmp_path / "copy.db")),
        "check": ("check",),
        "prune": ("prune", "--keep-last", "1", "--yes"),
        "vacuum": ("vacuum",),
    }[command]
    quiet = cli(*args, "--json", env={"FORKPOINT_PROGRESS": "never"})
    assert json.loads(ok(quiet))  # the command works; nothing but the report is printed
    assert quiet.stderr == ""
    if command == "import":  # a second import would find the threads it just wrote
        args = ("import", str(dump), "--db", str(tmp_path / "copy2.db"))
    loud = cli(*args, "--json", env={"FORKPOINT_PROGRESS": "always"})
    assert json.loads(ok(loud))  # stdout stays clean JSON
    assert shown in loud.stderr


# --- migrate, check, stats ----------------------------------------------------------------------


def test_migrate_creates_and_then_finds_nothing_to_do(cli: Invoke, tmp_path: Path) -> None:
    fresh = tmp_path / "new.db"
    created = as_json(cli("migrate", "--db", str(fresh), "--json"))
    assert created["created"] is True
    assert created["from"] is None
    assert fresh.exists()
    again = as_json(cli("migrate", "--db", str(fresh), "--json"))
    assert (again["created"], again["from"], again["to"]) == (False, created["to"], created["to"])
    assert "already at schema revision" in ok(cli("migrate", "--db", str(fresh)))
    assert as_json(cli("threads", "--db", str(fresh), "--json")) == []


def test_check_passes_on_a_healthy_database(cli: Invoke) -> None:
    report = as_json(cli("check", "--json"))
    assert report["ok"] is True
    assert report["integrity"] == ["ok"]
    assert (report["threads"], report["checkpoints"], report["problems"]) == (3, 10, [])
    assert ok(cli("check")).rstrip().endswith("ok")


def test_check_finds_a_row_that_does_not_decode(cli: Invoke, db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE checkpoints SET state = '{not json' WHERE thread_id = 'alt' AND step = 3"
        )
    conn.close()
    result = cli("check", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    problems = report["problems"]
    # the broken row, and (with delta storage) any row that is stored relative to it
    assert any(p.startswith("alt @ 3:") for p in problems), problems
    assert all(p.startswith("alt @ ") for p in problems), problems
    text = cli("check")
    assert text.exit_code == 1
    assert (f"{len(problems)} problems" if len(problems) > 1 else "1 problem\n") in text.stdout


def test_check_reads_every_row_of_a_delta_thread_around_a_damaged_one(
    cli: Invoke, db: Path
) -> None:
    asyncio.run(_save_big_thread(db, _big_states(10)))
    with sqlite3.connect(db) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT encoding FROM checkpoints WHERE thread_id = 'big' ORDER BY step"
            )
        ]
        assert kinds[3:9] == [1] * 6, kinds  # steps 3-8 are reverse deltas
        conn.execute(
            "UPDATE checkpoints SET state = '{broken' WHERE thread_id = 'big' AND step = 6"
        )
    conn.close()
    result = cli("check", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["checkpoints"] == 20  # every row was looked at, above and below the damage
    # step 6, and the older rows stored relative to it, cannot be rebuilt; 7-9 and 0-2 can
    assert sorted(int(p.split(" @ ")[1].split(":")[0]) for p in report["problems"]) == [
        *range(kinds.index(1), 7)
    ]
    assert not any("thread record says" in p for p in report["problems"])


def test_check_counts_thread_record_mismatches_apart_from_decoding(cli: Invoke, db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE threads SET checkpoint_count = 99 WHERE thread_id = 'solo'")
    conn.close()
    report = json.loads(cli("check", "--json").stdout)
    assert report["ok"] is False
    assert report["problems"] == [
        "solo: thread record says 99 checkpoints up to step 0, found 1 up to 0"
    ]
    result = cli("check")
    assert result.exit_code == 1
    assert "10 of 10 in 3 threads" in result.stdout  # every checkpoint still decodes
    assert "2 of 3" in result.stdout  # one thread record disagrees
    assert "1 problem\n" in result.stdout


def test_stats_reads_thread_records_only(cli: Invoke, db: Path) -> None:
    report = as_json(cli("stats", "--json", "--top", "2"))
    assert (report["threads"], report["forks"], report["checkpoints"]) == (3, 1, 10)
    assert report["file_bytes"] == db.stat().st_size
    assert [t["thread_id"] for t in report["largest_threads"]] == ["main", "alt"]  # by checkpoints
    assert report["stored_state_bytes"] is None
    assert report["largest_threads"][0]["stored_bytes"] is None
    plain = cli("stats")
    assert "stats --bytes" in plain.stderr
    assert "stats --bytes" not in ok(plain)


def test_stats_bytes(cli: Invoke, db: Path) -> None:
    report = as_json(cli("stats", "--bytes", "--json", "--top", "2"))
    assert (report["threads"], report["forks"], report["checkpoints"]) == (3, 1, 10)
    assert report["file_bytes"] == db.stat().st_size
    assert [t["thread_id"] for t in report["largest_threads"]] == ["main", "alt"]
    main, alt = report["largest_threads"]
    assert main["stored_bytes"] >= alt["stored_bytes"] > 0
    assert 0 < main["latest_state_bytes"] <= main["stored_bytes"]
    assert report["stored_state_bytes"] >= main["stored_bytes"] + alt["stored_bytes"]
    assert report["free_bytes"] >= 0
    assert "largest threads" in ok(cli("stats", "--bytes"))


# --- prune, vacuum ------------------------------------------------------------------------------


def test_prune_dry_run_then_prune_then_vacuum(cli: Invoke) -> None:
    dry = as_json(cli("prune", "--keep-last", "1", "--dry-run", "--json"))
    assert (dry["dry_run"], dry["checkpoints_removed"], dry["threads_touched"]) == (True, 7, 2)
    assert "would remove 7 checkpoints from 2 threads" in ok(
        cli("prune", "--keep-last", "1", "--dry-run")
    )
    assert len(as_json(cli("history", "main", "--json"))) == 5  # dry run removed nothing
    one = as_json(cli("prune", "main", "--keep-last", "2", "--yes", "--json"))
    assert one["checkpoints_removed"] == 3
    assert [r["step"] for r in as_json(cli("history", "main", "--json"))] == [3, 4]
    aged = as_json(
        cli("prune", "--older-than", "1d", "--yes", "--json")
    )  # the fixture is from January
    assert aged["checkpoints_removed"] == 4  # alt's 0-2 and main's 3; never a latest
    assert ok(cli("prune", "--keep-last", "1")).startswith("removed 0 checkpoints")
    vac = as_json(cli("vacuum", "--json"))
    assert vac["after_bytes"] <= vac["before_bytes"]
    assert vac["reclaimed_bytes"] == vac["before_bytes"] - vac["after_bytes"]
    assert "reclaimed" in ok(cli("vacuum"))


def test_parse_duration() -> None:
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("15m").total_seconds() == 900
    assert parse_duration("2w").days == 14
    assert parse_duration("1week").days == 7
    assert parse_duration("3 days").days == 3
    assert parse_duration("1.5h").total_seconds() == 5400


# --- which database, and what is not one --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("threads",),
        ("history", "t"),
        ("show", "t"),
        ("diff", "t", "0", "1"),
        ("tree",),
        ("export",),
        ("check",),
        ("stats",),
        ("delete", "t"),
        ("prune", "--keep-last", "1"),
        ("vacuum",),
    ],
)
def test_a_missing_database_is_not_created(
    cli: Invoke, tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "missing.db"
    assert_user_error(cli(*args, "--db", str(missing)), "no forkpoint database", "missing.db")
    assert not any(p.name.startswith("missing.db") for p in tmp_path.iterdir())


def test_reading_commands_do_not_change_the_file(cli: Invoke, db: Path) -> None:
    before = db.read_bytes()
    for args in (("threads",), ("history", "main"), ("show", "alt", "1"), ("tree",), ("check",)):
        ok(cli(*args))
    ok(cli("export"))
    ok(cli("stats"))
    assert db.read_bytes() == before


def test_fork_creates_a_missing_database(cli: Invoke, tmp_path: Path) -> None:
    missing = tmp_path / "made.db"
    assert_user_error(cli("fork", "main", "1", "--db", str(missing)), "no thread 'main'")
    assert missing.exists()  # fork is a writing command: it creates the file, as documented


def test_db_option_before_the_command_and_the_environment(db: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from forkpoint.cli import app

    runner = CliRunner()
    first = runner.invoke(app, ["--db", str(db), "threads", "--json"], env={"FORKPOINT_DB": None})
    assert len(json.loads(first.stdout)) == 3
    other = tmp_path / "elsewhere.db"
    second = runner.invoke(app, ["threads"], env={"FORKPOINT_DB": str(other)})
    assert_user_error(second, "elsewhere.db")


def test_not_a_forkpoint_database(cli: Invoke, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    assert_user_error(cli("threads", "--db", str(text)), "not an SQLite database")
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    before = foreign.read_bytes()
    assert_user_error(cli("history", "x", "--db", str(foreign)), "another application")
    assert_user_error(cli("import", str(text), "--db", str(foreign)), "not JSON")
    assert foreign.read_bytes() == before
    assert_user_error(cli("threads", "--db", str(tmp_path)), "directory")


def test_a_newer_schema_is_refused(cli: Invoke, db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    assert_user_error(cli("threads"), "newer than this forkpoint")
    assert_user_error(cli("migrate"), "newer than this forkpoint")


def test_the_console_script_module_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "forkpoint.cli", "--db", str(tmp_path / "x.db"), "tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("forkpoint: error: no forkpoint database")
    assert "Traceback" not in result.stderr


def test_an_old_schema_asks_for_migrate_and_migrate_upgrades_it(
    cli: Invoke, tmp_path: Path
) -> None:
    old = tmp_path / "old.db"
    old.write_bytes((Path(__file__).parents[1] / "fixtures" / "rev0001.db").read_bytes())
    before = old.read_bytes()
    assert_user_error(cli("threads", "--db", str(old)), "forkpoint migrate")
    assert old.read_bytes() == before  # reading commands never upgrade
    report = as_json(cli("migrate", "--db", str(old), "--json"))
    assert (report["from"], report["created"]) == ("0001", False)
    assert report["to"] != "0001"
    assert as_json(cli("check", "--db", str(old), "--json"))["ok"] is True
    assert as_json(cli("threads", "--db", str(old), "--json"))
