"""A CLI that is safe to type: each test reproduces one way a user could get hurt or misled.

Durations need a unit, deleting asks (or needs ``--yes`` without a terminal),
ids are printed whole, a closed pipe is no error, help names real types,
counts are spelled right, ``vacuum`` reports what the file lost, ``tree``
shows every thread, and an export file is private.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forkpoint import Checkpoint, GraphState, JsonState, SqliteCheckpointer
from tests.cli.conftest import Invoke, assert_closed_pipe_ends_quietly, assert_user_error


def ok(result: object) -> str:
    assert getattr(result, "exit_code", None) == 0, (
        getattr(result, "stdout", ""),
        getattr(result, "stderr", ""),
        getattr(result, "exception", None),
    )
    return str(getattr(result, "stdout", ""))


def _cp(
    thread: str,
    step: int,
    *,
    when: datetime | None = None,
    note: str | None = None,
    **state: object,
) -> Checkpoint[JsonState]:
    return Checkpoint[JsonState](
        thread_id=thread,
        state=GraphState[JsonState](data=JsonState(**state)),
        step=step,
        node="__input__" if step == 0 else "work",
        queue=[],
        created_at=when or datetime.now(UTC),
        metadata={} if note is None else {"note": note},
    )


async def _save(path: Path, *checkpoints: Checkpoint[JsonState]) -> None:
    async with SqliteCheckpointer.open(path, JsonState) as cp:
        for item in checkpoints:
            await cp.save(item)


async def _thread_ids(path: Path) -> list[str]:
    async with SqliteCheckpointer.open(path, JsonState, read_only=True) as cp:
        return [i.thread_id for i in await cp.list_threads()]


async def _count(path: Path, thread: str) -> int:
    async with SqliteCheckpointer.open(path, JsonState, read_only=True) as cp:
        return len(await cp.list_checkpoints(thread))


def _module(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FORKPOINT_PROGRESS": "never"}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "forkpoint.cli", *args], env=env, **kwargs
    )


# --- durations ----------------------------------------------------------------------------------


def test_a_bare_number_is_no_duration_and_removes_nothing(cli: Invoke, db: Path) -> None:
    before = asyncio.run(_count(db, "main"))
    assert_user_error(cli("prune", "--older-than", "2", "--yes"), "needs a unit", "7d")
    assert asyncio.run(_count(db, "main")) == before


@pytest.mark.parametrize("text", ["1week", "2 weeks", "3days", "36h", "90min"])
def test_long_unit_names_are_durations(cli: Invoke, text: str) -> None:
    report = ok(cli("prune", "--older-than", text, "--dry-run", "--json"))
    assert '"dry_run": true' in report


@pytest.mark.parametrize("text", ["3000000d", "99999999999999999999d", "1e400s"])
def test_a_huge_duration_is_one_line(cli: Invoke, text: str) -> None:
    result = cli("prune", "--older-than", text, "--yes")
    assert_user_error(result, "duration")


# --- confirmation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("delete", "main"), ("prune", "--keep-last", "1"), ("prune", "main", "--older-than", "1d")],
)
def test_removing_without_a_terminal_needs_yes(
    cli: Invoke, db: Path, args: tuple[str, ...]
) -> None:
    before = {t: asyncio.run(_count(db, t)) for t in ("main", "alt", "solo")}
    assert_user_error(cli(*args), "--yes")
    assert {t: asyncio.run(_count(db, t)) for t in ("main", "alt", "solo")} == before
    ok(cli(*args, "--yes"))
    assert {t: asyncio.run(_count(db, t)) for t in ("main", "alt", "solo")} != before


def test_dry_run_needs_no_confirmation(cli: Invoke) -> None:
    assert "would remove" in ok(cli("prune", "--keep-last", "1", "--dry-run"))


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal (POSIX only)")
@pytest.mark.parametrize(
    ("args", "answer", "kept"),
    [
        (("delete", "main"), b"n\n", True),
        (("delete", "main"), b"y\n", False),
        (("prune", "main", "--keep-last", "1"), b"\n", True),  # the default answer is no
        (("prune", "main", "--keep-last", "1"), b"y\n", False),
    ],
)
def test_on_a_terminal_removing_asks_first(
    db: Path, args: tuple[str, ...], answer: bytes, kept: bool
) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        os.write(master, answer)
        proc = _module(
            *args, "--db", str(db), stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert b"?" in err  # the question was put
    assert (asyncio.run(_count(db, "main")) == 5) is kept, (out, err)
    assert proc.returncode == (1 if kept else 0), (out, err)


# --- ids are printed whole ----------------------------------------------------------------------


SIMILAR = ["doc-1-legal-review-of-the-long-contract-" + s for s in ("a", "at7", "at7-b")]


async def _similar_ids(path: Path) -> list[str]:
    await _save(path, *(_cp(t, 0, title=t) for t in SIMILAR))
    async with SqliteCheckpointer.open(path, JsonState) as cp:
        return [await cp.fork(SIMILAR[0], 0) for _ in range(2)]  # default ids: UUIDs


@pytest.mark.parametrize("command", [("threads",), ("tree",), ("stats", "--top", "9")])
def test_ids_are_never_truncated(cli: Invoke, db: Path, command: tuple[str, ...]) -> None:
    forks = asyncio.run(_similar_ids(db))
    assert all(uuid.UUID(f) for f in forks)
    text = ok(cli(*command, env={"COLUMNS": "60"}))
    for thread in [*SIMILAR, *(forks if command[0] != "stats" else [])]:
        assert thread in text.split() or f"{thread}" in text, (thread, text)
    assert "…" not in text


def test_tree_never_cuts_a_line(cli: Invoke, db: Path) -> None:
    forks = asyncio.run(_similar_ids(db))
    text = ok(cli("tree", env={"COLUMNS": "40"}))
    lines = text.splitlines()
    for fork in forks:
        line = next(line for line in lines if fork in line)
        assert line.endswith("· 1 checkpoint · done"), line


# --- a closed pipe ------------------------------------------------------------------------------


async def _big_thread(path: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await _save(
        path,
        *(
            _cp("big", s, when=start + timedelta(seconds=s), note="n" * 500, text="x" * 500)
            for s in range(800)
        ),
    )


@pytest.mark.parametrize(
    "command", [("export",), ("export", "big"), ("history", "big"), ("history", "big", "--json")]
)
def test_a_closed_pipe_ends_quietly(tmp_path: Path, command: tuple[str, ...]) -> None:
    db = tmp_path / "big.db"
    asyncio.run(_big_thread(db))
    assert_closed_pipe_ends_quietly(*command, "--db", str(db))


# --- version, help, plurals ---------------------------------------------------------------------


def test_version(cli: Invoke) -> None:
    from forkpoint import __version__

    assert ok(cli("--version")) == f"forkpoint {__version__}\n"


COMMANDS = [
    "threads", "history", "show", "diff", "tree", "fork", "delete",
    "export", "import", "migrate", "check", "stats", "prune", "vacuum",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_real_value_types(cli: Invoke, command: str) -> None:
    text = ok(cli(command, "--help", env={"COLUMNS": "200"}))
    assert "<bool>" not in text  # a flag takes no value
    for line in text.splitlines():
        if any(word in line for word in (" step ", " step_a ", " step_b ")):
            assert "<int>" in line, line


def test_root_help_has_no_bool(cli: Invoke) -> None:
    assert "<bool>" not in ok(cli("--help", env={"COLUMNS": "200"}))


def test_counts_are_spelled_in_the_singular_for_one(cli: Invoke, tmp_path: Path) -> None:
    one = tmp_path / "one.db"
    asyncio.run(_save(one, _cp("only", 0), _cp("only", 1)))
    assert "in 1 thread" in ok(cli("check", "--db", str(one)))
    ok(cli("fork", "only", "0", "--new-id", "copy", "--db", str(one)))
    assert "(1 fork)" in ok(cli("stats", "--db", str(one)))
    assert "2 threads" in ok(cli("check", "--db", str(one)))
    text = ok(cli("prune", "only", "--keep-last", "1", "--yes", "--db", str(one)))
    assert text.startswith("removed 1 checkpoint from 1 thread ")
    assert ok(cli("delete", "copy", "--yes", "--db", str(one))).startswith(
        "deleted thread copy (1 checkpoint)"
    )


# --- vacuum -------------------------------------------------------------------------------------


async def _vacuum_with_a_big_wal(path: Path, cli: Invoke) -> tuple[int, int, str]:
    """Many small saves by a writer that stays open: a large WAL over a small database file."""
    async with SqliteCheckpointer.open(path, JsonState) as cp:
        for step in range(1500):
            await cp.save(_cp("w", step, n=step))
        main_before = path.stat().st_size
        wal = path.with_name(path.name + "-wal").stat().st_size
        result = await asyncio.to_thread(cli, "vacuum", "--db", str(path), "--json")
    return main_before, wal, ok(result)


def test_vacuum_reports_what_the_database_file_lost(cli: Invoke, tmp_path: Path) -> None:
    import json

    main_before, wal, text = asyncio.run(_vacuum_with_a_big_wal(tmp_path / "w.db", cli))
    assert wal > 4 * main_before  # the situation: the WAL dwarfs the file
    report = json.loads(text)
    assert report["reclaimed_bytes"] == max(0, report["before_bytes"] - report["after_bytes"])
    assert report["reclaimed_bytes"] <= main_before  # never the WAL counted as freed space


# --- tree: lineage that forms a cycle -----------------------------------------------------------


def test_tree_shows_threads_whose_lineage_forms_a_cycle(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "cycle.db"
    asyncio.run(_save(path, _cp("main", 0), _cp("main", 1)))
    ok(cli("fork", "main", "1", "--new-id", "experiment", "--db", str(path)))
    ok(cli("delete", "main", "--yes", "--db", str(path)))
    ok(cli("fork", "experiment", "1", "--new-id", "main", "--db", str(path)))
    text = ok(cli("tree", "--db", str(path)))
    assert "no threads" not in text
    assert "experiment" in text
    assert "main" in text.replace("experiment", "")
    import json

    forest = json.loads(ok(cli("tree", "--json", "--db", str(path))))
    assert [t["thread_id"] for t in forest] == ["experiment"]
    assert [c["thread_id"] for c in forest[0]["children"]] == ["main"]


# --- files forkpoint creates are private --------------------------------------------------------


def test_export_to_a_file_is_private(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "dump.jsonl"
    old = os.umask(0o022)
    try:
        ok(cli("export", "-o", str(target)))
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8").startswith('{"format"')


# --- what is not a database file ----------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX only)")
def test_a_fifo_at_the_database_path_is_one_line_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    with _module(
        "threads", "--db", str(fifo), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # a hang fails the test instead of blocking the suite
            proc.kill()
            raise
    assert proc.returncode == 1
    assert err.decode().startswith("forkpoint: error: ")
    assert "not a regular file" in err.decode()
    assert out == b""


def test_on_a_narrow_terminal_ids_wrap_but_stay_whole(cli: Invoke, db: Path) -> None:
    forks = asyncio.run(_similar_ids(db))
    text = ok(cli("threads", env={"FORCE_COLOR": "1", "COLUMNS": "50", "NO_COLOR": "1"}))
    assert "┃" in text  # a terminal gets a drawn table
    assert "…" not in text
    first_column = "".join(
        line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")
    )
    for thread in [*SIMILAR, *forks]:
        assert thread in first_column, (thread, first_column)
