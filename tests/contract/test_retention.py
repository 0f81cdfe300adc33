"""prune, delete_threads, restore_thread and keep_last on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from forkpoint import (
    Checkpoint,
    HistoryCheckpointer,
    InvalidInput,
    StepConflict,
    ThreadExists,
    ThreadInfo,
)
from tests.conftest import Counter, Factory, make_cp
from tests.contract._util import snapshot

OLD = datetime.now(UTC) - timedelta(days=30)


async def _aged(cp: HistoryCheckpointer[Counter], thread_id: str = "t") -> None:
    """Steps 0-2 created 30 days ago, steps 3-5 just now."""
    for step in range(6):
        when = OLD + timedelta(minutes=step) if step < 3 else datetime.now(UTC)
        await cp.save(make_cp(thread_id, step, created_at=when))


async def _steps(cp: HistoryCheckpointer[Counter], thread_id: str = "t") -> list[int]:
    return [m.step for m in await cp.list_checkpoints(thread_id)]


@pytest.mark.parametrize(
    ("kw", "kept"),
    [
        ({"keep_last": 2}, [4, 5]),
        ({"keep_last": 1}, [5]),
        ({"keep_last": 6}, [0, 1, 2, 3, 4, 5]),
        ({"keep_last": 100}, [0, 1, 2, 3, 4, 5]),
        ({"older_than": timedelta(days=1)}, [3, 4, 5]),
        ({"older_than": timedelta(days=60)}, [0, 1, 2, 3, 4, 5]),
        ({"keep_last": 4, "older_than": timedelta(days=1)}, [2, 3, 4, 5]),
        ({"keep_last": 1, "older_than": timedelta(days=1)}, [3, 4, 5]),
        ({"keep_last": 5, "older_than": timedelta(days=60)}, [0, 1, 2, 3, 4, 5]),
    ],
)
async def test_prune_removes_what_every_condition_allows(
    checkpointer: HistoryCheckpointer[Counter], kw: dict[str, Any], kept: list[int]
) -> None:
    await _aged(checkpointer)
    await _aged(checkpointer, "u")
    removed = 6 - len(kept)
    dry = await checkpointer.prune("t", dry_run=True, **kw)
    assert (dry.dry_run, dry.checkpoints_removed, dry.threads_touched) == (
        True,
        removed,
        1 if removed else 0,
    )
    assert await _steps(checkpointer) == [0, 1, 2, 3, 4, 5]
    report = await checkpointer.prune("t", **kw)
    assert (report.dry_run, report.checkpoints_removed) == (False, removed)
    assert report.threads_touched == (1 if removed else 0)
    assert report.bytes_freed == dry.bytes_freed
    assert (report.bytes_freed > 0) == (removed > 0)
    assert await _steps(checkpointer) == kept
    assert await _steps(checkpointer, "u") == [0, 1, 2, 3, 4, 5]  # only the named thread
    info = await checkpointer.thread_info("t")
    assert info is not None
    assert (info.latest_step, info.checkpoint_count) == (5, len(kept))
    for step in kept:  # what is left still loads
        got = await checkpointer.get("t", step)
        assert got is not None
        assert got.state.data.n == step


async def test_prune_never_removes_the_latest(checkpointer: HistoryCheckpointer[Counter]) -> None:
    for step in range(3):
        await checkpointer.save(make_cp("t", step, created_at=OLD + timedelta(seconds=step)))
    report = await checkpointer.prune(older_than=timedelta(0))
    assert report.checkpoints_removed == 2
    assert await _steps(checkpointer) == [2]
    again = await checkpointer.prune(keep_last=1, older_than=timedelta(0))
    assert (again.checkpoints_removed, again.threads_touched, again.bytes_freed) == (0, 0, 0)
    latest = await checkpointer.load("t")
    assert latest is not None
    assert latest.step == 2


async def test_prune_all_threads_reports_counts(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _aged(checkpointer, "a")
    await _aged(checkpointer, "b")
    await checkpointer.save(make_cp("c", 0, created_at=OLD))
    report = await checkpointer.prune(keep_last=3)
    assert (report.threads_touched, report.checkpoints_removed) == (2, 6)
    assert await _steps(checkpointer, "a") == [3, 4, 5]
    assert await _steps(checkpointer, "b") == [3, 4, 5]
    assert await _steps(checkpointer, "c") == [0]


async def test_prune_of_unknown_thread_is_empty_report(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    report = await checkpointer.prune("nobody", keep_last=1)
    assert report.model_dump() == {
        "dry_run": False,
        "threads_touched": 0,
        "checkpoints_removed": 0,
        "bytes_freed": 0,
    }


async def test_pruned_thread_keeps_step_rule_and_saves_on(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _aged(checkpointer)
    await checkpointer.prune("t", keep_last=1)
    with pytest.raises(StepConflict):
        await checkpointer.save(make_cp("t", 1))  # pruned steps are still "at or below latest"
    await checkpointer.save(make_cp("t", 6))
    assert await _steps(checkpointer) == [5, 6]


async def test_keep_last_policy_applies_on_every_save(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer(keep_last=3)
    for step in range(7):
        await cp.save(make_cp("t", step))
        await cp.save(make_cp("u", step))
    assert [m.step for m in await cp.list_checkpoints("t")] == [4, 5, 6]
    info = await cp.thread_info("t")
    assert info is not None
    assert (info.latest_step, info.checkpoint_count) == (6, 3)


async def _restore_old(cp: HistoryCheckpointer[Counter], thread_id: str) -> ThreadInfo:
    info = ThreadInfo(
        thread_id=thread_id,
        created_at=OLD,
        updated_at=OLD + timedelta(hours=1),
        latest_step=4,
        checkpoint_count=2,
        parent_thread_id="ancestor",
        parent_step=9,
        metadata={"restored": True},
        latest_node="node",  # what the restored rows say: restore_thread reads these from them
        status="running",
    )
    checkpoints = [
        make_cp(thread_id, 2, created_at=OLD, metadata={"i": 2}),
        make_cp(thread_id, 4, created_at=OLD + timedelta(hours=1), queue=[("q", 1)]),
    ]
    await cp.restore_thread(info, checkpoints)
    return info


async def test_restore_thread_recreates_it_exactly(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    info = await _restore_old(checkpointer, "r")
    got = await checkpointer.thread_info("r")
    assert got is not None
    assert got.model_dump() == info.model_dump()
    assert await _steps(checkpointer, "r") == [2, 4]
    two = await checkpointer.get("r", 2)
    assert two is not None
    assert (two.created_at, two.metadata) == (OLD, {"i": 2})
    latest = await checkpointer.load("r")
    assert latest is not None
    assert latest.queue == [("q", 1)]
    await checkpointer.save(make_cp("r", 5))
    assert await _steps(checkpointer, "r") == [2, 4, 5]


async def test_restore_into_existing_thread_is_thread_exists(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("r", 0))
    before = await snapshot(checkpointer)
    with pytest.raises(ThreadExists):
        await _restore_old(checkpointer, "r")
    assert await snapshot(checkpointer) == before


def _info(thread_id: str = "r", latest: int = 1) -> ThreadInfo:
    return ThreadInfo(
        thread_id=thread_id, created_at=OLD, updated_at=OLD, latest_step=latest, checkpoint_count=2
    )


@pytest.mark.parametrize(
    ("info", "checkpoints"),
    [
        (_info(), []),
        (_info(), [make_cp("r", 1), make_cp("r", 0)]),
        (_info(), [make_cp("r", 1), make_cp("r", 1)]),
        (_info(latest=5), [make_cp("r", 0), make_cp("r", 1)]),
        (_info(), [make_cp("r", 0), make_cp("other", 1)]),
        ("not info", [make_cp("r", 0)]),
        (_info().model_copy(update={"parent_thread_id": "p"}), [make_cp("r", 1)]),
        (_info().model_copy(update={"parent_step": 0}), [make_cp("r", 1)]),
        (
            _info().model_copy(update={"parent_thread_id": "p", "parent_step": 2**70}),
            [make_cp("r", 1)],
        ),
        (
            _info().model_copy(update={"parent_thread_id": "p\udc00", "parent_step": 0}),
            [make_cp("r", 1)],
        ),
        (
            _info().model_copy(update={"parent_thread_id": "", "parent_step": 0}),
            [make_cp("r", 1)],
        ),
    ],
    ids=[
        "empty",
        "decreasing",
        "repeated",
        "latest-mismatch",
        "foreign",
        "info-type",
        "parent-without-step",
        "step-without-parent",
        "parent-step-too-big",
        "parent-surrogate",
        "parent-empty",
    ],
)
async def test_restore_with_disagreeing_pieces_is_invalid_input(
    checkpointer: HistoryCheckpointer[Counter], info: Any, checkpoints: list[Checkpoint[Counter]]
) -> None:
    await checkpointer.save(make_cp("keep", 0))
    before = await snapshot(checkpointer)
    with pytest.raises(InvalidInput):
        await checkpointer.restore_thread(info, checkpoints)
    assert await snapshot(checkpointer) == before


async def test_delete_threads_removes_only_inactive_ones(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await _restore_old(checkpointer, "old-b")
    await _restore_old(checkpointer, "old-a")
    await checkpointer.save(make_cp("fresh", 0, created_at=OLD))  # written now, though dated old
    fork_id = await checkpointer.fork("old-a", 4, new_thread_id="fork-of-old")
    assert await checkpointer.delete_threads(inactive_for=timedelta(days=60)) == []
    assert await checkpointer.delete_threads(inactive_for=timedelta(days=1)) == ["old-a", "old-b"]
    assert [t.thread_id for t in await checkpointer.list_threads()] == [fork_id, "fresh"]
    assert await _steps(checkpointer, fork_id) == [2, 4]
    assert await checkpointer.delete_threads(inactive_for=timedelta(days=1)) == []


async def test_huge_keep_last_keeps_everything(make_checkpointer: Factory) -> None:
    cp = await make_checkpointer(keep_last=2**64)
    for step in range(3):
        await cp.save(make_cp("t", step))
    for keep in (2**63 - 1, 2**63, 2**100):
        report = await cp.prune(keep_last=keep)
        assert report.checkpoints_removed == 0
        report = await cp.prune("t", keep_last=keep, older_than=timedelta(0))
        assert report.checkpoints_removed == 0
    assert await _steps(cp) == [0, 1, 2]
    await cp.save(make_cp("t", 3))  # the writer is still healthy
    assert await _steps(cp) == [0, 1, 2, 3]
