"""Resume after a real SIGKILL of a child process: finished nodes never run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from forkpoint import SqliteCheckpointer
from forkpoint.runner import INPUT_NODE
from tests.runner.children import BRANCH_NODES, branches, linear3
from tests.runner.graphs import Doc, file_recorder, linear

REPO = Path(__file__).resolve().parents[2]
MARKER = "inside-b"


def _kill_child_at_marker(module: str, *args: str) -> None:
    """Run ``python -m module args``; SIGKILL it once it prints the marker.

    readline blocks until the child prints the marker from inside a node (or exits: "").
    """
    child = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    seen = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.stdout.close()
    assert child.wait() == -signal.SIGKILL
    assert seen == MARKER


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
async def test_resume_after_sigkill_does_not_rerun_finished_nodes(tmp_path: Path) -> None:
    db, runs = str(tmp_path / "kill.db"), str(tmp_path / "runs.log")
    _kill_child_at_marker("tests.runner.graphs", db, runs, MARKER)  # killed inside node b

    async with SqliteCheckpointer.open(db, Doc) as cp:
        latest = await cp.load("k")
        assert latest is not None
        assert (latest.step, latest.node, latest.queue) == (1, "a", [("b", 0)])
        assert Counter(Path(runs).read_text().split()) == {"a": 1, "b": 1}

        result = await linear(cp, file_recorder(runs)).resume("k")

        assert result.done
        assert result.executed == ("b", "c")
        assert result.state.log == ["a", "b", "c"]
        assert result.state.topic == "killed"
        # a ran once (in the killed child); b twice (its first run died); c once.
        assert Counter(Path(runs).read_text().split()) == {"a": 1, "b": 2, "c": 1}
        nodes = [m.node for m in await cp.list_checkpoints("k")]
        assert nodes == [INPUT_NODE, "a", "b", "c"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
async def test_concurrent_branches_killed_rerun_only_the_unfinished_branch(
    tmp_path: Path,
) -> None:
    db, runs = str(tmp_path / "kill.db"), str(tmp_path / "runs.log")
    _kill_child_at_marker("tests.runner.children", "branches", db, runs, MARKER)

    async with SqliteCheckpointer.open(db, Doc) as cp:
        latest = await cp.load("k")
        assert latest is not None
        # read_1 and read_3 finished beside the running read_2, each saved on its own.
        assert latest.step == 4
        assert sorted(n for n, _p in latest.queue) == ["draft", "read_2"]
        nodes = [m.node for m in await cp.list_checkpoints("k")]
        assert sorted(nodes[3:]) == ["read_1", "read_3"]
        assert Counter(Path(runs).read_text().split()) == {
            f"k:{n}": 1 for n in ("plan", "search", "read_1", "read_2", "read_3")
        }

        result = await branches(cp, file_recorder(runs)).resume("k")

        assert result.done
        assert result.executed == ("read_2", "draft", "publish")
        assert sorted(result.state.log[2:5]) == ["read_1", "read_2", "read_3"]
        counts = Counter(Path(runs).read_text().split())
        assert counts == {f"k:{n}": 2 if n == "read_2" else 1 for n in BRANCH_NODES}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
async def test_recovery_resumes_every_killed_thread_and_leaves_the_others(
    tmp_path: Path,
) -> None:
    db, runs = str(tmp_path / "kill.db"), str(tmp_path / "runs.log")
    record = file_recorder(runs)
    async with SqliteCheckpointer.open(db, Doc) as cp:  # a finished and a paused thread first
        await linear3(cp, record).run("done", Doc())
        paused = await linear3(cp, record, interrupt_before=["c"]).run("paused", Doc())
        assert paused.status == "interrupted"
    _kill_child_at_marker("tests.runner.children", "threads", db, runs, MARKER, "4")

    killed = [f"t{i}" for i in range(4)]
    async with SqliteCheckpointer.open(db, Doc) as cp:
        runner = linear3(cp, record)
        assert await runner.unfinished_threads() == killed
        for tid in killed:
            latest = await cp.load(tid)
            assert latest is not None
            assert (latest.node, latest.queue) == ("a", [("b", 0)])

        report = await runner.recover(max_concurrency=2)

        assert report.ok
        assert report.thread_ids == killed
        assert all(r.done and r.executed == ("b", "c") for r in report.results.values())
        counts = Counter(Path(runs).read_text().split())
        expected = {f"{t}:{n}": 1 for t in ("done", "paused") for n in ("a", "b", "c")}
        del expected["paused:c"]
        for tid in killed:  # b ran twice: its first run died with the child
            expected |= {f"{tid}:a": 1, f"{tid}:b": 2, f"{tid}:c": 1}
        assert counts == expected
        assert await runner.unfinished_threads() == []
        still = await cp.load("paused")
        assert still is not None
        assert still.metadata.get("interrupt") == "before"
