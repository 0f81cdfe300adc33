"""upgrade_states: older rows rewritten as the current version, one thread at a time, all or nothing."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from forkpoint import (
    CheckpointError,
    HistoryCheckpointer,
    InvalidInput,
    JsonState,
    SqliteCheckpointer,
    StateVersionError,
)
from tests.contract._util import snapshot
from tests.versioning.conftest import Reopen
from tests.versioning.states import TicketV1, TicketV2, TicketV3
from tests.versioning.test_backends import cp_of, v1, write_v1


async def stored_versions(cp: HistoryCheckpointer[Any], thread_id: str) -> list[int]:
    """The version each checkpoint of a thread is stored at, read as a tool does (JsonState)."""
    return [got.state.data.stored_version async for got in _all(cp, thread_id)]


async def _all(cp: HistoryCheckpointer[Any], thread_id: str) -> Any:
    for meta in await cp.list_checkpoints(thread_id):
        got = await cp.get(thread_id, meta.step)
        assert got is not None
        yield got


async def test_upgrade_rewrites_old_rows_and_reads_stay_the_same(
    open_as: Reopen, backend_name: str
) -> None:
    one = await open_as(TicketV1)
    state = TicketV1(title="long", priority="normal", owner="ann")
    for step in range(8):  # a growing list of notes: SQLite keeps the older rows as deltas
        state = TicketV1.apply(state, {"notes": [f"note {step} " + "x" * 600]})
        await one.save(cp_of(state, "long", step))
    await write_v1(one, "short", 2)
    deltas_before = _deltas(one, backend_name)
    await one.fork("long", 4, new_thread_id="fork")
    three = await open_as(TicketV3)
    before = {t: [c async for c in _all(three, t)] for t in ("long", "short", "fork")}
    infos = {t: await three.thread_info(t) for t in before}

    dry = await three.upgrade_states(dry_run=True)
    assert (dry.threads_upgraded, dry.checkpoints_upgraded, dry.ok) == (3, 15, True)
    tool = await open_as(JsonState)
    assert await stored_versions(tool, "long") == [1] * 8  # a dry run wrote nothing

    seen: list[tuple[int, int]] = []
    report = await three.upgrade_states(page_size=2, progress=lambda t, c: seen.append((t, c)))
    assert report.ok
    assert (report.threads_checked, report.threads_upgraded, report.checkpoints_upgraded) == (
        3,
        3,
        15,
    )
    assert seen == [(2, 13), (3, 15)]
    for thread_id, checkpoints in before.items():
        assert await stored_versions(tool, thread_id) == [3] * len(checkpoints)
        assert [c async for c in _all(three, thread_id)] == checkpoints
        assert await three.thread_info(thread_id) == infos[thread_id]
    with pytest.raises(StateVersionError):  # the rewrite is real: version 2 can no longer read it
        await (await open_as(TicketV2)).get("long", 0)
    again = await three.upgrade_states()
    assert (again.threads_checked, again.threads_upgraded, again.checkpoints_upgraded) == (3, 0, 0)
    # Rewritten rows are stored as reverse deltas again, as many as before.
    assert _deltas(three, backend_name) == deltas_before


def _deltas(cp: HistoryCheckpointer[Any], backend_name: str) -> int | None:
    """How many of the long thread's rows SQLite stores as deltas (None on other backends)."""
    if backend_name != "sqlite":
        return None
    assert isinstance(cp, SqliteCheckpointer)
    with sqlite3.connect(cp.path) as conn:
        found = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = 'long' AND encoding = 1"
        ).fetchone()[0]
    assert found >= 4
    return int(found)


async def test_a_thread_with_a_failing_row_is_left_whole(open_as: Reopen) -> None:
    one = await open_as(TicketV1)
    await one.save(cp_of(v1(0, priority="urgent"), "bad", 0))
    await one.save(cp_of(v1(1), "bad", 1))
    await write_v1(one, "good", 2)
    three = await open_as(TicketV3)
    report = await three.upgrade_states()
    assert not report.ok
    assert report.threads_upgraded == 1
    ((thread),) = report.threads
    assert thread.thread_id == "bad"
    assert [(p.step, p.kind) for p in thread.problems] == [(0, "upgrade_failed")]
    tool = await open_as(JsonState)
    assert await stored_versions(tool, "bad") == [1, 1]
    assert await stored_versions(tool, "good") == [3, 3]


async def test_a_thread_written_meanwhile_is_not_rewritten(open_as: Reopen) -> None:
    one = await open_as(TicketV1)
    await write_v1(one, "t", 3)
    three = await open_as(TicketV3)
    tool = await open_as(JsonState)
    before = await snapshot(tool)
    rows = await three._thread_rows("t")
    assert not await three._replace_states("t", 1, 3, rows)  # latest is 2, not 1
    assert not await three._replace_states("t", 2, 2, rows)  # three rows, not two
    assert not await three._replace_states("gone", 2, 3, rows)
    assert await snapshot(tool) == before


@pytest.mark.parametrize("kw", [{"dry_run": 1}, {"page_size": 0}, {"progress": 3}])
async def test_bad_arguments_are_invalid_input(open_as: Reopen, kw: dict[str, Any]) -> None:
    three = await open_as(TicketV3)
    with pytest.raises(InvalidInput):
        await three.upgrade_states(**kw)


async def test_json_state_cannot_choose_a_version(open_as: Reopen) -> None:
    tool = await open_as(JsonState)
    with pytest.raises(InvalidInput, match="reads every version as stored"):
        await tool.upgrade_states()


async def test_a_backend_without_the_hook_refuses(open_as: Reopen) -> None:
    three = await open_as(TicketV3)
    await write_v1(await open_as(TicketV1), "t", 1)
    base = type(three).__mro__[1]
    with pytest.raises(CheckpointError, match="cannot rewrite stored states"):
        await base._replace_states(three, "t", 0, 1, [])  # type: ignore[attr-defined]
