"""The seed's three fork tests (wesichain checkpoint.rs), run on every backend."""

from __future__ import annotations

import pytest

from forkpoint import CheckpointNotFound, HistoryCheckpointer
from tests.conftest import Counter, make_cp


async def test_fork_creates_new_thread_up_to_seq(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    for step in range(5):
        await checkpointer.save(make_cp("main", step))
    fork_id = await checkpointer.fork("main", 2)
    assert fork_id != "main"
    meta = await checkpointer.list_checkpoints(fork_id)
    assert [m.step for m in meta] == [0, 1, 2]
    latest = await checkpointer.load(fork_id)
    assert latest is not None
    assert latest.step == 2
    assert latest.state.data.n == 2


async def test_fork_missing_seq_errors(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await checkpointer.save(make_cp("main", 0))
    with pytest.raises(CheckpointNotFound) as info:
        await checkpointer.fork("main", 99)
    assert "main" in str(info.value)
    assert "99" in str(info.value)
    assert [t.thread_id for t in await checkpointer.list_threads()] == ["main"]


async def test_fork_independent_of_origin(checkpointer: HistoryCheckpointer[Counter]) -> None:
    for step in range(3):
        await checkpointer.save(make_cp("main", step))
    fork_id = await checkpointer.fork("main", 1)
    await checkpointer.save(make_cp("main", 3))
    fork_meta = await checkpointer.list_checkpoints(fork_id)
    assert [m.step for m in fork_meta] == [0, 1]
