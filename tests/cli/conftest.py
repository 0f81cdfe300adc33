"""A small forkpoint database for the CLI tests, written with the application's own state class.

The CLI never sees ``Note``: it reads the file with ``JsonState``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field
from typer.testing import CliRunner, Result

from forkpoint import Append, Checkpoint, GraphState, SqliteCheckpointer, StateSchema
from forkpoint.cli import app


class Note(StateSchema):
    """Application state with nested and list fields, so diffs have something to find."""

    title: str = ""
    tags: Annotated[list[str], Append] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    score: float = 0.0


T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def note_cp(thread: str, step: int, node: str, queue: list[tuple[str, int]], **state: Any) -> Any:
    return Checkpoint[Note](
        thread_id=thread,
        state=GraphState[Note](data=Note(**state)),
        step=step,
        node=node,
        queue=queue,
        created_at=T0 + timedelta(seconds=step),
        metadata={"step_note": f"s{step}"} if step % 2 else {},
    )


async def build(path: Path) -> None:
    """main: steps 0-4 (done); alt: fork of main at 2, plus step 3 (pending); solo: one step."""
    async with SqliteCheckpointer.open(path, Note) as cp:
        await cp.save(note_cp("main", 0, "__input__", [("a", 0)], title="draft"))
        await cp.save(note_cp("main", 1, "a", [("b", 0)], title="draft", tags=["x"]))
        await cp.save(
            note_cp("main", 2, "b", [("c", 0)], title="Draft ✓", tags=["x", "y"], meta={"k": 1}),
            thread_metadata={"owner": "ana", "nested": {"deep": [1, 2]}},
        )
        await cp.save(
            note_cp("main", 3, "c", [("d", 0)], title="Draft ✓", tags=["x", "y"], meta={"k": 2})
        )
        await cp.save(
            note_cp("main", 4, "d", [], title="Final", tags=["x", "y", "z"], meta={"k": 2, "v": 0})
        )
        await cp.fork("main", 2, new_thread_id="alt")
        await cp.save(note_cp("alt", 3, "c", [("d", 0)], title="Other", score=0.5))
        await cp.save(note_cp("solo", 0, "__input__", [("a", 0)], title="alone"))


Invoke = Callable[..., Result]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.db"
    asyncio.run(build(path))
    return path


@pytest.fixture
def cli(db: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``forkpoint ARGS`` in-process against ``db`` (via FORKPOINT_DB unless --db is given)."""
    monkeypatch.delenv("FORKPOINT_PROGRESS", raising=False)

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(app, list(args), env={"FORKPOINT_DB": str(db), **(env or {})})

    return invoke


def assert_user_error(result: Result, *needles: str) -> None:
    """Exit 1, one line on stderr that names the problem, nothing on stdout, no traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("forkpoint: error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]


def parse_jsonl(text: str) -> Sequence[dict[str, Any]]:
    import json

    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_closed_pipe_ends_quietly(*args: str, read: int = 200) -> None:
    """Run ``forkpoint ARGS`` into a pipe closed after ``read`` bytes (``| head -c``).

    The command must have more to print than a pipe holds (64 KiB), so that it
    is still writing when the reader goes: it must end without a word on stderr.
    """
    env = {**os.environ, "FORKPOINT_PROGRESS": "never"}
    command = [sys.executable, "-m", "forkpoint.cli", *args]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        head = proc.stdout.read(read)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=60)
    assert len(head) == read
    assert err == b"", err
    # 141 as a command stopped by SIGPIPE; 0 when the kernel took the rest in one write.
    assert proc.returncode in (0, 141)
