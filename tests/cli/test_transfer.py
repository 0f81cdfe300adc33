"""``forkpoint.export_threads`` / ``import_threads``: the library face of export and import."""

from __future__ import annotations

import io
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forkpoint import (
    CheckpointNotFound,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    InvalidInput,
    SqliteCheckpointer,
    ThreadExists,
    export_threads,
    import_threads,
)
from forkpoint.transfer import EXPORT_FORMAT, EXPORT_VERSION, read_export
from tests.cli.conftest import Note, note_cp


async def _fill(cp: HistoryCheckpointer[Note]) -> None:
    await cp.save(note_cp("main", 0, "__input__", [("a", 0)], title="draft"))
    await cp.save(
        note_cp("main", 1, "a", [("b", 0)], title="draft", tags=["x"]),
        thread_metadata={"owner": "ana"},
    )
    await cp.save(note_cp("main", 2, "b", [], title="done ✓", tags=["x", "y"], meta={"k": 1}))
    await cp.fork("main", 1, new_thread_id="alt")
    await cp.save(note_cp("alt", 2, "b", [], title="other"))


async def _everything(cp: HistoryCheckpointer[Note]) -> dict[str, Any]:
    out = {}
    for info in await cp.list_threads():
        rows = [
            await cp.get(info.thread_id, m.step) for m in await cp.list_checkpoints(info.thread_id)
        ]
        out[info.thread_id] = (info, rows)
    return out


async def test_round_trip_between_backends_is_exact(tmp_path: Path) -> None:
    source = InMemoryCheckpointer(Note)
    await _fill(source)
    buffer = io.StringIO()
    report = await export_threads(source, buffer)
    assert (report.threads, report.checkpoints) == (2, 6)
    lines = buffer.getvalue().splitlines()
    assert json.loads(lines[0]) == {"format": EXPORT_FORMAT, "version": EXPORT_VERSION}
    async with SqliteCheckpointer.open(tmp_path / "copy.db", Note) as target:
        done = await import_threads(target, lines)
        assert (done.thread_ids, done.checkpoints, done.threads) == (["alt", "main"], 6, 2)
        assert await _everything(target) == await _everything(source)


async def test_export_of_chosen_threads_in_the_order_given() -> None:
    cp = InMemoryCheckpointer(Note)
    await _fill(cp)
    buffer = io.StringIO()
    await export_threads(cp, buffer, ["main", "alt"])
    threads = [json.loads(x)["thread_id"] for x in buffer.getvalue().splitlines()[1:]]
    assert threads == ["main"] * 4 + ["alt"] * 4  # each thread record, then its checkpoints


async def test_export_of_an_unknown_thread_writes_nothing(tmp_path: Path) -> None:
    cp = InMemoryCheckpointer(Note)
    await _fill(cp)
    buffer = io.StringIO()
    with pytest.raises(CheckpointNotFound):
        await export_threads(cp, buffer, ["main", "nobody"])
    assert buffer.getvalue() == ""
    target = tmp_path / "out.jsonl"
    with pytest.raises(CheckpointNotFound):
        await export_threads(cp, target, ["nobody"])
    assert list(tmp_path.iterdir()) == []


