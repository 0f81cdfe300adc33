"""What gets past the door: non-regular files, crafted schemas, bad paths, read-only opens, file modes.

Scenarios that would hang on a defect (a FIFO blocks ``open()``; an endlessly
recursive view blocks a listing on a worker thread that cannot be stopped) run
in a child process with a timeout, so a hang is a failure, never a stuck suite.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from forkpoint import (
    CheckpointError,
    InvalidInput,
    SqliteCheckpointer,
)
from tests.conftest import Counter, build_with_scripts, make_cp
from tests.reliability.support import ROOT, child_env

HANG = 15.0  # seconds a child may take before the scenario counts as hung


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter; a child still running after HANG seconds fails."""
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=HANG,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung for {HANG:.0f} s (killed): {exc.cmd[-len(args) - 1 :]}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _python("from forkpoint.cli import main; main()", *args)


OPEN_AND_LIST = """
    import asyncio, sys
    from forkpoint import CheckpointError, JsonState, SqliteCheckpointer

    async def main() -> None:
        try:
            cp = await asyncio.wait_for(
                SqliteCheckpointer.open(sys.argv[1], JsonState, read_only=sys.argv[2] == "ro"), 5
            )
        except CheckpointError as exc:
            print("refused", type(exc).__name__, flush=True)
            return
        try:
            threads = await asyncio.wait_for(cp.list_threads(), 5)
            print("listed", len(threads), flush=True)
        finally:
            await cp.close()

    asyncio.run(main())
"""


def _assert_refused(done: subprocess.CompletedProcess[str], *kinds: str) -> None:
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    assert words[:1] == ["refused"], done.stdout
    assert words[1] in kinds, done.stdout


def _assert_cli_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stderr.startswith("forkpoint: error: "), done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]


