"""A database written before state versions existed, by version 1 of a class, read by versions 2 and 3.

``tests/fixtures/ticket_v1.db`` was written by ``make_ticket_v1.txt`` (schema
revision 0002): its long thread is mostly reverse deltas, and it has a fork
that went on under version 1. Opening it migrates it to revision 0003, where
every one of its rows counts as version 1, without rewriting any.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from forkpoint import Checkpoint, GraphState, SqliteCheckpointer, StateSchema, StateVersionError
from forkpoint.migrate import HEAD_REVISION
from tests.versioning.states import TicketV1, TicketV2, TicketV3, expected_v2, expected_v3

FIXTURES = Path(__file__).parent.parent / "fixtures"
EXPECTED: list[dict[str, Any]] = json.loads(
    (FIXTURES / "ticket_v1.expected.json").read_text(encoding="utf-8")
)


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT thread_id, step, state, encoding FROM checkpoints ORDER BY thread_id, step"
        ).fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.db"
    shutil.copy(FIXTURES / "ticket_v1.db", path)
    return path


@pytest.mark.parametrize(
    ("state_type", "expect"),
    [(TicketV1, lambda s: s), (TicketV2, expected_v2), (TicketV3, expected_v3)],
)
async def test_every_stored_step_reads_as_the_current_version(
    db: Path, state_type: type[StateSchema], expect: Any
) -> None:
    before = rows(db)
    assert sum(r[3] for r in before) > 20  # the fixture really holds delta rows
    async with SqliteCheckpointer.open(db, state_type) as cp:
        for want in EXPECTED:
            got = await cp.get(want["thread_id"], want["step"])
            assert got is not None
            dumped = json.loads(got.model_dump_json())
            assert dumped["state"]["data"] == expect(want["state"]["data"])
            assert {k: v for k, v in dumped.items() if k != "state"} == {
                k: v for k, v in want.items() if k != "state"
            }
        latest = await cp.load("long-fork")
        assert latest is not None
        assert latest.step == 15
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD_REVISION
        )
        versions = conn.execute("SELECT DISTINCT state_version FROM checkpoints").fetchall()
    assert versions == [(1,)]
    assert rows(db) == before  # reading rewrote no row


async def test_version_3_continues_and_forks_an_old_thread(db: Path) -> None:
    async with SqliteCheckpointer.open(db, TicketV3) as cp:
        latest = await cp.load("long")
        assert latest is not None
        # Only a field near the front changes, so the old row's text, though it spells version
        # 1, shares the whole notes list with the new one: it becomes a reverse delta of it.
        state = TicketV3.apply(latest.state.data, {"priority": 1})
        await cp.save(
            Checkpoint[TicketV3](
                thread_id="long", state=GraphState[TicketV3](data=state), step=30, node="v3"
            )
        )
        fork = await cp.fork("long", 29, new_thread_id="late-fork")
        start = await cp.load(fork)
        assert start is not None
        assert start.state.data == latest.state.data  # the old full row, now a delta, upgraded
        assert await cp.get("long", 29) == latest
    with sqlite3.connect(db) as conn:
        stored = dict(
            conn.execute(
                "SELECT step, state_version FROM checkpoints WHERE thread_id = 'long' AND step >= 28"
            ).fetchall()
        )
        encodings = dict(
            conn.execute(
                "SELECT step, encoding FROM checkpoints WHERE thread_id = 'long' AND step >= 28"
            ).fetchall()
        )
    assert stored == {28: 1, 29: 1, 30: 3}
    assert encodings[29] == 1  # a version-1 delta against a version-3 row
    async with SqliteCheckpointer.open(db, TicketV2) as old:
        with pytest.raises(StateVersionError) as caught:
            await old.load("long")
        assert (caught.value.stored_version, caught.value.current_version) == (3, 2)
        assert (caught.value.thread_id, caught.value.step) == ("long", 30)
        earlier = await old.get("long", 29)
        assert earlier is not None
        assert earlier.state.data.headline == "ticket long"


def test_the_fixture_was_written_by_version_1() -> None:
    for want in EXPECTED:
        TicketV1.model_validate(want["state"]["data"])