async def test_export_to_a_path_is_private_and_appears_whole(tmp_path: Path) -> None:
    cp = InMemoryCheckpointer(Note)
    await _fill(cp)
    target = tmp_path / "out.jsonl"
    target.write_text("old contents\n")
    os.chmod(target, 0o644)
    await export_threads(cp, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left
    async with SqliteCheckpointer.open(tmp_path / "copy.db", Note) as copy:
        assert (await import_threads(copy, target)).checkpoints == 6


async def test_a_failing_export_leaves_no_file(tmp_path: Path) -> None:
    cp = InMemoryCheckpointer(Note)
    await _fill(cp)
    await cp.close()  # every read now fails, after the file was started
    with pytest.raises(Exception, match="closed"):
        await export_threads(cp, tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


async def test_import_refuses_a_taken_id_and_writes_nothing(tmp_path: Path) -> None:
    source = InMemoryCheckpointer(Note)
    await _fill(source)
    buffer = io.StringIO()
    await export_threads(source, buffer)
    target = InMemoryCheckpointer(Note)
    await target.save(note_cp("main", 0, "__input__", [], title="mine"))
    with pytest.raises(ThreadExists, match="'main'"):
        await import_threads(target, buffer.getvalue().splitlines())
    assert [i.thread_id for i in await target.list_threads()] == ["main"]  # alt was not written


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ([], "empty"),
        (['{"format": "other"}'], "not a forkpoint export"),
        ([f'{{"format": "{EXPORT_FORMAT}", "version": 3}}'], "version 3"),
        ([f'{{"format": "{EXPORT_FORMAT}", "version": 1}}', "{nope"], "export:2: not JSON"),
        (
            [f'{{"format": "{EXPORT_FORMAT}", "version": 1}}', '{"kind": "x"}'],
            "unknown record kind",
        ),
        (
            [
                f'{{"format": "{EXPORT_FORMAT}", "version": 1}}',
                '{"kind": "thread", "thread_id": 1}',
            ],
            "export:2: invalid thread record",
        ),
    ],
)
async def test_a_malformed_export_is_invalid_input(lines: list[str], needle: str) -> None:
    target = InMemoryCheckpointer(Note)
    with pytest.raises(InvalidInput, match=needle):
        await import_threads(target, lines)
    assert await target.list_threads() == []


async def test_a_state_that_does_not_fit_the_state_type_is_refused() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [
        json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION}),
        json.dumps(
            {
                "kind": "thread",
                "thread_id": "t",
                "created_at": t.isoformat(),
                "updated_at": (t + timedelta(seconds=1)).isoformat(),
                "latest_step": 0,
                "checkpoint_count": 1,
            }
        ),
        json.dumps(
            {
                "kind": "checkpoint",
                "thread_id": "t",
                "step": 0,
                "node": "n",
                "created_at": t.isoformat(),
                "state": {"title": ["not", "a", "string"]},
            }
        ),
    ]
    with pytest.raises(InvalidInput, match="export:3: invalid checkpoint record"):
        read_export(lines, Note)


async def test_a_file_that_is_not_utf8_is_invalid_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"format": "forkpoint-export", "version": 1}\n\xff\xfe\n')
    with pytest.raises(InvalidInput, match="not UTF-8"):
        await import_threads(InMemoryCheckpointer(Note), bad)


class _Racing(InMemoryCheckpointer[Note]):
    """Another writer saves a step of ``main`` just as the export starts reading its rows."""

    raced = False

    def iter_states(self, thread_id: str, *, before: int | None = None) -> Any:
        async def racing() -> Any:
            if thread_id == "main" and not self.raced:
                self.raced = True
                await self.save(note_cp("main", 3, "c", [], title="late"))
            async for found in InMemoryCheckpointer.iter_states(self, thread_id, before=before):
                yield found

        return racing()


async def test_a_thread_written_during_the_export_is_read_again_and_imports() -> None:
    source = _Racing(Note)
    await _fill(source)
    buffer = io.StringIO()
    report = await export_threads(source, buffer)
    assert source.raced
    assert report.checkpoints == 7  # main's late step 3 is in, with a record that counts it
    target = InMemoryCheckpointer(Note)
    await import_threads(target, buffer.getvalue().splitlines())
    assert await _everything(target) == await _everything(source)


async def test_a_damaged_thread_record_is_exported_as_its_rows_say(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "damaged.db"
    async with SqliteCheckpointer.open(path, Note) as cp:
        await _fill(cp)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE threads SET checkpoint_count = 99 WHERE thread_id = 'main'")
    conn.close()
    buffer = io.StringIO()
    async with SqliteCheckpointer.open(path, Note, read_only=True) as cp:
        await export_threads(cp, buffer)
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    main = next(r for r in records if r.get("kind") == "thread" and r["thread_id"] == "main")
    assert (main["checkpoint_count"], main["latest_step"]) == (3, 2)  # what the rows say
    target = InMemoryCheckpointer(Note)
    await import_threads(target, buffer.getvalue().splitlines())
    assert await _everything(target) != {}
