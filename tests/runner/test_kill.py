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
from tests.runner.graphs import Doc, file_recorder, linear

REPO = Path(__file__).resolve().parents[2]
MARKER = "inside-b"


def _run_child_and_kill_it_inside_b(db: str, runs: str) -> None:
    """Start the workflow in a child process and SIGKILL it while node b is running."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.runner.graphs", db, runs, MARKER],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    # readline blocks until the child prints the marker from inside node b (or exits: "").
    seen = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.stdout.close()
    assert child.wait() == -signal.SIGKILL
    assert seen == MARKER


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
async def test_resume_after_sigkill_does_not_rerun_finished_nodes(tmp_path: Path) -> None:
    db, runs = str(tmp_path / "kill.db"), str(tmp_path / "runs.log")
    _run_child_and_kill_it_inside_b(db, runs)

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
