"""iter_states on SQLite: each reverse delta is applied once, across pages (O(stored bytes))."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import forkpoint.sqlite
import forkpoint.sqlite._jobs as jobs
from forkpoint import SqliteCheckpointer
from forkpoint._delta import apply_deltas
from tests.contract.test_streaming import Chat, chat_cp, grow


def _delta_rows(path: Path, thread_id: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM checkpoints WHERE thread_id = ? AND encoding = 1",
                (thread_id,),
            ).fetchone()[0]
        )


@pytest.mark.parametrize("page_chars", [1, 5_000, 4 * 2**20])
async def test_each_delta_is_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page_chars: int
) -> None:
    path = tmp_path / "s.db"
    states = grow(120)
    async with SqliteCheckpointer.open(path, Chat) as cp:
        for step, state in enumerate(states):
            await cp.save(chat_cp("t", step, state))
    deltas = _delta_rows(path, "t")
    assert deltas > 100  # the thread really is stored as deltas
    applied: list[int] = []
    real = apply_deltas

    def counting(text: str, chain: list[Any]) -> str:
        applied.append(len(chain))
        return real(text, chain)

    monkeypatch.setattr(jobs, "apply_deltas", counting)
    monkeypatch.setattr(forkpoint.sqlite, "_STATES_PAGE_CHARS", page_chars)
    async with SqliteCheckpointer.open(path, Chat) as cp:
        got = [c.state.data async for c in cp.iter_states("t")]
        assert got == states[::-1]
        # One application per delta row, whatever the page size: never a chain per step.
        assert sum(applied) == deltas
        applied.clear()
        # Starting below the latest: the first row (59) is rebuilt once from the chain above it
        # (the deltas of 60..118), then each of the 59 older rows is applied once.
        got = [c.state.data async for c in cp.iter_states("t", before=60)]
        assert got == states[:60][::-1]
        assert sum(applied) == (deltas - 60) + 60
