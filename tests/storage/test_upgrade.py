"""A database written by schema revision 0001 upgrades in place with all its data."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from forkpoint import Append, Checkpoint, GraphState, SqliteCheckpointer, StateSchema
from forkpoint.migrate import HEAD_REVISION

FIXTURES = Path(__file__).parent.parent / "fixtures"


class Research(StateSchema):
    """The state the fixture was written with (tests/fixtures/make_rev0001.txt)."""

    topic: str = ""
    messages: Annotated[list[str], Append] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)


def revision(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


async def test_revision_0001_database_upgrades_and_reads_back_identical(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURES / "rev0001.db", db)
    expected: list[dict[str, Any]] = json.loads((FIXTURES / "rev0001.expected.json").read_text())
    assert revision(db) == "0001"
    async with SqliteCheckpointer.open(db, Research) as cp:
        assert revision(db) == HEAD_REVISION
        for want in expected:
            got = await cp.get(want["thread_id"], want["step"])
            assert got is not None
            assert json.loads(got.model_dump_json()) == want
        alpha = await cp.thread_info("alpha")
        fork = await cp.thread_info("alpha-fork")
        assert alpha is not None
        assert fork is not None
        assert (fork.parent_thread_id, fork.parent_step) == ("alpha", 20)
        assert alpha.checkpoint_count == 40
        assert alpha.metadata == {"owner": "fixture", "n": 0}
        # Upgraded threads keep growing, now in the new storage format.
        latest = await cp.load("alpha")
        assert latest is not None
        state = Research.apply(latest.state.data, {"messages": ["after the upgrade " + "z" * 400]})
        new = Checkpoint[Research](
            thread_id="alpha",
            state=GraphState[Research](data=state),
            step=latest.step + 1,
            node="n",
        )
        await cp.save(new)
        assert await cp.get("alpha", latest.step) == latest
        assert await cp.load("alpha") == new
    with sqlite3.connect(db) as conn:
        kinds = conn.execute(
            "SELECT encoding FROM checkpoints WHERE thread_id = 'alpha' ORDER BY step DESC LIMIT 2"
        ).fetchall()
    assert kinds == [(0,), (1,)]
