"""`make demo` end to end: run it as a subprocess, check what it printed and what it stored."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from forkpoint import SqliteCheckpointer
from forkpoint.demo import FORK, THREAD, ResearchState
from forkpoint.runner import INPUT_NODE, UPDATE_NODE

NODES = ["plan", "search", "read_1", "read_2", "read_3", "draft", "review"]
KILLED_RUN = ["plan", "search", "read_1", "read_3", "read_2", "draft", "review"]


async def _stored(db: Path) -> dict[str, list[tuple[int, str, list[tuple[str, int]]]]]:
    out: dict[str, list[tuple[int, str, list[tuple[str, int]]]]] = {}
    async with SqliteCheckpointer.open(db, ResearchState, read_only=True) as cp:
        for info in await cp.list_threads():
            rows = []
            for meta in await cp.list_checkpoints(info.thread_id):
                full = await cp.get(info.thread_id, meta.step)
                assert full is not None
                rows.append((full.step, full.node, list(full.queue)))
            out[info.thread_id] = rows
        fork = await cp.thread_info(FORK)
        assert fork is not None
        assert (fork.parent_thread_id, fork.parent_step) == (THREAD, 0)
        original = await cp.load(THREAD)
        alt = await cp.load(FORK)
        assert original is not None
        assert alt is not None
        assert original.state.data.published == "SQLite it is"
        assert original.state.data.decision == "approve"
        assert len(original.state.data.notes) == 3
        assert alt.state.data.question.startswith("Should agent checkpoints live in Redis")
        assert alt.state.data.published == ""
        assert alt.state.data.decision.startswith("reject")
    return out


def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    db.write_text("an old demo database to replace")
    result = subprocess.run(
        [sys.executable, "-m", "forkpoint.demo", "--db", str(db)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()

    # 1. the search retried, the reads in parallel, really killed part-way
    child = [line for line in lines if "[child]" in line]
    assert [line.split()[1] for line in child] == [
        "plan",
        "search",
        "search",
        "read_1",
        "read_3",
        "read_2",
    ]
    assert "search   ✗ attempt 1" in child[1]
    assert "the process dies here" in child[-1]
    assert "killed with SIGKILL" in out
    assert "latest checkpoint: step 4 (node read_3), queue: read_2/2, draft/1" in out
    # 2. resumed without re-running finished nodes (the execution counter says so)
    part2 = out[out.index("2. Resume") : out.index("3. A human")]
    assert [line.split()[0] for line in part2.splitlines()[1:4]] == ["read_2", "draft", "review"]
    assert "plan 1, search 2, read_1 1, read_2 2, read_3 1, draft 1, review 1" in part2
    assert "paused before publish at step 7" in part2
    # 3. the human decision, saved with the queue kept
    assert "the update is step 8 (node __update__) and keeps the queue: publish/1" in out
    assert "research-1 is done at step 9" in out
    # 4. fork with a different input; both branches finish
    assert "ran plan → search → read_1 → read_2 → read_3 → draft → review" in out
    assert "research-1-alt is done at step 10" in out
    assert "research-1 is untouched: still step 9" in out
    # 5. tree and history, printed by the real CLI
    assert "$ forkpoint tree" in out
    assert "└── research-1-alt  forked at step 0" in out
    assert "$ forkpoint history research-1" in out
    assert "interrupt=before" in out
    assert "attempts=2" in out
    assert len(lines) < 70  # about one screen

    stored = asyncio.run(_stored(db))
    assert sorted(stored) == [THREAD, FORK]
    assert [n for _s, n, _q in stored[THREAD]] == [INPUT_NODE, *KILLED_RUN, UPDATE_NODE, "publish"]
    assert stored[THREAD][8] == (8, UPDATE_NODE, [("publish", 1)])
    assert stored[THREAD][-1] == (9, "publish", [])
    assert [n for _s, n, _q in stored[FORK]] == [
        INPUT_NODE,
        UPDATE_NODE,
        *NODES,
        UPDATE_NODE,
        "publish",
    ]
    assert [s for s, _n, _q in stored[FORK]] == list(range(11))