# --- item 7: files that are not regular files ----------------------------------------------


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_a_fifo_at_the_database_path_is_refused(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "pipe.db"
    os.mkfifo(path)
    _assert_refused(_python(OPEN_AND_LIST, str(path), mode), "NotAForkpointDatabase")
    assert stat.S_ISFIFO(path.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.db"]


@pytest.mark.parametrize("command", [["threads"], ["migrate"]])
def test_cli_on_a_fifo_prints_one_line(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "pipe.db"
    os.mkfifo(path)
    _assert_cli_error(_cli("--db", str(path), *command))


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_a_device_at_the_database_path_is_refused(tmp_path: Path, mode: str) -> None:
    """A symlink to /dev/null: opening must neither 'create' a database there nor write to it."""
    path = tmp_path / "null.db"
    path.symlink_to(os.devnull)
    _assert_refused(_python(OPEN_AND_LIST, str(path), mode), "NotAForkpointDatabase")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.db"]


def test_a_symlink_to_a_database_still_opens(tmp_path: Path) -> None:
    """The guard is about what the path leads to: a link to a regular file is fine."""
    real = tmp_path / "real.db"
    done = _python(OPEN_AND_LIST, str(real), "rw")
    assert done.stdout.split() == ["listed", "0"], done.stderr[-2000:]
    link = tmp_path / "link.db"
    link.symlink_to(real)
    done = _python(OPEN_AND_LIST, str(link), "ro")
    assert done.stdout.split() == ["listed", "0"], done.stderr[-2000:]


BACKUP_TO = """
    import asyncio, sys
    from forkpoint import CheckpointError, SqliteCheckpointer
    from tests.conftest import Counter

    async def main() -> None:
        async with SqliteCheckpointer.open(sys.argv[1], Counter) as cp:
            try:
                await asyncio.wait_for(cp.backup(sys.argv[2]), 5)
            except CheckpointError as exc:
                print("refused", type(exc).__name__, flush=True)
                return
            print("copied", flush=True)

    asyncio.run(main())
"""


async def test_a_backup_destination_that_is_no_file_is_refused(tmp_path: Path) -> None:
    """The same door for backup(): a FIFO there would block the reader's thread forever."""
    path = tmp_path / "db.db"
    await _forkpoint_file(path)
    dest = tmp_path / "dest.db"
    os.mkfifo(dest)
    _assert_refused(_python(BACKUP_TO, str(path), str(dest)), "InvalidInput")
    async with SqliteCheckpointer.open(path, Counter) as cp:
        with pytest.raises(InvalidInput):
            await cp.backup(str(tmp_path / "a\x00b.db"))
        with pytest.raises(InvalidInput):
            await cp.backup(str(tmp_path / os.fsdecode(b"caf\xe9.db")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.db", "dest.db"]


# --- item 8: a schema that is not forkpoint's own --------------------------------------------

RECURSIVE_VIEW = """
    DROP TABLE threads;
    CREATE VIEW threads AS
      WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)
      SELECT 't' || n AS thread_id, '2026-01-01T00:00:00.000000Z' AS created_at,
             '2026-01-01T00:00:00.000000Z' AS updated_at, 0 AS latest_step,
             1 AS checkpoint_count, NULL AS parent_thread_id, NULL AS parent_step,
             '{}' AS metadata, 0 AS delta_run
      FROM r;
"""

CRAFTED = {
    "recursive-view": RECURSIVE_VIEW,
    "delete-trigger": """
        CREATE TRIGGER forget AFTER INSERT ON checkpoints
        BEGIN DELETE FROM checkpoints WHERE thread_id = NEW.thread_id; END;
    """,
    "extra-view": "CREATE VIEW everything AS SELECT * FROM checkpoints;",
    "extra-table": "CREATE TABLE notes (x);",
    "extra-column": "ALTER TABLE checkpoints ADD COLUMN extra TEXT;",
    "missing-index": "DROP INDEX ix_threads_parent;",
    "foreign-index": "CREATE INDEX by_node ON checkpoints (node);",
    "no-primary-key": """
        CREATE TABLE c2 AS SELECT * FROM checkpoints;
        DROP TABLE checkpoints;
        ALTER TABLE c2 RENAME TO checkpoints;
    """,
}


def _craft(path: Path, script: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(textwrap.dedent(script))
    finally:
        conn.close()


async def _forkpoint_file(path: Path) -> None:
    async with SqliteCheckpointer.open(path, Counter) as cp:
        await cp.save(make_cp("t", 0))


@pytest.mark.parametrize("mode", ["rw", "ro"])
@pytest.mark.parametrize("case", sorted(CRAFTED))
async def test_a_crafted_schema_is_refused_at_open(tmp_path: Path, case: str, mode: str) -> None:
    path = tmp_path / "crafted.db"
    await _forkpoint_file(path)
    _craft(path, CRAFTED[case])
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    _assert_refused(_python(OPEN_AND_LIST, str(path), mode), "NotAForkpointDatabase")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "refusing changed the file"


def test_cli_on_a_crafted_schema_prints_one_line(tmp_path: Path) -> None:
    path = tmp_path / "crafted.db"
    asyncio.run(_forkpoint_file(path))
    _craft(path, RECURSIVE_VIEW)
    _assert_cli_error(_cli("--db", str(path), "threads"))


async def test_the_schema_check_accepts_every_file_forkpoint_makes(tmp_path: Path) -> None:
    """Fresh, reopened, read-only: forkpoint's own files pass the door (the check is no blanket refusal)."""
    path = tmp_path / "own.db"
    await _forkpoint_file(path)
    async with SqliteCheckpointer.open(path, Counter) as cp:
        await cp.save(make_cp("t", 1))
        await cp.fork("t", 0, new_thread_id="f")
    async with SqliteCheckpointer.open(path, Counter, read_only=True) as cp:
        assert [t.thread_id for t in await cp.list_threads()] == ["f", "t"]


# --- item 12: bad paths ----------------------------------------------------------------------


def _bad_paths(folder: Path) -> dict[str, str]:
    return {
        "nul": str(folder / "a\x00b.db"),
        "long-name": str(folder / ("n" * 300 + ".db")),
        "non-utf8-name": str(folder / os.fsdecode(b"caf\xe9.db")),
        "missing-folder": str(folder / "no" / "such" / "folder" / "x.db"),
        "folder": str(folder),
    }


@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
@pytest.mark.parametrize("case", ["nul", "long-name", "non-utf8-name", "missing-folder", "folder"])
async def test_a_bad_path_is_a_typed_error_and_creates_nothing(
    tmp_path: Path, case: str, read_only: bool
) -> None:
    folder = tmp_path / "here"
    folder.mkdir()
    path = _bad_paths(folder)[case]
    try:
        cp = await SqliteCheckpointer.open(path, Counter, read_only=read_only)
    except BaseException as exc:  # noqa: BLE001 - the point: which kind escapes
        refused: BaseException = exc
    else:  # a path that can be used must then work like any other
        async with cp:
            await cp.save(make_cp("t", 0))
            assert await cp.load("t") is not None
        return
    invalid = case in ("nul", "long-name", "non-utf8-name")
    assert isinstance(refused, InvalidInput if invalid else CheckpointError), repr(refused)
    assert os.listdir(folder) == [], f"a refused open left {os.listdir(folder)}"


# --- item 14: read-only opens ----------------------------------------------------------------

CRASHED_WRITER = """
    import asyncio, os, sys
    from forkpoint import SqliteCheckpointer
    from tests.conftest import Counter, make_cp

    async def main() -> None:
        cp = await SqliteCheckpointer.open(sys.argv[1], Counter)
        for step in range(1, 4):
            await cp.save(make_cp("t", step))
        os._exit(0)  # dies with the saves in the write-ahead log, never checkpointed

    asyncio.run(main())
"""


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


async def test_read_only_leaves_a_crashed_writers_files_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "crashed.db"
    await _forkpoint_file(path)
    done = _python(CRASHED_WRITER, str(path))
    assert done.returncode == 0, done.stderr[-2000:]
    wal = Path(f"{path}-wal")
    assert wal.exists()
    assert wal.stat().st_size > 0
    main_before, wal_before = _digest(path), _digest(wal)
    async with SqliteCheckpointer.open(path, Counter, read_only=True) as cp:
        latest = await cp.load("t")
        assert latest is not None
        assert latest.step == 3  # what the WAL holds is read
    assert _digest(path) == main_before, "the database file was rewritten by a read-only open"
    assert _digest(wal) == wal_before, "the -wal file was changed by a read-only open"


async def test_cli_reads_leave_a_crashed_writers_files_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "crashed.db"
    await _forkpoint_file(path)
    assert _python(CRASHED_WRITER, str(path)).returncode == 0
    wal = Path(f"{path}-wal")
    main_before, wal_before = _digest(path), _digest(wal)
    for command in (["threads"], ["history", "t"], ["show", "t"], ["check"], ["stats"]):
        done = _cli("--db", str(path), *command)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert _digest(path) == main_before
    assert _digest(wal) == wal_before


CLEAN_WRITER = """
    import asyncio, sys
    from forkpoint import SqliteCheckpointer
    from tests.conftest import Counter, make_cp

    async def main() -> None:
        async with SqliteCheckpointer.open(sys.argv[1], Counter) as cp:
            await cp.save(make_cp("t", 1))

    asyncio.run(main())
"""


async def test_read_only_never_folds_in_a_log_written_while_it_was_open(tmp_path: Path) -> None:
    """Opened on a clean file; another process saves and closes meanwhile; closing writes nothing."""
    path = tmp_path / "shared.db"
    await _forkpoint_file(path)
    main_before = _digest(path)
    async with SqliteCheckpointer.open(path, Counter, read_only=True) as reader:
        assert [t.thread_id for t in await reader.list_threads()] == ["t"]
        done = _python(CLEAN_WRITER, str(path))
        assert done.returncode == 0, done.stderr[-2000:]
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size > 0  # the writer was not last: its saves stay in the log
        wal_before = _digest(wal)
        latest = await reader.load("t")
        assert latest is not None
        assert latest.step == 1
    assert _digest(path) == main_before, "closing a read-only checkpointer rewrote the file"
    assert _digest(wal) == wal_before
    async with SqliteCheckpointer.open(path, Counter) as cp:  # nothing was lost either
        latest = await cp.load("t")
        assert latest is not None
        assert latest.step == 1


# --- item 15: files forkpoint creates get the database's permissions --------------------------


async def test_an_export_file_is_private_like_the_database(tmp_path: Path) -> None:
    path = tmp_path / "db.db"
    await _forkpoint_file(path)
    out = tmp_path / "export.jsonl"
    done = _python(
        "import os; os.umask(0o022)\nfrom forkpoint.cli import main; main()",
        "--db",
        str(path),
        "export",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) & 0o077 == 0, oct(out.stat().st_mode)


# --- the schema the door expects is the one the migrations build -------------------------------


def _schema(path: Path) -> dict[str, list[str]]:
    from forkpoint.sqlite._schema import schema_of

    conn = sqlite3.connect(path)
    try:
        return schema_of(conn)
    finally:
        conn.close()


def test_schemas_are_what_the_migrations_build(tmp_path: Path) -> None:
    """Every known revision, built fresh by the scripts, is its SCHEMAS entry; every upgrade ends at head's.

    When a migration is added or changed this fails and prints the entries to
    paste into ``forkpoint/sqlite/_schema.py``.
    """
    from forkpoint.migrate import HEAD_REVISION, KNOWN_REVISIONS
    from forkpoint.sqlite._schema import SCHEMAS

    built = {}
    for revision in KNOWN_REVISIONS:
        build_with_scripts(tmp_path / f"fresh-{revision}.db", revision)
        built[revision] = _schema(tmp_path / f"fresh-{revision}.db")
    assert built == SCHEMAS, "paste into forkpoint/sqlite/_schema.py:\nSCHEMAS = " + repr(built)
    for revision in KNOWN_REVISIONS:
        path = tmp_path / f"upgraded-{revision}.db"
        build_with_scripts(path, revision)
        build_with_scripts(path, "head")
        assert _schema(path) == SCHEMAS[HEAD_REVISION], f"upgrading from {revision}"


def test_the_schema_check_sees_every_kind_of_difference(tmp_path: Path) -> None:
    """Each crafted change above shows in schema_of (the check is not blind to any of them)."""
    from forkpoint.sqlite._schema import check_schema

    base = tmp_path / "base.db"
    asyncio.run(_forkpoint_file(base))
    reference = _schema(base)
    for case, script in CRAFTED.items():
        path = tmp_path / f"{case}.db"
        shutil.copyfile(base, path)
        _craft(path, script)
        assert _schema(path) != reference, case
        conn = sqlite3.connect(path)
        try:
            assert check_schema(conn, "0002") is not None, case
        finally:
            conn.close()
